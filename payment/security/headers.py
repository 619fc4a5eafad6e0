"""Security headers on every response, added where the application did not set its own.

- `Content-Security-Policy`: API answers are JSON and never render, so the strictest policy (`default-src
  'none'`, no framing, no forms, no base); the interactive documentation (/docs, /redoc) gets a relaxed one that
  allows the Swagger UI / ReDoc assets FastAPI loads from jsDelivr and their inline start-up script.
- `X-Frame-Options: DENY` (and `frame-ancestors 'none'` in both policies): no clickjacking.
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, `Cross-Origin-Opener-Policy: same-origin`.
- `Cache-Control: no-store` on every API answer (a session carries its `clientSecret`; no shared cache or
  browser history should keep one), not on the documentation.
- `Strict-Transport-Security` over TLS (or a trusted proxy's `X-Forwarded-Proto: https`) and always in
  production, where the API is only reachable through TLS.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["API_CSP", "DOCS_CSP", "DOCS_PATHS", "SecurityHeadersMiddleware"]

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_CSP = (
    "default-src 'none'; "
    "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src blob:; "
    "connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})

_COMMON: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts_max_age: int = 0, always_hsts: bool = False, trust_proxy: bool = False):
        self.app = app
        self._api = (*_COMMON, (b"content-security-policy", API_CSP.encode()), (b"cache-control", b"no-store"))
        self._docs = (*_COMMON, (b"content-security-policy", DOCS_CSP.encode()))
        self._hsts = (b"strict-transport-security", f"max-age={hsts_max_age}; includeSubDomains".encode())
        self._hsts_enabled = hsts_max_age > 0
        self._always_hsts = always_hsts
        self._trust_proxy = trust_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self._docs if scope["path"] in DOCS_PATHS else self._api
        if self._hsts_enabled and (self._always_hsts or self._over_tls(scope)):
            extra = (*extra, self._hsts)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in extra if header[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _over_tls(self, scope: Scope) -> bool:
        if scope.get("scheme") == "https":
            return True
        if not self._trust_proxy:
            return False
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto":
                return bool(value.strip().lower() == b"https")
        return False
