"""The Stripe webhook endpoint; authenticated by its signature, not by a caller identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from payment.core.openapi import problem_responses
from payment.deps import FactoryDep, SettingsDep, TelemetryDep
from payment.webhooks import service

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


class WebhookAck(BaseModel):
    received: bool
    eventId: str
    outcome: str


@router.post(
    "/stripe",
    response_model=WebhookAck,
    responses=problem_responses(400, 422, 503),
    summary="Receive a Stripe event (signed with Stripe-Signature)",
)
async def stripe_webhook(
    request: Request,
    factory: FactoryDep,
    settings: SettingsDep,
    telemetry: TelemetryDep,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookAck:
    payload = await request.body()
    secrets = [secret.get_secret_value() for secret in settings.stripe_webhook_secrets]
    try:
        service.verify_signature(payload, stripe_signature, secrets, settings.stripe_webhook_tolerance_seconds)
    except service.InvalidSignature:
        # The payload is untrusted, so its event type is not read.
        telemetry.metrics.webhook_events.labels("unknown", "invalid_signature").inc()
        raise
    result = await run_in_threadpool(
        service.ingest_event, factory=factory, settings=settings, telemetry=telemetry, payload=payload
    )
    return WebhookAck(received=True, eventId=result.event_id, outcome=result.outcome.value)
