"""Any order and duplication of one session's events ends in the same final state."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from payment.core.config import Settings
from payment.core.telemetry import Telemetry
from payment.onramp.models import OnrampSession
from payment.webhooks.service import ingest_event
from tests.payment.conftest import event_payload, onramp_object, seed_session

FORWARD = ["requires_payment", "fulfillment_processing", "fulfillment_complete"]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[int]]:
    """One session's events as Stripe would emit them, and a delivery order with duplicates."""
    ends_rejected = draw(st.booleans())
    steps = [*FORWARD[: draw(st.integers(0, 2))], "rejected"] if ends_rejected else FORWARD
    events: list[dict[str, Any]] = []
    created = 1_700_000_000
    for step in steps:
        # Stripe may send several snapshots of one status (details filled in later), often in the same second.
        for repeat in range(draw(st.integers(1, 2))):
            created += draw(st.integers(0, 1))
            details = {}
            if step in ("fulfillment_processing", "fulfillment_complete") and repeat > 0:
                details = {"transaction_id": "0x" + f"{len(events):02x}" * 32, "destination_amount": "98.49"}
            events.append({"status": step, "created": created, "details": details})
    indices = list(range(len(events)))
    delivery = draw(st.lists(st.sampled_from(indices), max_size=len(indices) * 2))
    delivery = draw(st.permutations(indices + delivery))
    return events, delivery


def _deliver(factory: sessionmaker[Session], settings: Settings, events: list[dict[str, Any]], order: list[int]) -> Any:
    row = seed_session(factory)
    prefix = uuid.uuid4().hex[:20]  # one per run, so ties in `created` break the same way in both runs
    ids = [f"evt_{prefix}_{i:03d}" for i in range(len(events))]
    for index in order:
        event = events[index]
        obj = onramp_object(row, event["status"], **event["details"])
        ingest_event(
            factory=factory,
            settings=settings,
            telemetry=Telemetry(),
            payload=event_payload(obj, event_id=ids[index], created=event["created"]),
        )
    with factory() as db:
        final = db.get(OnrampSession, row.id)
        assert final is not None
        applied = ids.index(final.last_event_id) if final.last_event_id else None
        return (
            final.status,
            final.transaction_id,
            final.destination_amount,
            events[applied] if applied is not None else None,
        )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories())
def test_final_state_is_independent_of_delivery_order_and_duplicates(
    factory: sessionmaker[Session], settings: Settings, history: tuple[list[dict[str, Any]], list[int]]
) -> None:
    events, delivery = history
    in_order = _deliver(factory, settings, events, list(range(len(events))))
    shuffled = _deliver(factory, settings, events, delivery)
    assert shuffled == in_order
    assert in_order[0] == events[-1]["status"]
