"""The Stripe webhook endpoint; authenticated by its signature, not by a caller identity."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from payment.core.openapi import problem_responses
from payment.deps import StateDep
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
async def stripe_webhook(request: Request, state: StateDep) -> Response:
    # Hot path: one dependency, the header read directly, the answer serialised by hand.
    settings, telemetry = state.settings, state.telemetry
    payload = await request.body()
    secrets = [secret.get_secret_value() for secret in settings.stripe_webhook_secrets]
    try:
        service.verify_signature(
            payload, request.headers.get("stripe-signature"), secrets, settings.stripe_webhook_tolerance_seconds
        )
    except service.InvalidSignature:
        # The payload is untrusted, so its event type is not read.
        telemetry.metrics.webhook_events.labels("unknown", "invalid_signature").inc()
        raise
    result = await state.run_db(
        service.ingest_event, factory=state.factory, settings=settings, telemetry=telemetry, payload=payload
    )
    body = {"received": True, "eventId": result.event_id, "outcome": result.outcome.value}
    return Response(json.dumps(body), media_type="application/json")
