"""The FastAPI application: mounts every router, installs error handlers, owns start-up and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import stripe
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from payment.auth.views import admin_router, install_auth
from payment.auth.views import router as auth_router
from payment.chain import pool as rpc_pool
from payment.chain.client import ChainClient
from payment.chain.pool import ProviderPool
from payment.core import migrations
from payment.core.config import Environment, Settings, get_settings
from payment.core.db import create_db_engine, make_session_factory
from payment.core.logs import configure_logging
from payment.core.metrics import LabelSets, PaymentMetrics
from payment.core.middleware import ObservabilityMiddleware
from payment.core.problems import PROBLEM_TYPES, NotFound, install_problem_handlers
from payment.core.telemetry import Telemetry, build_tracer_provider, otlp_configured
from payment.delivery import worker as delivery_worker
from payment.delivery.views import router as delivery_router
from payment.delivery.worker import DeliveryWorker
from payment.deps import AppState
from payment.health.views import router as health_router
from payment.ledgers import service as ledgers_service
from payment.onramp import service as onramp_service
from payment.onramp import stripe_gateway
from payment.onramp.stripe_gateway import OnrampGateway, StripeOnrampGateway
from payment.onramp.views import router as onramp_router
from payment.reconcile import service as reconcile_service
from payment.reconcile import stripe as reconcile_stripe
from payment.reconcile.scheduled import Reconciler
from payment.reconcile.stripe import ReconcileStripe
from payment.security.bodylimit import BodyLimitMiddleware
from payment.security.headers import SecurityHeadersMiddleware
from payment.security.ratelimit import build_rate_limiter
from payment.security.secrets import install_secret_scrubber
from payment.security.throttle import RateLimitMiddleware
from payment.webhooks import service as webhooks_service
from payment.webhooks.views import router as webhooks_router
from payment.webhooks.views import stripe_router as stripe_webhooks_router

__all__ = ["create_app", "create_served_app"]

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
                telemetry=state.telemetry,
            )
            if count:
                log.info("recovered %d interrupted session creations", count)
        except OperationalError as exc:  # a database outage: say so briefly, try again next round
            log.warning("session recovery sweep skipped, database unavailable: %s", type(exc.orig).__name__)
        except Exception:  # never let the loop die
            log.exception("session recovery sweep failed")
        await asyncio.sleep(state.settings.recovery_interval_seconds)


def build_telemetry(settings: Settings) -> Telemetry:
    metrics = PaymentMetrics()
    if not settings.telemetry_enabled:
        return Telemetry(metrics=metrics)
    provider = build_tracer_provider(sample_ratio=settings.trace_sample_ratio, service_name=settings.service_name)
    return Telemetry(metrics=metrics, tracer_provider=provider, exporting=otlp_configured())


def known_labels(settings: Settings, providers: Sequence[str]) -> list[LabelSets]:
    """Every series of the API's counters known before its first event: each domain's label sets (from the enums
    and constants it emits) over the configured currencies, networks, delivery mode and RPC providers."""
    return [
        onramp_service.metric_labels(settings),
        webhooks_service.metric_labels(),
        stripe_gateway.metric_labels(),
        delivery_worker.metric_labels(settings),
        rpc_pool.metric_labels(providers),
        reconcile_service.metric_labels(),
        reconcile_stripe.metric_labels(),
        ledgers_service.metric_labels(),
    ]


def _instrument(state: AppState, client: stripe.StripeClient | None) -> None:
    """Spans for SQL and the HTTP calls to Stripe, on the application's own tracer provider (request spans come
    from ObservabilityMiddleware)."""
    provider = state.telemetry.tracer_provider
    if provider is None or not state.telemetry.exporting:
        return
    # Per engine, not SQLAlchemyInstrumentor().instrument(): that is a process-wide singleton which also patches
    # create_engine, so a second application in the same process (tests, workers) would get no SQL spans.
    EngineTracer(  # type: ignore[no-untyped-call]
        provider.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
        state.engine,
        NoOpMeterProvider().get_meter("musdpay").create_up_down_counter("unused"),
    )
    http = getattr(getattr(client, "_requestor", None), "_client", None)
    httpx_client = getattr(http, "_client", None)
    if isinstance(httpx_client, httpx.Client):
        HTTPXClientInstrumentor.instrument_client(httpx_client, tracer_provider=provider)


def create_app(
    settings: Settings | None = None,
    *,
    gateway: OnrampGateway | None = None,
    telemetry: Telemetry | None = None,
    chain_pool: ProviderPool | None = None,
    freeze_heap: bool = False,
) -> FastAPI:
    """The API. `gateway` and `chain_pool` replace Stripe and the settings' RPC providers (the caller owns them).

    `freeze_heap` (the served app): once started, everything allocated so far is moved out of the garbage
    collector's reach (`gc.freeze`). Start-up leaves about 180,000 tracked objects that live as long as the
    process, and a full collection walking them paused every request in flight for about 0.1 s; afterwards a
    full collection walks only what requests allocated. Not for tests: it is process-wide, and would keep
    every earlier test's garbage."""
    settings = settings or get_settings()
    telemetry = telemetry or build_telemetry(settings)
    engine = create_db_engine(settings)
    telemetry.metrics.watch_pool(engine)
    stripe_gateway = StripeOnrampGateway.from_settings(settings, telemetry) if gateway is None else None
    gateway = gateway or stripe_gateway
    state = AppState(
        settings=settings,
        engine=engine,
        factory=make_session_factory(engine),
        gateway=gateway,
        telemetry=telemetry,
        rate_limiter=build_rate_limiter(settings, telemetry.metrics),
    )
    pool = chain_pool or ProviderPool.from_settings(settings, telemetry)
    # Every counter a dashboard, SLO or alert reads exists at 0 from the first scrape (docs/metrics.md).
    telemetry.metrics.initialise(*known_labels(settings, pool.names))
    state.chain = ChainClient(pool)
    # Stripe reconciliation (payment/reconcile): with the Stripe of the settings only (not a caller's gateway).
    telemetry.metrics.reconcile_interval.set(settings.reconcile_interval_seconds)
    reconcile_client = ReconcileStripe.from_settings(settings, telemetry) if stripe_gateway is not None else None
    reconciler = None
    if reconcile_client is not None and settings.reconcile_interval_seconds > 0:
        ledgers: Callable[[], Awaitable[object]] | None = None
        if settings.ledger_check_enabled:
            context = ledgers_service.build_context(
                settings,
                factory=state.factory,
                run_db=state.run_db,
                fetch_stripe_session=reconcile_client.retrieve_session,
                chain=state.chain,
                metrics=telemetry.metrics,
                clock=lambda: datetime.now(UTC),
            )

            def check() -> Awaitable[ledgers_service.LedgerReport]:
                return ledgers_service.check_window(context, settings)

            ledgers = check

        reconciler = Reconciler(
            settings=settings, factory=state.factory, stripe=reconcile_client, telemetry=telemetry, ledgers=ledgers
        )
    if settings.delivery_worker_enabled:
        state.delivery_worker = DeliveryWorker(
            settings=settings, factory=state.factory, run_db=state.run_db, chain=state.chain, telemetry=telemetry
        )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_at_start:
            await run_in_threadpool(migrations.upgrade, engine)
        recovery = asyncio.create_task(_recovery_loop(state))
        if chain_pool is None:
            await pool.start()
        worker = asyncio.create_task(state.delivery_worker.run()) if state.delivery_worker is not None else None
        reconcile = asyncio.create_task(reconciler.run()) if reconciler is not None else None
        if freeze_heap:
            gc.collect()  # what start-up left as garbage is freed, not frozen
            gc.freeze()
        try:
            yield
        finally:
            for task in (recovery, worker, reconcile):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if chain_pool is None:
                await pool.aclose()
            if stripe_gateway is not None:
                await stripe_gateway.aclose()
            await state.rate_limiter.aclose()
            engine.dispose()
            telemetry.shutdown()

    app = FastAPI(
        title="musdpay payment API",
        version="0.1.0",
        description="Buy MUSD on Mezo with a card through Stripe's Crypto Onramp.",
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry is off: ObservabilityMiddleware makes the request spans and metrics
        # (one of each per request), and the check whether the built-in one is configured runs per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.musdpay = state
    install_problem_handlers(app)
    # Middleware, innermost first: body limit, rate limits, CORS (so a 429 is readable by the dApp), security
    # headers (on every answer, preflights and refusals included), observability (outermost: sees everything).
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.rate_limit_enabled:

        def route_templates() -> list[str]:
            listed = [getattr(route, "path", None) for route in app.routes]
            return [*app.openapi().get("paths", {}), *(path for path in listed if isinstance(path, str))]

        app.add_middleware(
            RateLimitMiddleware,
            limiter=state.rate_limiter,
            routes=settings.rate_limit_routes,
            metrics=telemetry.metrics,
            trusted_proxy_hops=settings.trusted_proxy_hops,
            route_templates=route_templates,
        )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-API-Key", "traceparent"],
        expose_headers=[
            "Location",
            "Idempotent-Replayed",
            "Retry-After",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
        ],
        max_age=600,
    )
    app.add_middleware(
        SecurityHeadersMiddleware,
        hsts_max_age=settings.hsts_max_age_seconds,
        always_hsts=settings.environment is Environment.production,
        trust_proxy=settings.trusted_proxy_hops > 0,
    )
    if settings.telemetry_enabled:
        multiprocess = "PROMETHEUS_MULTIPROC_DIR" in os.environ
        tracer = telemetry.tracer if telemetry.tracer_provider is not None else None
        app.add_middleware(
            ObservabilityMiddleware,
            metrics=telemetry.metrics,
            tracer=tracer,
            record_spans=telemetry.exporting,
            exemplars=not multiprocess,
        )
    # Routes are matched in this order, each check costing microseconds: the hot paths (Stripe's webhooks, the
    # dApp's session calls) first. Stripe's endpoint checks its signature itself and comes before the guard.
    app.include_router(stripe_webhooks_router)
    install_auth(app)  # every route included after it gets the route-policy guard (payment/auth/rbac.py)
    app.include_router(webhooks_router)
    app.include_router(onramp_router)
    app.include_router(delivery_router)
    app.include_router(auth_router)
    app.include_router(admin_router)
    app.include_router(health_router)

    @app.get("/problems/{slug}", include_in_schema=False)
    async def problem_type(slug: str) -> HTMLResponse:
        description = PROBLEM_TYPES.get(slug)
        if description is None:
            raise NotFound(f"No problem type {slug!r}.")
        return HTMLResponse(f"<!doctype html><title>{slug}</title><h1>{slug}</h1><p>{description}</p>")

    _instrument(state, stripe_gateway.client if stripe_gateway is not None else None)
    return app


def create_served_app() -> FastAPI:
    """The factory `musdpay serve` runs in each worker: JSON logs (configured secrets scrubbed) first, then the
    application."""
    settings = get_settings()
    configure_logging(settings.log_level, json_output=settings.log_format == "json")
    install_secret_scrubber(settings)
    return create_app(settings, freeze_heap=True)
