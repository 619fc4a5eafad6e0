"""Events and their signed delivery to real HTTP receivers: verification, retries, duplicates, shuffling."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import pytest
import stripe

from sandbox.stripe.delivery import SHUFFLE_WINDOW
from tests.sandbox.stripe.support import Sandbox, WebhookReceiver, sandbox, webhook_receiver
from tests.support.waiting import wait_until

STEPS = ["requires_payment", "fulfillment_processing", "fulfillment_complete"]


def subscribe(emu: Sandbox, receiver: WebhookReceiver, events: list[str] | None = None) -> dict[str, Any]:
    endpoint = emu.add_endpoint(receiver.url, events)
    receiver.secret = endpoint["secret"]
    return endpoint


def test_every_status_change_is_delivered_signed(emu: Sandbox, receiver: WebhookReceiver) -> None:
    endpoint = subscribe(emu, receiver)
    assert endpoint["secret"].startswith("whsec_")
    assert endpoint["url"] == receiver.url
    session = emu.create_mezo()
    emu.advance(session["id"], "fulfillment_complete")
    received = receiver.wait_for(3)
    assert [r.error for r in received] == [None, None, None]
    assert [r.headers["content-type"] for r in received] == ["application/json; charset=utf-8"] * 3
    assert all(isinstance(r.event, stripe.Event) for r in received)
    events = [json.loads(r.body) for r in received]
    assert [e["data"]["object"]["status"] for e in events] == STEPS
    first = events[0]
    assert first["id"].startswith("evt_")
    assert first["object"] == "event"
    assert first["type"] == "crypto.onramp_session_updated"
    assert first["livemode"] is False
    assert first["api_version"]
    assert first["pending_webhooks"] == 1
    assert first["request"] == {"id": None, "idempotency_key": None}
    assert first["data"]["previous_attributes"] == {"status": "initialized"}
    # Each event is a snapshot of its moment; the last one carries the transaction.
    assert first["data"]["object"]["transaction_details"]["transaction_id"] is None
    assert events[2]["data"]["object"] == emu.retrieve(session["id"])


def test_a_wrong_secret_does_not_verify(emu: Sandbox, receiver: WebhookReceiver) -> None:
    subscribe(emu, receiver)
    receiver.secret = "whsec_not_the_one"
    emu.advance(emu.create_mezo()["id"], "requires_payment")
    (received,) = receiver.wait_for(1)
    assert received.event is None
    assert received.error is not None
    assert "SignatureVerificationError" in received.error


def test_events_are_stored_and_listable(emu: Sandbox, receiver: WebhookReceiver) -> None:
    subscribe(emu, receiver)
    session = emu.create_mezo()
    emu.advance(session["id"], "fulfillment_processing")
    receiver.wait_for(2)
    listed = emu.get("/v1/events", limit=10)
    assert listed["object"] == "list"
    assert listed["url"] == "/v1/events"
    newest = listed["data"][0]
    assert newest["data"]["object"]["status"] == "fulfillment_processing"
    # Delivered everywhere, so nothing is pending any more.
    wait_until(lambda: emu.get(f"/v1/events/{newest['id']}")["pending_webhooks"] == 0, what="pending to drop")
    assert [e["id"] for e in emu.get("/v1/events", type="crypto.onramp_session_updated")["data"]] == [
        e["id"] for e in listed["data"]
    ]
    assert len(emu.get("/v1/events", type="crypto.*")["data"]) == 2
    assert emu.get("/v1/events", types=["charge.succeeded"])["data"] == []
    page = emu.get("/v1/events", limit=1, starting_after=newest["id"])
    assert page["data"][0]["data"]["object"]["status"] == "requires_payment"
    assert page["has_more"] is False
    with pytest.raises(stripe.InvalidRequestError) as raised:
        emu.get("/v1/events/evt_missing")
    assert raised.value.http_status == 404


def test_endpoints_filter_by_enabled_events_and_can_be_managed(emu: Sandbox) -> None:
    with webhook_receiver() as wanted, webhook_receiver() as other:
        subscribe(emu, wanted, ["crypto.onramp_session_updated"])
        ignored = subscribe(emu, other, ["charge.succeeded"])
        emu.advance(emu.create_mezo()["id"], "requires_payment")
        (received,) = wanted.wait_for(1)
        assert received.event is not None
        assert received.event["pending_webhooks"] == 1
        assert emu.deliveries(endpoint_id=ignored["id"]) == []

        retrieved = emu.get(f"/v1/webhook_endpoints/{ignored['id']}")
        assert retrieved["enabled_events"] == ["charge.succeeded"]
        assert "secret" not in retrieved
        updated = emu.stripe.raw_request(
            "post", f"/v1/webhook_endpoints/{ignored['id']}", enabled_events=["*"], disabled=True
        ).data
        assert updated["status"] == "disabled"
        assert updated["enabled_events"] == ["*"]
        listed = emu.get("/v1/webhook_endpoints")["data"]
        assert next(e["id"] for e in listed) == ignored["id"]
        assert len(listed) == 2
        deleted = emu.stripe.raw_request("delete", f"/v1/webhook_endpoints/{ignored['id']}").data
        assert deleted == {"id": ignored["id"], "object": "webhook_endpoint", "deleted": True}
        with pytest.raises(stripe.InvalidRequestError) as raised:
            emu.get(f"/v1/webhook_endpoints/{ignored['id']}")
        assert raised.value.code == "resource_missing"
        for params in ({"url": "ftp://x", "enabled_events": ["*"]}, {"url": wanted.url}):
            with pytest.raises(stripe.InvalidRequestError):
                emu.stripe.raw_request("post", "/v1/webhook_endpoints", **params)


def test_endpoints_given_at_start_share_a_generated_secret(receiver: WebhookReceiver) -> None:
    with sandbox(webhook_urls=[receiver.url]) as emu:
        secret = emu.emulator.webhook_secret
        assert secret is not None
        assert secret.startswith("whsec_")
        assert len(secret) > 30
        receiver.secret = secret
        emu.advance(emu.create_mezo()["id"], "requires_payment")
        (received,) = receiver.wait_for(1)
        assert received.error is None
    with sandbox(webhook_urls=[receiver.url], webhook_secret="whsec_given") as emu:
        assert emu.emulator.webhook_secret == "whsec_given"
    with sandbox() as emu:
        assert emu.emulator.webhook_secret is None


def test_failed_deliveries_are_retried_with_backoff(emu: Sandbox, receiver: WebhookReceiver) -> None:
    subscribe(emu, receiver)
    receiver.fail_next = 3
    emu.advance(emu.create_mezo()["id"], "requires_payment")
    (accepted,) = receiver.wait_for(1)
    assert accepted.error is None
    assert len(receiver.requests) == 4
    attempts = emu.deliveries(event_id=accepted.event["id"] if accepted.event else "")
    assert [(a["attempt"], a["status"], a["delivered"]) for a in attempts] == [
        (1, 500, False),
        (2, 500, False),
        (3, 500, False),
        (4, 200, True),
    ]
    delays = [a["next_retry_in"] for a in attempts[:3]]
    # base 0.02 s doubling, each scaled by a jitter factor in [0.5, 1]
    for n, delay in enumerate(delays):
        assert 0.02 * 2**n * 0.5 <= delay <= 0.02 * 2**n
    assert attempts[3]["next_retry_in"] is None
    # Each attempt is signed afresh, and every one of them verifies.
    assert all(r.error is None for r in receiver.requests)


def test_unreachable_endpoints_are_retried_then_given_up(emu: Sandbox) -> None:
    with socket.socket() as placeholder:  # a port nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        emu.add_endpoint(f"http://127.0.0.1:{port}/hook")
        emu.advance(emu.create_mezo()["id"], "requires_payment")
        wait_until(lambda: len(emu.deliveries()) == 5, what="five attempts")
    attempts = emu.deliveries()
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4, 5]
    assert all(a["status"] is None and a["error"] and not a["delivered"] for a in attempts)
    assert attempts[-1]["next_retry_in"] is None
    wait_until(lambda: emu.control.get("/_sandbox/health").json()["pending_deliveries"] == 0, what="give up")


def test_duplicate_fault_sends_each_event_twice(emu: Sandbox, receiver: WebhookReceiver) -> None:
    subscribe(emu, receiver)
    emu.set_faults(duplicate_rate=1.0)
    emu.advance(emu.create_mezo()["id"], "fulfillment_complete")
    received = receiver.wait_for(6)
    ids = [r.event["id"] for r in received if r.event]
    assert len(ids) == 6
    assert len(set(ids)) == 3
    assert all(ids.count(i) == 2 for i in ids)
    log = emu.deliveries()
    assert sorted(a["duplicate"] for a in log) == [False] * 3 + [True] * 3


def test_without_shuffle_one_sessions_events_arrive_in_order(emu: Sandbox, receiver: WebhookReceiver) -> None:
    subscribe(emu, receiver)
    sessions = [emu.create_mezo()["id"] for _ in range(4)]
    for session_id in sessions:
        emu.advance(session_id, "fulfillment_complete")
    received = receiver.wait_for(12)
    for session_id in sessions:
        seen = [
            r.event["data"]["object"]["status"]
            for r in received
            if r.event and r.event["data"]["object"]["id"] == session_id
        ]
        assert seen == STEPS


def test_shuffle_fault_permutes_pending_deliveries(emu: Sandbox, receiver: WebhookReceiver) -> None:
    subscribe(emu, receiver)
    emu.set_faults(shuffle=True, seed=5)
    sessions = [emu.create_mezo()["id"] for _ in range(3)]
    # Advanced at once, so the 9 events are queued well within the hold window: a full window of 8 and one.
    threads = [threading.Thread(target=emu.advance, args=(s, "fulfillment_complete")) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    received = receiver.wait_for(9)
    arrived = [r.event["id"] for r in received if r.event]
    created = [e["id"] for e in reversed(emu.get("/v1/events", limit=100)["data"])]
    assert sorted(arrived) == sorted(created)
    assert arrived != created
    # The first window is a permutation of the first events created.
    assert set(arrived[:SHUFFLE_WINDOW]) == set(created[:SHUFFLE_WINDOW])
