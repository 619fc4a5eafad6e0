"""FastAPI dependencies: the services' collaborators, read from the application's state."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from payment.core.config import Settings
from payment.core.telemetry import Telemetry
from payment.onramp.stripe_gateway import OnrampGateway

T = TypeVar("T")

__all__ = [
    "AppState",
    "Principal",
    "PrincipalDep",
    "StateDep",
    "client_ip",
]


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    gateway: OnrampGateway | None
    telemetry: Telemetry

    async def run_db(self, function: Callable[..., T], /, **kwargs: Any) -> T:
        """Run short database work: inline on SQLite, in the thread pool otherwise.

        SQLite is a local file with one pooled connection, so its short transactions cost less than the hop
        to a worker thread (and the lock traffic of many threads queueing on one connection); PostgreSQL
        waits on the network, so it must not block the event loop.
        """
        if self.engine.dialect.name == "sqlite":
            return function(**kwargs)
        return await run_in_threadpool(function, **kwargs)


@dataclass(frozen=True)
class Principal:
    """Who is calling. Until authentication lands every caller is anonymous; routes already depend on this."""

    kind: str  # anonymous | wallet | api_key
    subject: str  # wallet address or key id; "" when anonymous

    @property
    def idempotency_scope(self) -> str:
        return f"{self.kind}:{self.subject}"

    def may_see_client_secret(self, wallet_address: str) -> bool:
        return self.kind == "wallet" and self.subject == wallet_address


# Dependencies are `async def`: FastAPI runs a plain `def` dependency in the thread pool, a hop per request.
async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.musdpay
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_principal() -> Principal:
    return Principal(kind="anonymous", subject="")


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
