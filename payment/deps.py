"""FastAPI dependencies: the services' collaborators, read from the application's state."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from payment.auth import apikeys
from payment.auth.errors import Unauthorized
from payment.auth.principal import ANONYMOUS, Principal, Role
from payment.auth.runtime import AuthRuntime
from payment.chain.client import ChainClient
from payment.core.config import DEFAULT_RATE_LIMITS, Settings
from payment.core.db import run_db_on
from payment.core.telemetry import Telemetry
from payment.delivery.worker import DeliveryWorker
from payment.onramp.stripe_gateway import OnrampGateway
from payment.security.ratelimit import InMemoryRateLimiter, RateLimiter
from payment.security.throttle import enforce_principal_limit

T = TypeVar("T")

__all__ = [
    "AppState",
    "Principal",
    "PrincipalDep",
    "Role",
    "StateDep",
    "authenticate",
    "client_ip",
    "get_principal",
]


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    gateway: OnrampGateway | None
    telemetry: Telemetry
    # Rate limits (payment/security/ratelimit.py); create_app builds it from the settings (Redis when configured).
    rate_limiter: RateLimiter = field(default_factory=lambda: InMemoryRateLimiter(DEFAULT_RATE_LIMITS))
    # Mezo through the provider pool, and the worker delivering MUSD (None when disabled in this process).
    chain: ChainClient | None = None
    delivery_worker: DeliveryWorker | None = None
    # Authentication (payment/auth): set by install_auth at start; keyword-only so fields can follow it.
    auth_runtime: AuthRuntime | None = field(default=None, kw_only=True)
    # Runs short database work (inline on SQLite, in the thread pool otherwise): payment.core.db.run_db_on.
    run_db: Callable[..., Awaitable[Any]] = field(init=False, repr=False)

    @property
    def auth(self) -> AuthRuntime:
        if self.auth_runtime is None:  # an app built without install_auth (some tests): same rules, built late
            self.auth_runtime = AuthRuntime.from_settings(self.settings)
        return self.auth_runtime

    def __post_init__(self) -> None:
        self.run_db = run_db_on(self.engine)


# Dependencies are `async def`: FastAPI runs a plain `def` dependency in the thread pool, a hop per request.
async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.musdpay
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def _credentials(request: Request) -> str | None:
    """The presented credential: `Authorization: Bearer <JWT or mpk_ key>` or `X-API-Key: mpk_...`."""
    authorization = request.headers.get("authorization")
    api_key = request.headers.get("x-api-key")
    bearer: str | None = None
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("invalid-credentials", "Authorization must be 'Bearer <token or API key>'.")
        bearer = value.strip()
    if api_key is not None:
        api_key = api_key.strip()
        if bearer is not None and bearer != api_key:
            raise Unauthorized("invalid-credentials", "Authorization and X-API-Key name different credentials.")
        if not apikeys.looks_like_api_key(api_key):
            raise Unauthorized("invalid-api-key", "X-API-Key must hold an mpk_ API key.")
        return api_key
    return bearer


async def authenticate(request: Request, state: AppState) -> Principal:
    """Who is calling, from the request's credentials; anonymous without any, Unauthorized for bad ones.

    Every refusal is a 401 problem; the rate-limit middleware counts each against the client IP's
    `auth_failure` bucket and answers 429 once it is empty (payment/security/throttle.py), so failed sign-ins
    and bad keys are limited there, not here.
    """
    credential = _credentials(request)
    if credential is None:
        principal = ANONYMOUS
    elif apikeys.looks_like_api_key(credential):
        principal = await state.run_db(apikeys.authenticate, factory=state.factory, presented=credential)
    else:
        claims = state.auth.keyring.verify(credential)
        principal = Principal(kind="wallet", subject=claims.subject, role=claims.role)
    request.state.principal = principal  # for middleware that runs after routing (rate limits, access log)
    if principal.authenticated:
        await enforce_principal_limit(request, principal)
    return principal


async def get_principal(request: Request, state: StateDep) -> Principal:
    """The caller of this request (cached per request by FastAPI); routes use payment.auth.rbac's policies."""
    return await authenticate(request, state)


def client_ip(request: Request, settings: Settings) -> str | None:
    """The buyer's IP for Stripe's fraud and country checks; X-Forwarded-For is trusted only behind our proxies."""
    candidate = request.client.host if request.client else None
    hops = settings.trusted_proxy_hops
    forwarded = request.headers.get("x-forwarded-for")
    if hops and forwarded:
        chain = [part.strip() for part in forwarded.split(",") if part.strip()]
        if len(chain) >= hops:
            candidate = chain[-hops]
    if candidate is None:
        return None
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


PrincipalDep = Annotated[Principal, Depends(get_principal)]
