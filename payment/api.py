"""The FastAPI application: mounts every router, installs error handlers, owns start-up and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from payment.core import migrations
from payment.core.config import Settings, get_settings
from payment.core.db import create_db_engine, make_session_factory
from payment.core.problems import PROBLEM_TYPES, NotFound, install_problem_handlers
from payment.deps import AppState
from payment.health.views import router as health_router
from payment.onramp import service as onramp_service
from payment.onramp.stripe_gateway import OnrampGateway, StripeOnrampGateway, build_stripe_client
from payment.onramp.views import router as onramp_router
from payment.webhooks.views import router as webhooks_router

__all__ = ["create_app"]

log = logging.getLogger(__name__)


async def _recovery_loop(state: AppState) -> None:
    """Finish session creations whose request died mid-way (see onramp.service)."""
    while True:
        try:
            count = await run_in_threadpool(
                onramp_service.recover_stale_creations,
                factory=state.factory,
                gateway=state.gateway,
                settings=state.settings,
            )
            if count:
                log.info("recovered %d interrupted session creations", count)
        except OperationalError as exc:  # a database outage: say so briefly, try again next round
            log.warning("session recovery sweep skipped, database unavailable: %s", type(exc.orig).__name__)
        except Exception:  # never let the loop die
            log.exception("session recovery sweep failed")
        await asyncio.sleep(state.settings.recovery_interval_seconds)


def create_app(settings: Settings | None = None, *, gateway: OnrampGateway | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = create_db_engine(settings)
    if gateway is None:
        client = build_stripe_client(settings)
        gateway = StripeOnrampGateway(client) if client is not None else None
    state = AppState(settings=settings, engine=engine, factory=make_session_factory(engine), gateway=gateway)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_at_start:
            await run_in_threadpool(migrations.upgrade, engine)
        recovery = asyncio.create_task(_recovery_loop(state))
        try:
            yield
        finally:
            recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recovery
            engine.dispose()

    app = FastAPI(
        title="musdpay payment API",
        version="0.1.0",
        description="Buy MUSD on Mezo with a card through Stripe's Crypto Onramp.",
        lifespan=lifespan,
    )
    app.state.musdpay = state
    install_problem_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-API-Key", "traceparent"],
        expose_headers=["Location", "Idempotent-Replayed", "Retry-After"],
        max_age=600,
    )
    app.include_router(health_router)
    app.include_router(onramp_router)
    app.include_router(webhooks_router)

    @app.get("/problems/{slug}", include_in_schema=False)
    async def problem_type(slug: str) -> HTMLResponse:
        description = PROBLEM_TYPES.get(slug)
        if description is None:
            raise NotFound(f"No problem type {slug!r}.")
        return HTMLResponse(f"<!doctype html><title>{slug}</title><h1>{slug}</h1><p>{description}</p>")

    return app
