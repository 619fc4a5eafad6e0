"""Liveness and readiness probes."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, exposition, multiprocess
from starlette.concurrency import run_in_threadpool

from payment.core import migrations
from payment.core.problems import Problem, problem_response
from payment.deps import StateDep

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _checks(state: Any) -> dict[str, Any]:
    database: dict[str, Any]
    try:
        current, head = migrations.current_and_head(state.engine)
        database = {"ok": True}
        schema = {"ok": current == head, "current": current, "head": head}
    except Exception as exc:  # any failure to reach the database means not ready
        database = {"ok": False, "error": type(exc).__name__}
        schema = {"ok": False, "current": None, "head": migrations.head_revision()}
    settings = state.settings
    stripe = {
        "ok": settings.stripe_configured,
        "secretKey": settings.stripe_secret_key is not None,
        "webhookSecrets": len(settings.stripe_webhook_secrets),
        "apiBase": settings.stripe_api_base or "https://api.stripe.com",
    }
    return {"database": database, "migrations": schema, "stripe": stripe}


@router.get("/readyz", summary="Ready for traffic: database reachable, schema at head, Stripe configured")
async def readyz(state: StateDep) -> JSONResponse:
    checks = await run_in_threadpool(_checks, state)
    if all(check["ok"] for check in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    failing = ", ".join(name for name, check in checks.items() if not check["ok"])
    problem = Problem(
        status=503,
        slug="not-ready",
        detail=f"Not ready: {failing}.",
        headers={"Retry-After": "5"},
        extensions={"checks": checks},
    )
    return problem_response(problem)


@router.get("/metrics", summary="Prometheus metrics (OpenMetrics with exemplars when asked)", include_in_schema=False)
async def metrics(request: Request, state: StateDep) -> Response:
    registry = state.telemetry.metrics.registry
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # Several workers: sum their values from the shared directory (no exemplars in this mode).
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    encoder, content_type = exposition.choose_encoder(request.headers.get("accept", ""))
    body = await run_in_threadpool(encoder, registry)
    return Response(body, media_type=content_type)
