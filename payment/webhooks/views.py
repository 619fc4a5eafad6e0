"""The Stripe webhook endpoint (authenticated by its signature, not by a caller identity) and the operators' replay
of a recorded event."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel

from payment.auth import audit
from payment.auth.rbac import STAFF, require_roles
from payment.core.openapi import problem_responses
from payment.deps import AppState, Principal, StateDep, client_ip
from payment.webhooks import service

__all__ = ["router", "stripe_router"]

# Stripe's endpoint alone: authenticated by its signature (policy "signature" in payment/auth/rbac.py), so it
# is mounted without the route-policy guard, which would only mark the caller anonymous at a dependency's cost.
stripe_router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


class WebhookAck(BaseModel):
    received: bool
    eventId: str
    outcome: str


@stripe_router.post(
    "/stripe",
    response_model=WebhookAck,
    responses=problem_responses(400, 422, 503),
    summary="Receive a Stripe event (signed with Stripe-Signature)",
)
async def stripe_webhook(request: Request) -> Response:
    # Hot path: no dependency (each costs FastAPI's dependency solving), the header read directly, the answer
    # serialised by hand.
    state: AppState = request.app.state.musdpay
    settings, telemetry = state.settings, state.telemetry
    payload = await request.body()
    secrets = [secret.get_secret_value() for secret in settings.stripe_webhook_secrets]
    try:
        service.verify_signature(
            payload, request.headers.get("stripe-signature"), secrets, settings.stripe_webhook_tolerance_seconds
        )
    except service.InvalidSignature:
        # The payload is untrusted, so its event type is not read.
        telemetry.metrics.webhook_events.labels(service.UNVERIFIED_TYPE, service.Failure.invalid_signature.value).inc()
        raise
    result = await state.run_db(
        service.ingest_event, factory=state.factory, settings=settings, telemetry=telemetry, payload=payload
    )
    if result.delivery_enqueued and state.delivery_worker is not None:
        state.delivery_worker.wake()
    body = {"received": True, "eventId": result.event_id, "outcome": result.outcome.value}
    return Response(json.dumps(body), media_type="application/json")


@router.post(
    "/events/{event_id}/replay",
    response_model=WebhookAck,
    responses=problem_responses(401, 403, 404),
    summary="Apply a recorded Stripe event again (operators)",
)
async def replay_event(
    request: Request,
    state: StateDep,
    principal: Annotated[Principal, Depends(require_roles(*STAFF))],
    event_id: Annotated[str, Path(max_length=255)],
) -> WebhookAck:
    result = await state.run_db(
        service.replay_event,
        factory=state.factory,
        settings=state.settings,
        telemetry=state.telemetry,
        event_id=event_id,
        actor=audit.Actor.of(principal, client_ip(request, state.settings)),
    )
    if result.delivery_enqueued and state.delivery_worker is not None:
        state.delivery_worker.wake()
    return WebhookAck(received=True, eventId=result.event_id, outcome=result.outcome.value)
