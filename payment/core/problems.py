"""Errors as RFC 9457 problem details.

Hierarchy (service code raises these; one set of handlers turns them into ``application/problem+json``)::

    Problem                      any error with an HTTP meaning
    ├── ValidationProblem        400/422: bad input, with a list of field errors
    ├── NotFound                 404
    ├── Conflict                 409 (idempotency key reuse, request in progress)
    ├── UpstreamProblem          502/503/504: a dependency (Stripe, the database) failed
    └── ...                      anything else built with an explicit status

Each problem type has a slug; its ``type`` URI is ``/problems/<slug>``, served as a short description.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "PROBLEM_TYPES",
    "Conflict",
    "FieldError",
    "NotFound",
    "Problem",
    "UpstreamProblem",
    "ValidationProblem",
    "install_problem_handlers",
    "problem_response",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
log = logging.getLogger(__name__)

# slug -> one-paragraph explanation shown at /problems/<slug>.
PROBLEM_TYPES: dict[str, str] = {
    "validation-error": "The request is malformed or a field is invalid; `errors` lists each field and why.",
    "not-found": "No such resource, or not visible to the caller.",
    "method-not-allowed": "The route exists but not with this HTTP method.",
    "idempotency-key-reused": "This Idempotency-Key was used before with a different request body.",
    "request-in-progress": "A request with this Idempotency-Key is still being processed; retry later.",
    "stripe-rejected": "Stripe refused the request (for example an unsupported country); see `code`.",
    "onramp-unavailable": "Stripe's onramp is disabled or our account is not set up for it: no session can be "
    "created for anyone; retry after `Retry-After` (`code` is Stripe's).",
    "stripe-unavailable": "Stripe could not be reached or answered with an error; retry after `Retry-After`.",
    "stripe-rate-limited": "Stripe is rate limiting this account; retry after `Retry-After`.",
    "stripe-not-configured": "The service has no Stripe key or webhook secret configured.",
    "invalid-signature": "The webhook's Stripe-Signature header is missing, wrong, or too old.",
    "database-unavailable": "The database could not be reached; retry after `Retry-After`.",
    "not-ready": "The service is not ready to take traffic; `checks` says why.",
    "authentication-required": "The route needs credentials: a wallet access token or an API key (Authorization).",
    "invalid-credentials": "The Authorization or X-API-Key header is malformed, or both name different credentials.",
    "invalid-token": "The access token is malformed, forged, not yet valid, or for another issuer, audience or key.",
    "token-expired": "The access token has expired; get a new one with the refresh token.",
    "invalid-api-key": "The API key is unknown, wrong, revoked, or past the grace period of its rotation.",
    "forbidden": "The caller is authenticated but its role may not use this route.",
    "wallet-mismatch": "A wallet may only create sessions for its own address.",
    "invalid-siwe-message": "The sign-in message is not a well-formed EIP-4361 message.",
    "siwe-domain-mismatch": "The sign-in message is for another domain or URI than this service accepts.",
    "siwe-chain-mismatch": "The sign-in message is for another chain id than this service's Mezo network.",
    "siwe-nonce-invalid": "The sign-in nonce is unknown, already used, or expired; ask for a new one.",
    "siwe-message-expired": "The sign-in message is expired, not yet valid, or issued too long ago.",
    "siwe-signature-invalid": "The signature is not the address's: neither ECDSA nor its EIP-1271 contract accepts it.",
    "signature-check-unavailable": "The chain could not be asked to check a smart-account signature; retry later.",
    "invalid-refresh-token": "The refresh token is unknown, expired, or revoked; sign in again.",
    "refresh-token-reused": "An already-rotated refresh token was presented: its whole family is now revoked.",
    "too-many-auth-failures": "Too many failed authentications from this client; retry after `Retry-After`.",
    "api-key-not-rotatable": "The API key is revoked, expired, or already rotated (rotate its successor).",
    "rate-limited": "Too many requests from this client for this route; retry after `Retry-After` seconds.",
    "payload-too-large": "The request body is larger than the service accepts (MUSDPAY_MAX_BODY_BYTES).",
    "no-delivery": "The session is not fulfilled yet, so it has no MUSD delivery to act on.",
    "delivery-not-retryable": "Only a held or failed treasury delivery can be retried; verify re-checks any.",
    "internal-error": "An unexpected error; it has been logged with the request id.",
    "http-error": "A generic HTTP error.",
}


@dataclass(frozen=True)
class FieldError:
    field: str  # dotted path in the request, e.g. "body.walletAddress" or "header.Idempotency-Key"
    message: str
    code: str = "invalid"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}


@dataclass
class Problem(Exception):
    status: int
    slug: str
    detail: str
    title: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.detail)


class ValidationProblem(Problem):
    def __init__(self, errors: list[FieldError], detail: str = "The request has invalid fields.") -> None:
        super().__init__(
            status=422,
            slug="validation-error",
            detail=detail,
            title="Invalid request",
            extensions={"errors": [e.as_dict() for e in errors]},
        )


class NotFound(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__(status=404, slug="not-found", detail=detail, title="Not found")


class Conflict(Problem):
    def __init__(self, slug: str, detail: str, *, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        super().__init__(status=409, slug=slug, detail=detail, headers=headers)


class UpstreamProblem(Problem):
    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        retry_after: int | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        super().__init__(status=status, slug=slug, detail=detail, headers=headers, extensions=extensions or {})


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{problem.slug}",
        "title": problem.title or _default_title(problem.status),
        "status": problem.status,
        "detail": problem.detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update(problem.extensions)
    return JSONResponse(body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_CONTENT_TYPE)


def _default_title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _validation_errors(exc: RequestValidationError) -> list[FieldError]:
    errors: list[FieldError] = []
    for err in exc.errors():
        code = str(err.get("type", "invalid"))
        if code == "json_invalid":
            # FastAPI puts the byte offset in the location; the caller needs to know the body is broken.
            ctx = err.get("ctx") or {}
            errors.append(FieldError("body", f"is not valid JSON ({ctx.get('error', 'decode error')})", code))
            continue
        # pydantic prefixes messages of custom validators with "Value error, "; the reason is enough.
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        errors.append(FieldError(_location(tuple(err.get("loc", ()))), message, code))
    return errors


async def _handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(exc, request)


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    malformed = any(e.code in {"json_invalid", "model_attributes_type"} for e in errors)
    problem = ValidationProblem(errors)
    if malformed:
        problem.status = 400
        problem.detail = "The request body is not a valid JSON object."
    return problem_response(problem, request)


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large", 429: "rate-limited"}.get(
        exc.status_code, "http-error"
    )
    problem = Problem(
        status=exc.status_code,
        slug=slug,
        detail=str(exc.detail) if exc.detail else _default_title(exc.status_code),
        headers=dict(exc.headers or {}),
    )
    return problem_response(problem, request)


async def _handle_database(request: Request, exc: Exception) -> JSONResponse:
    log.error("database error on %s: %s", request.url.path, type(exc).__name__)
    problem = UpstreamProblem(503, "database-unavailable", "The database is unavailable.", retry_after=5)
    return problem_response(problem, request)


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    problem = Problem(status=500, slug="internal-error", detail="An unexpected error occurred.")
    return problem_response(problem, request)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _handle_problem)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(OperationalError, _handle_database)
    app.add_exception_handler(PoolTimeoutError, _handle_database)
    app.add_exception_handler(InterfaceError, _handle_database)
    app.add_exception_handler(Exception, _handle_unexpected)
