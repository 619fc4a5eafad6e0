"""The /_sandbox control API: advancing sessions, the fulfiller, auto-advance, faults, refunds and disputes."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest
import stripe

from tests.sandbox.stripe.support import MEZO_WALLET, SESSIONS, Sandbox, sandbox
from tests.support.waiting import wait_until

TX_HASH = re.compile(r"^0x[0-9a-f]{64}$")


def statuses_of_events(emu: Sandbox, session_id: str) -> list[str]:
    events = emu.get("/v1/events", limit=100)["data"]
    return [e["data"]["object"]["status"] for e in reversed(events) if e["data"]["object"]["id"] == session_id]


def test_advance_walks_each_step_and_settles_amounts(emu: Sandbox) -> None:
    session = emu.create_mezo()
    response = emu.advance(session["id"], "fulfillment_complete")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "fulfillment_complete"
    details = body["transaction_details"]
    assert details["source_amount"] == "100.00"
    assert details["fees"] == {"transaction_fee_amount": "1.50", "network_fee_amount": "0.01"}
    assert details["destination_amount"] == "98.49"
    assert TX_HASH.match(details["transaction_id"])
    assert details["wallet_address"] == MEZO_WALLET
    assert statuses_of_events(emu, session["id"]) == [
        "requires_payment",
        "fulfillment_processing",
        "fulfillment_complete",
    ]
    assert emu.retrieve(session["id"]) == body


def test_processing_already_shows_amounts_and_fees_but_no_transaction(emu: Sandbox) -> None:
    session = emu.create(wallet_addresses={"mezo": MEZO_WALLET}, source_amount="20.00", source_currency="usd")
    body = emu.advance(session["id"], "fulfillment_processing").json()
    details = body["transaction_details"]
    # The customer bought MUSD on Mezo: the only route its wallet allows.
    assert (details["destination_network"], details["destination_currency"]) == ("mezo", "musd")
    assert details["fees"] == {"transaction_fee_amount": "0.30", "network_fee_amount": "0.01"}
    assert details["destination_amount"] == "19.69"
    assert details["transaction_id"] is None


def test_a_destination_amount_sets_the_fiat_price_at_payment(emu: Sandbox) -> None:
    session = emu.create_mezo(source_amount=None, destination_amount="50")
    assert session["transaction_details"]["source_amount"] is None
    details = emu.advance(session["id"], "fulfillment_processing").json()["transaction_details"]
    assert details["destination_amount"] == "50"
    fees = details["fees"]
    total = sum(
        float(x) for x in (details["destination_amount"], fees["transaction_fee_amount"], fees["network_fee_amount"])
    )
    assert float(details["source_amount"]) == pytest.approx(total)
    assert details["source_amount"] == "50.78"


@pytest.mark.parametrize(
    ("first", "then", "message"),
    [
        ("fulfillment_processing", "requires_payment", "only move forward"),
        ("requires_payment", "requires_payment", "only move forward"),
        ("fulfillment_complete", "rejected", "terminal"),
        ("rejected", "fulfillment_complete", "terminal"),
        ("requires_payment", "paid", "Unknown status"),
    ],
)
def test_backward_repeated_terminal_or_unknown_moves_are_refused(
    emu: Sandbox, first: str, then: str, message: str
) -> None:
    session = emu.create_mezo()
    assert emu.advance(session["id"], first).status_code == 200
    events_before = len(emu.get("/v1/events", limit=100)["data"])
    response = emu.advance(session["id"], then)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_status_transition"
    assert message in error["message"]
    assert emu.retrieve(session["id"])["status"] == first
    assert len(emu.get("/v1/events", limit=100)["data"]) == events_before


def test_rejected_is_reachable_from_any_open_status(emu: Sandbox) -> None:
    for start in ("initialized", "requires_payment", "fulfillment_processing"):
        session = emu.create_mezo()
        if start != "initialized":
            assert emu.advance(session["id"], start).status_code == 200
        assert emu.advance(session["id"], "rejected").json()["status"] == "rejected"
        assert statuses_of_events(emu, session["id"])[-1] == "rejected"


def test_control_errors(emu: Sandbox) -> None:
    missing = emu.advance("cos_nope", "requires_payment")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "resource_missing"
    session = emu.create_mezo()
    for body in (b"not json", b'{"state": "x"}', b"[1]"):
        response = emu.control.post(f"/_sandbox/onramp_sessions/{session['id']}/advance", content=body)
        assert response.status_code == 400, body


class CountingFulfiller:
    def __init__(self, failures: int = 0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failures = failures
        self._lock = threading.Lock()

    def fulfill(self, session: dict[str, Any]) -> str:
        with self._lock:
            self.calls.append(session)
            if self.failures:
                self.failures -= 1
                raise RuntimeError("chain unavailable")
            return "0x" + f"{len(self.calls):064x}"


def test_the_fulfiller_is_called_once_per_session_on_completion() -> None:
    fulfiller = CountingFulfiller()
    with sandbox(fulfiller=fulfiller) as emu:
        session = emu.create_mezo()
        emu.advance(session["id"], "fulfillment_processing")
        assert fulfiller.calls == []
        done = emu.advance(session["id"], "fulfillment_complete").json()
        assert done["transaction_details"]["transaction_id"] == "0x" + f"{1:064x}"
        assert emu.advance(session["id"], "fulfillment_complete").status_code == 400
        assert emu.retrieve(session["id"])["transaction_details"]["transaction_id"] == "0x" + f"{1:064x}"
        assert len(fulfiller.calls) == 1
        # It was handed the session about to complete: amounts settled, wallet chosen.
        handed = fulfiller.calls[0]
        assert handed["id"] == session["id"]
        assert handed["status"] == "fulfillment_processing"
        assert handed["transaction_details"]["wallet_address"] == MEZO_WALLET
        assert handed["transaction_details"]["destination_amount"] == "98.49"
        rejected = emu.create_mezo()
        emu.advance(rejected["id"], "rejected")
        assert len(fulfiller.calls) == 1


def test_a_failing_fulfiller_leaves_the_session_processing_and_can_be_retried() -> None:
    fulfiller = CountingFulfiller(failures=1)
    with sandbox(fulfiller=fulfiller) as emu:
        session = emu.create_mezo()
        failed = emu.advance(session["id"], "fulfillment_complete")
        assert failed.status_code == 502
        assert "chain unavailable" in failed.json()["error"]["message"]
        assert emu.retrieve(session["id"])["status"] == "fulfillment_processing"
        retried = emu.advance(session["id"], "fulfillment_complete").json()
        assert retried["status"] == "fulfillment_complete"
        assert retried["transaction_details"]["transaction_id"] == "0x" + f"{2:064x}"


def test_concurrent_advances_fulfil_once() -> None:
    fulfiller = CountingFulfiller()
    with sandbox(fulfiller=fulfiller) as emu:
        session = emu.create_mezo()
        results: list[int] = []

        def advance() -> None:
            results.append(emu.advance(session["id"], "fulfillment_complete").status_code)

        threads = [threading.Thread(target=advance) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert sorted(results) == [200, 400, 400, 400]
        assert len(fulfiller.calls) == 1


def test_auto_advance_drives_new_sessions_to_the_target() -> None:
    with sandbox(auto_advance="fulfillment_complete", auto_advance_delay=0.02) as emu:
        session = emu.create_mezo()
        assert session["status"] == "initialized"
        wait_until(lambda: emu.retrieve(session["id"])["status"] == "fulfillment_complete", what="auto-advance")
        assert statuses_of_events(emu, session["id"]) == [
            "requires_payment",
            "fulfillment_processing",
            "fulfillment_complete",
        ]
    with sandbox(auto_advance="requires_payment", auto_advance_delay=0.02) as emu:
        session = emu.create_mezo()
        wait_until(lambda: statuses_of_events(emu, session["id"]) == ["requires_payment"], what="one step")
        # The manual control still works on top of it.
        assert emu.advance(session["id"], "rejected").json()["status"] == "rejected"


def test_auto_advance_target_is_validated() -> None:
    with pytest.raises(ValueError, match="auto_advance"), sandbox(auto_advance="paid"):
        pass


def test_faults_round_trip_and_validate(emu: Sandbox) -> None:
    assert emu.control.get("/_sandbox/faults").json() == {
        "latency_ms": 0.0,
        "error_rate": 0.0,
        "rate_limit_rate": 0.0,
        "down": False,
        "duplicate_rate": 0.0,
        "shuffle": False,
        "onramp_unavailable": None,
        "seed": 0,
    }
    emu.set_faults(latency_ms=5, seed=9)
    patched = emu.control.patch("/_sandbox/faults", json={"shuffle": True}).json()
    assert (patched["latency_ms"], patched["shuffle"], patched["seed"]) == (5.0, True, 9)
    replaced = emu.set_faults(down=True)
    assert (replaced["latency_ms"], replaced["shuffle"], replaced["down"], replaced["seed"]) == (0.0, False, True, 9)
    for bad in ({"error_rate": 2}, {"bogus": 1}, {"down": 1}):
        response = emu.control.put("/_sandbox/faults", json=bad)
        assert response.status_code == 400
        assert response.json()["error"]["message"]


def test_latency_is_added_to_api_calls_only(emu: Sandbox) -> None:
    emu.set_faults(latency_ms=300)
    started = time.monotonic()
    session = emu.create_mezo()
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    emu.advance(session["id"], "requires_payment")
    assert time.monotonic() - started < 0.3


def test_error_rate_rate_limit_and_down(emu: Sandbox) -> None:
    emu.set_faults(error_rate=1.0)
    with pytest.raises(stripe.APIError) as raised:
        emu.create_mezo()
    assert raised.value.http_status == 500
    assert raised.value.json_body["error"]["type"] == "api_error"
    emu.set_faults(rate_limit_rate=1.0)
    with pytest.raises(stripe.RateLimitError) as limited:
        emu.get("/v1/balance")
    error = limited.value.json_body["error"]
    assert limited.value.http_status == 429
    assert (error["type"], error["code"]) == ("invalid_request_error", "rate_limit")
    emu.set_faults(down=True)
    with pytest.raises(stripe.APIError) as down:
        emu.get("/v1/balance")
    assert down.value.http_status == 503
    assert down.value.headers["request-id"].startswith("req_")
    # The control API is never faulted, so a test can always steer its way out.
    assert emu.control.get("/_sandbox/health").json()["status"] == "ok"
    emu.set_faults()
    assert emu.get("/v1/balance")["object"] == "balance"
    assert len(emu.get(SESSIONS)["data"]) == 0


def outcomes(emu: Sandbox, calls: int) -> list[str]:
    seen = []
    for _ in range(calls):
        try:
            emu.get("/v1/balance")
            seen.append("ok")
        except stripe.RateLimitError:
            seen.append("429")
        except stripe.APIError:
            seen.append("500")
    return seen


def test_fault_rates_are_reproducible_from_the_seed(emu: Sandbox) -> None:
    emu.set_faults(error_rate=0.3, rate_limit_rate=0.2, seed=1234)
    first = outcomes(emu, 40)
    emu.set_faults(error_rate=0.3, rate_limit_rate=0.2, seed=1234)
    assert outcomes(emu, 40) == first
    assert {"ok", "429", "500"} <= set(first)
    emu.set_faults(error_rate=0.3, rate_limit_rate=0.2, seed=99)
    assert outcomes(emu, 40) != first


def test_refunds_and_disputes_are_listed_with_created_filters(emu: Sandbox) -> None:
    assert emu.get("/v1/refunds")["data"] == []
    assert emu.get("/v1/disputes")["data"] == []
    refunds = []
    for created in (1_700_000_000, 1_700_000_100, 1_700_000_200):
        response = emu.control.post(
            "/_sandbox/refunds",
            json={"amount": 1500, "currency": "usd", "created": created, "metadata": {"session": "cos_1"}},
        )
        assert response.status_code == 200, response.text
        refunds.append(response.json())
    assert refunds[0]["id"].startswith("re_")
    assert refunds[0]["object"] == "refund"
    assert refunds[0]["status"] == "succeeded"
    assert refunds[0]["amount"] == 1500
    recent = emu.get("/v1/refunds", created={"gte": 1_700_000_100})
    assert [r["id"] for r in recent["data"]] == [refunds[2]["id"], refunds[1]["id"]]
    paged = emu.get("/v1/refunds", limit=1, starting_after=refunds[2]["id"])
    assert [r["id"] for r in paged["data"]] == [refunds[1]["id"]]
    assert paged["has_more"] is True
    assert emu.get(f"/v1/refunds/{refunds[0]['id']}")["metadata"] == {"session": "cos_1"}

    dispute = emu.control.post(
        "/_sandbox/disputes", json={"amount": 2500, "currency": "usd", "status": "needs_response", "charge": "ch_1"}
    ).json()
    assert dispute["id"].startswith("dp_")
    assert dispute["object"] == "dispute"
    assert dispute["reason"] == "fraudulent"
    listed = emu.get("/v1/disputes", created={"gte": dispute["created"]}, charge="ch_1")
    assert [d["id"] for d in listed["data"]] == [dispute["id"]]
    assert emu.get("/v1/disputes", charge="ch_other")["data"] == []
    assert emu.get("/v1/disputes", created={"gt": dispute["created"]})["data"] == []

    for path, body in [
        ("/_sandbox/refunds", {"amount": -1}),
        ("/_sandbox/refunds", {"amount": 10, "status": "done"}),
        ("/_sandbox/disputes", {"amount": 10, "reason": "bored"}),
        ("/_sandbox/disputes", {"amount": 10, "extra": True}),
    ]:
        assert emu.control.post(path, json=body).status_code == 400, body
    with pytest.raises(stripe.InvalidRequestError) as raised:
        emu.get("/v1/refunds", created={"since": 1})
    assert raised.value.code == "parameter_unknown"
