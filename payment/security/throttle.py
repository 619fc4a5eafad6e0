"""Where rate limits apply: a plain ASGI middleware per client IP, and checks per authenticated principal.

Per request, before routing (so a refused request costs no database or Stripe work):

1. the rule of the route is looked up in the route table (`Settings.rate_limit_routes`: exact paths, `{param}`
   templates and `*` prefixes, optionally per method); `exempt` routes (health, metrics) pass untouched;
2. a request carrying credentials (`Authorization`, `X-API-Key`) or aimed at a sign-in route (rule `auth`) is
   refused with 429 while its IP's `auth_failure` bucket is empty, before authentication runs;
3. a request without credentials: the route's rule is hit for the client's IP (see `client_key`); refused: 429
   problem with `Retry-After`. A request with credentials is refused if that IP bucket is empty, and counted
   once its caller is known (below), or when its answer starts if nothing counted it (a public route, a 401):
   attaching a made-up credential buys a stranger nothing;
4. every 401 answer to such an attempt counts against the IP's `auth_failure` bucket (10 per 5 minutes by
   default); a 401 to a request without credentials ("authentication required") guesses nothing and is not
   counted, so a dApp that calls before signing in does not lock its users out.

Authentication calls `enforce_principal_limit` once it knows the caller:

- a wallet (signed in with SIWE) is held to the route's rule for its IP and for its address (`wallet:<address>`);
- an API key (a dApp's backend or an operator, one IP for all its buyers) to the `api_key` ceiling, per key
  family, on every route; its IP is not counted. Session creation on behalf of a wallet then calls
  `enforce_wallet_limit`: the route's rule for that buyer's address, the same bucket as the wallet's own.

Allowed answers of limited routes carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (of the
tightest bucket that counted the request).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payment.core.metrics import PaymentMetrics
from payment.core.problems import Problem, problem_response
from payment.security.ratelimit import Decision, RateLimiter, client_key

__all__ = [
    "EXEMPT",
    "RateLimitMiddleware",
    "RateLimited",
    "RouteTable",
    "client_ip_from_scope",
    "enforce_principal_limit",
    "enforce_wallet_limit",
]

EXEMPT = "exempt"
AUTH_FAILURE_RULE = "auth_failure"
SIGN_IN_RULE = "auth"
API_KEY_RULE = "api_key"
# What the middleware leaves for the checks after authentication, in scope["state"] (which is request.state).
SCOPE_RULE_KEY = "musdpay_rate_limit_rule"  # the route's rule
SCOPE_LIMITS_KEY = "musdpay_rate_limits"  # the request's _Limits
_CREDENTIAL_HEADERS = frozenset({b"authorization", b"x-api-key"})
_TEMPLATE_PARAM = re.compile(r"\{[^/{}]+\}")
_HEADER_NAMES = {
    b"ratelimit-limit": "RateLimit-Limit",
    b"ratelimit-remaining": "RateLimit-Remaining",
    b"ratelimit-reset": "RateLimit-Reset",
    b"retry-after": "Retry-After",
}


class RateLimited(Problem):
    """429: too many requests for the rule; `Retry-After` in whole seconds and the RateLimit-* headers."""

    def __init__(self, decision: Decision, rule: str) -> None:
        auth = rule == AUTH_FAILURE_RULE
        super().__init__(
            status=429,
            slug="too-many-auth-failures" if auth else "rate-limited",
            detail=(
                "Too many failed authentications from this client."
                if auth
                else "Too many requests; retry after the number of seconds in Retry-After."
            ),
            title="Too Many Requests",
            headers={_HEADER_NAMES[name]: value.decode() for name, value in decision.headers()},
        )


class RouteTable:
    """`[METHOD ]path -> rule`: exact paths first (method-specific before any-method), then `{param}` templates
    and `*` prefixes, longest pattern first; anything else is `default`."""

    def __init__(self, routes: Mapping[str, str], default: str = "default") -> None:
        self.default = default
        self._exact: dict[str, str] = {}
        patterns: list[tuple[int, str | None, re.Pattern[str], str]] = []
        for spec, rule in routes.items():
            method, _, path = spec.strip().rpartition(" ")
            method = method.strip().upper()
            if "*" not in path and "{" not in path:
                self._exact[f"{method} {path}" if method else path] = rule
                continue
            regex = re.escape(path.removesuffix("*"))
            regex = _TEMPLATE_PARAM.sub("[^/]+", regex.replace(r"\{", "{").replace(r"\}", "}"))
            regex = f"^{regex}" + ("" if path.endswith("*") else "$")
            patterns.append((len(path) + (1000 if method else 0), method or None, re.compile(regex), rule))
        patterns.sort(key=lambda item: -item[0])
        self._patterns = [(method, pattern, rule) for _, method, pattern, rule in patterns]

    def rule(self, method: str, path: str) -> str:
        exact = self._exact
        found = exact.get(f"{method} {path}") or exact.get(path)
        if found is not None:
            return found
        for pattern_method, pattern, rule in self._patterns:
            if (pattern_method is None or pattern_method == method) and pattern.match(path):
                return rule
        return self.default


def client_ip_from_scope(scope: Scope, trusted_proxy_hops: int) -> str | None:
    """`payment.deps.client_ip` on the raw ASGI scope (no Request built): the peer, or with trusted proxies the
    `X-Forwarded-For` entry they appended."""
    client = scope.get("client")
    candidate: str | None = client[0] if client else None
    if trusted_proxy_hops:
        forwarded = _header(scope, b"x-forwarded-for")
        if forwarded:
            chain = [part.strip() for part in forwarded.split(",") if part.strip()]
            if len(chain) >= trusted_proxy_hops:
                candidate = chain[-trusted_proxy_hops]
    return None if candidate is None else _normalised_ip(candidate)


@functools.lru_cache(maxsize=4096)  # bounded; the same few clients send most requests
def _normalised_ip(candidate: str) -> str | None:
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            text: str = value.decode("latin-1")
            return text
    return None


def _has_credentials(scope: Scope) -> bool:
    return any(name in _CREDENTIAL_HEADERS for name, _ in scope["headers"])


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        routes: Mapping[str, str],
        metrics: PaymentMetrics,
        trusted_proxy_hops: int = 0,
        route_templates: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.table = RouteTable(routes)
        self.metrics = metrics
        self.hops = trusted_proxy_hops
        # Only for refused requests (they never reach the router): the application's path templates, read on the
        # first refusal, name the route in metrics and the access log instead of "<unmatched>".
        self._route_templates = route_templates
        self._templates: list[tuple[re.Pattern[str], _Route]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.table.rule(scope["method"], scope["path"])
        if rule == EXEMPT:
            await self.app(scope, receive, send)
            return
        limiter = self.limiter
        key = client_key(client_ip_from_scope(scope, self.hops))
        credentials = _has_credentials(scope)
        guarded = rule == SIGN_IN_RULE or credentials  # an attempt to authenticate
        if guarded:
            failures = await limiter.peek(key, AUTH_FAILURE_RULE)
            if not failures.allowed:
                await self._refuse(scope, receive, send, failures, AUTH_FAILURE_RULE)
                return
        # With credentials the IP is counted only once the caller is known (an API key's is not): peek now.
        decision = await (limiter.peek(key, rule) if credentials else limiter.hit(key, rule))
        if not decision.allowed:
            await self._refuse(scope, receive, send, decision, rule)
            return
        limits = _Limits(ip_key=key, decisions=[] if credentials else [decision], counted=not credentials)
        state = scope.setdefault("state", {})
        state[SCOPE_RULE_KEY] = rule
        state[SCOPE_LIMITS_KEY] = limits

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 401 and guarded:
                    await limiter.hit(key, AUTH_FAILURE_RULE)
                if not limits.counted:  # nobody was authenticated (a public route, a 401): the IP pays
                    limits.counted = True
                    limits.decisions.append(await limiter.hit(key, rule))
                headers = message.setdefault("headers", [])
                tightest = limits.tightest()
                if tightest is not None and not any(name == b"ratelimit-limit" for name, _ in headers):
                    message["headers"] = [*headers, *tightest.headers()]
            await send(message)

        await self.app(scope, receive, send_with_limits)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, decision: Decision, rule: str) -> None:
        self.metrics.rate_limited.labels(rule).inc()
        route = self._route_of(scope["path"])
        if route is not None:
            scope["route"] = route
        response = problem_response(RateLimited(decision, rule), Request(scope))
        await response(scope, receive, send)

    def _route_of(self, path: str) -> _Route | None:
        if self._templates is None:
            templates = list(dict.fromkeys(self._route_templates())) if self._route_templates else []
            self._templates = [(_template_regex(template), _Route(template)) for template in templates]
        return next((route for pattern, route in self._templates if pattern.match(path)), None)


@dataclass(slots=True)
class _Limits:
    """The buckets a request has been counted in so far (their answers give its RateLimit-* headers)."""

    ip_key: str
    decisions: list[Decision]
    counted: bool  # by its IP or its principal; otherwise the IP is counted when the answer starts

    def tightest(self) -> Decision | None:
        return min(self.decisions, key=lambda decision: decision.remaining, default=None)


@dataclass(frozen=True, slots=True)
class _Route:
    """Stands for the matched route in scope["route"]: what observability reads of it is its `path`."""

    path: str


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile(
        "^" + _TEMPLATE_PARAM.sub("[^/]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}")) + "$"
    )


async def enforce_principal_limit(request: Request, principal: Any) -> None:
    """The limits of an authenticated caller (see the module's docstring); raises RateLimited.

    Call it from the authentication dependency once the principal is known. Anonymous callers are limited by IP
    only (the middleware), and so are routes the middleware does not limit (exempt, or limits disabled).
    """
    state = request.scope.get("state", {})
    rule: str | None = state.get(SCOPE_RULE_KEY)
    limits: _Limits | None = state.get(SCOPE_LIMITS_KEY)
    kind = getattr(principal, "kind", "anonymous")
    subject = getattr(principal, "subject", "")
    if rule is None or limits is None or not subject or kind == "anonymous":
        return
    if kind == "wallet":
        checks = [] if limits.counted else [(limits.ip_key, rule)]
        checks.append((_wallet_key(subject), rule))
    else:  # an API key: one ceiling per key family, whatever the route and whoever the buyer
        checks = [(f"api_key:{getattr(principal, 'family', '') or subject}", API_KEY_RULE)]
    limits.counted = True
    await _check_all(request, limits, checks)


async def enforce_wallet_limit(request: Request, principal: Any, wallet_address: str) -> None:
    """The route's rule for `wallet_address` when an API key acts for that buyer (a wallet signed in itself was
    counted by `enforce_principal_limit`, in the same bucket); raises RateLimited."""
    state = request.scope.get("state", {})
    rule: str | None = state.get(SCOPE_RULE_KEY)
    limits: _Limits | None = state.get(SCOPE_LIMITS_KEY)
    if rule is None or limits is None or getattr(principal, "kind", "anonymous") == "wallet":
        return
    await _check_all(request, limits, [(_wallet_key(wallet_address), rule)])


def _wallet_key(address: str) -> str:
    return f"wallet:{address.lower()}"


async def _check_all(request: Request, limits: _Limits, checks: list[tuple[str, str]]) -> None:
    state = request.app.state.musdpay
    for key, rule in checks:
        decision = await state.rate_limiter.hit(key, rule)
        if not decision.allowed:
            state.telemetry.metrics.rate_limited.labels(rule).inc()
            raise RateLimited(decision, rule)
        limits.decisions.append(decision)
