"""List Events as reconciliation uses it: `delivery_success`, `created` bounds, `type`, pagination, retention."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.sandbox.stripe.support import Sandbox, WebhookReceiver, sandbox
from tests.support.waiting import wait_until

UPDATED = "crypto.onramp_session_updated"


class Clock:
    """The emulator's clock, moved by the test (unix seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def events(emu: Sandbox, **params: Any) -> list[dict[str, Any]]:
    """Every page of List Events with these filters, newest first."""
    found: list[dict[str, Any]] = []
    while True:
        page = emu.get("/v1/events", limit=2, **params)
        found.extend(page["data"])
        if not page["has_more"]:
            return found
        params["starting_after"] = page["data"][-1]["id"]


def settled(emu: Sandbox) -> None:
    wait_until(lambda: emu.control.get("/_sandbox/health").json()["pending_deliveries"] == 0, what="deliveries end")


def test_delivery_success_tells_delivered_from_given_up(receiver: WebhookReceiver) -> None:
    with sandbox(delivery_max_attempts=2) as emu:
        receiver.secret = emu.add_endpoint(receiver.url)["secret"]
        receiver.fail_next = 2  # both attempts of the first event fail: its retries are exhausted
        lost = emu.create_mezo()["id"]
        emu.advance(lost, "requires_payment")
        settled(emu)
        emu.advance(emu.create_mezo()["id"], "requires_payment")
        settled(emu)
        every = events(emu)
        assert len(every) == 2
        failed = events(emu, delivery_success=False)
        assert [e["data"]["object"]["id"] for e in failed] == [lost]
        assert failed[0]["pending_webhooks"] == 1  # Stripe counts it until an endpoint answers 2xx
        delivered = events(emu, delivery_success=True)
        assert [e["id"] for e in delivered] == [every[0]["id"]]
        assert delivered[0]["pending_webhooks"] == 0
        # The event is in Stripe's shape.
        assert set(failed[0]) == {
            "id", "object", "api_version", "created", "data", "livemode", "pending_webhooks", "request", "type",
        }  # fmt: skip
        assert failed[0]["object"] == "event"
        assert failed[0]["type"] == UPDATED
        with pytest.raises(stripe.InvalidRequestError):
            emu.get("/v1/events", delivery_success="maybe")


def test_created_bounds_type_and_pages() -> None:
    clock = Clock(1_900_000_000)
    with sandbox(clock=clock) as emu:
        session = emu.create_mezo()["id"]
        for status in ("requires_payment", "fulfillment_processing", "fulfillment_complete"):
            emu.advance(session, status)
            clock.now += 10
        created = [e["created"] for e in events(emu)]
        assert created == [1_900_000_020, 1_900_000_010, 1_900_000_000]
        assert len(events(emu, created={"gte": 1_900_000_010})) == 2
        assert len(events(emu, created={"gt": 1_900_000_010})) == 1
        assert len(events(emu, created={"lt": 1_900_000_010})) == 1
        assert len(events(emu, created={"gte": 1_900_000_000, "lte": 1_900_000_010})) == 2
        assert len(events(emu, type=UPDATED, created={"gte": 1_900_000_000})) == 3
        assert events(emu, types=["charge.succeeded"], created={"gte": 1_900_000_000}) == []


def test_events_are_kept_30_days() -> None:
    clock = Clock(1_900_000_000)
    with sandbox(clock=clock) as emu:
        session = emu.create_mezo()["id"]
        emu.advance(session, "requires_payment")
        old = events(emu)[0]["id"]
        clock.now += 29 * 86400
        emu.advance(session, "fulfillment_processing")
        assert len(events(emu)) == 2
        clock.now += 2 * 86400  # the first event is now 31 days old
        assert [e["data"]["object"]["status"] for e in events(emu)] == ["fulfillment_processing"]
        with pytest.raises(stripe.InvalidRequestError):
            emu.get(f"/v1/events/{old}")
