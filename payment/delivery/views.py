"""Operator routes of MUSD delivery: re-run a verification, retry a held or failed treasury transfer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status

from payment.auth import audit
from payment.auth.rbac import STAFF, require_roles
from payment.core.openapi import problem_responses
from payment.delivery import service
from payment.deps import Principal, StateDep, client_ip
from payment.onramp.schemas import DeliveryOut
from payment.onramp.views import delivery_out

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/onramp", tags=["delivery"])

Operator = Annotated[Principal, Depends(require_roles(*STAFF))]


async def _reopen(
    request: Request, state: StateDep, principal: Principal, session_id: str, action: service.Action
) -> DeliveryOut:
    delivery = await state.run_db(
        service.reopen_delivery,
        factory=state.factory,
        settings=state.settings,
        session_id=session_id,
        action=action,
        actor=audit.Actor.of(principal, client_ip(request, state.settings)),
        now=datetime.now(UTC),
    )
    if state.delivery_worker is not None:
        state.delivery_worker.wake()
    return delivery_out(delivery)


@router.post(
    "/sessions/{session_id}/delivery/verify",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryOut,
    response_model_by_alias=True,
    responses=problem_responses(401, 403, 404, 409),
    summary="Check the session's MUSD delivery on chain again (operators)",
)
async def verify_delivery(
    request: Request, state: StateDep, principal: Operator, session_id: Annotated[str, Path(max_length=64)]
) -> DeliveryOut:
    return await _reopen(request, state, principal, session_id, service.Action.verify)


@router.post(
    "/sessions/{session_id}/delivery/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryOut,
    response_model_by_alias=True,
    responses=problem_responses(401, 403, 404, 409),
    summary="Send a held or failed treasury delivery now (operators)",
)
async def retry_delivery(
    request: Request, state: StateDep, principal: Operator, session_id: Annotated[str, Path(max_length=64)]
) -> DeliveryOut:
    return await _reopen(request, state, principal, session_id, service.Action.retry)
