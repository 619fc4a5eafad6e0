"""The problems of authentication (401) and authorisation (403); 429 when failures come too fast."""

from __future__ import annotations

import math

from payment.core.problems import Problem

__all__ = ["Forbidden", "TooManyFailures", "Unauthorized"]


class Unauthorized(Problem):
    """401 with a `WWW-Authenticate` challenge (RFC 6750); `slug` says what was wrong."""

    def __init__(self, slug: str, detail: str) -> None:
        error = "" if slug == "authentication-required" else ', error="invalid_token"'
        super().__init__(
            status=401,
            slug=slug,
            detail=detail,
            title="Unauthorized",
            headers={"WWW-Authenticate": f'Bearer realm="musdpay"{error}'},
        )


class Forbidden(Problem):
    def __init__(self, slug: str, detail: str) -> None:
        super().__init__(status=403, slug=slug, detail=detail, title="Forbidden")


class TooManyFailures(Problem):
    def __init__(self, retry_after: float) -> None:
        super().__init__(
            status=429,
            slug="too-many-auth-failures",
            detail="Too many failed authentications from this client.",
            title="Too Many Requests",
            headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
        )
