"""Who may call what: one policy per route, enforced on every request, and checked by a test for every route.

A route states its policy with a dependency, `require_roles(...)` or `public_route`; routes of modules that
do not depend on authentication (health, the Stripe webhook, problem types) get theirs from ROUTE_POLICIES.
`install_auth` adds `enforce_route_policy` to every route included after it: a route with no policy at all
is then refused to anyone but operators and admins (deny by default), and the route-matrix test fails.

Roles: `wallet` (its own sessions), `operator` (every session, on behalf of any wallet; re-run verification
and replay webhook events), `admin` (all of an operator's rights, and API key management).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from payment.auth.errors import Forbidden, Unauthorized
from payment.auth.principal import ANONYMOUS, Principal, Role
from payment.deps import authenticate, get_principal, get_state

__all__ = [
    "ANY_ROLE",
    "DEFAULT_POLICY",
    "DOCS_PATHS",
    "ROUTE_POLICIES",
    "STAFF",
    "Policy",
    "RouteInfo",
    "enforce_route_policy",
    "iter_routes",
    "policy_of",
    "public_route",
    "require_roles",
]

ANY_ROLE = (Role.wallet, Role.operator, Role.admin)
STAFF = (Role.operator, Role.admin)
_POLICY_ATTRIBUTE = "__musdpay_policy__"


@dataclass(frozen=True)
class Policy:
    kind: str  # "roles" | "public" | "signature" (authenticated by a signature in the request, e.g. Stripe's)
    roles: frozenset[Role] = frozenset()

    def allows(self, principal: Principal) -> bool:
        return self.kind != "roles" or principal.role in self.roles


PUBLIC = Policy("public")
DEFAULT_POLICY = Policy("roles", frozenset(STAFF))

# Routes whose modules know nothing of authentication (path template -> policy, for every method).
ROUTE_POLICIES: dict[str, Policy] = {
    "/healthz": PUBLIC,
    "/readyz": PUBLIC,
    "/metrics": PUBLIC,
    "/problems/{slug}": PUBLIC,
    "/api/v1/webhooks/stripe": Policy("signature"),  # Stripe-Signature, verified by the route itself
}
# FastAPI's own documentation routes (plain Starlette routes, outside the dependency system): public.
DOCS_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def require_roles(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency returning the caller if its role is one of `roles`: 401 if anonymous, 403 otherwise."""
    policy = Policy("roles", frozenset(roles))

    async def dependency(principal: Principal = Depends(get_principal)) -> Principal:
        if not principal.authenticated:
            raise Unauthorized("authentication-required", "This route needs an access token or an API key.")
        if not policy.allows(principal):
            allowed = ", ".join(sorted(role.value for role in roles))
            raise Forbidden("forbidden", f"This route is for the roles: {allowed}.")
        return principal

    setattr(dependency, _POLICY_ATTRIBUTE, policy)
    dependency.__name__ = f"require_roles_{'_'.join(role.value for role in roles)}"
    return dependency


async def public_route() -> Principal:
    """Marks a route as public (sign-in itself): no credentials are read."""
    return ANONYMOUS


setattr(public_route, _POLICY_ATTRIBUTE, PUBLIC)


def _declared(route: APIRoute) -> Policy | None:
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        policy = getattr(dependant.call, _POLICY_ATTRIBUTE, None)
        if isinstance(policy, Policy):
            return policy
        pending.extend(dependant.dependencies)
    return None


def policy_of(route: BaseRoute, path: str | None = None) -> Policy | None:
    """The route's policy: declared by a dependency, or listed in ROUTE_POLICIES; None when it has none.

    `path` is where the route is served when an include prefix moved it (default: the route's own path)."""
    path = path if path is not None else getattr(route, "path", None)
    if isinstance(route, APIRoute):
        return _declared(route) or ROUTE_POLICIES.get(path or "")
    return PUBLIC if path in DOCS_PATHS else None


@dataclass(frozen=True)
class RouteInfo:
    route: BaseRoute  # the route as declared (an APIRoute for FastAPI routes)
    path: str  # where it is served
    methods: frozenset[str]
    policy: Policy | None


def iter_routes(app: FastAPI) -> list[RouteInfo]:
    """Every route the app serves with its policy, included routers flattened (FastAPI >= 0.160 keeps them
    nested in `app.routes`)."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    found: list[tuple[BaseRoute, str, Any]] = []
    if contexts is not None:
        for context in contexts(app.routes):
            found.append((context.original_route, context.path or "", context.methods))
    else:  # older FastAPI: included routes are copied into app.routes
        found = [(route, getattr(route, "path", ""), getattr(route, "methods", None)) for route in app.routes]
    return [
        RouteInfo(route, path, frozenset(methods or {"GET"}), policy_of(route, path)) for route, path, methods in found
    ]


def _lookup(route: BaseRoute) -> tuple[Policy | None, bool]:
    """(policy, declared by the route itself), computed once per route and kept on it."""
    cached: tuple[Policy | None, bool] | None = getattr(route, "_musdpay_policy", None)
    if cached is None:
        declared = isinstance(route, APIRoute) and _declared(route) is not None
        cached = (policy_of(route), declared)
        route._musdpay_policy = cached  # type: ignore[attr-defined]
    return cached


async def enforce_route_policy(request: Request) -> None:
    """Runs first on every route: routes that declare a policy enforce it themselves; listed public and
    signature routes pass; a route with no policy is for operators and admins only (deny by default)."""
    route = request.scope.get("route")
    policy, declared = _lookup(route) if route is not None else (None, False)
    if declared:
        return
    if policy is not None and policy.kind in {"public", "signature"}:
        request.state.principal = ANONYMOUS
        return
    principal = await authenticate(request, await get_state(request))
    if not principal.authenticated:
        raise Unauthorized("authentication-required", "This route needs an access token or an API key.")
    if not DEFAULT_POLICY.allows(principal):
        raise Forbidden("forbidden", "This route has no access policy; it is for operators and admins only.")
