"""Pure parts of the emulator: paging, pricing, idempotency fingerprints, the status machine, signing."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st

from sandbox.stripe.faults import Faults, FaultsError
from sandbox.stripe.forms import parse_form
from sandbox.stripe.idempotency import IdempotencyStore, fingerprint
from sandbox.stripe.pricing import quote_from_destination, quote_from_source
from sandbox.stripe.sessions import TransitionError, transition_path
from sandbox.stripe.store import Collection, UnknownCursor
from sandbox.stripe.webhooks import sign

FEES = {"fee_rate": Decimal("0.015"), "network_fee": Decimal("0.01")}


def filled(count: int, max_items: int | None = None) -> Collection[int]:
    collection: Collection[int] = Collection(max_items)
    for i in range(count):
        collection.add(f"o{i}", i)
    return collection


def test_pages_are_newest_first_with_cursors_both_ways() -> None:
    collection = filled(7)
    assert collection.page(limit=3) == ([6, 5, 4], True)
    assert collection.page(limit=3, starting_after="o4") == ([3, 2, 1], True)
    assert collection.page(limit=3, starting_after="o1") == ([0], False)
    assert collection.page(limit=2, ending_before="o3") == ([5, 4], True)
    assert collection.page(limit=5, ending_before="o3") == ([6, 5, 4], False)
    assert collection.page(limit=10, keep=lambda i: i % 2 == 0) == ([6, 4, 2, 0], False)
    with pytest.raises(UnknownCursor):
        collection.page(limit=1, starting_after="nope")


def test_removed_and_evicted_objects_leave_no_gaps_in_pages() -> None:
    collection = filled(5)
    collection.remove("o3")
    assert collection.page(limit=10) == ([4, 2, 1, 0], False)
    bounded = filled(50, max_items=10)
    assert len(bounded) == 10
    assert bounded.get("o39") is None
    assert bounded.get("o40") == 40
    assert bounded.page(limit=100) == (list(range(49, 39, -1)), False)
    assert bounded.page(limit=3, starting_after="o42") == ([41, 40], False)


def test_quote_from_source_is_the_documented_example() -> None:
    quote = quote_from_source(Decimal("100.00"), "usd", "musd", **FEES)
    assert (quote.transaction_fee, quote.network_fee, quote.destination_amount) == (
        Decimal("1.50"),
        Decimal("0.01"),
        Decimal("98.49"),
    )


@given(st.decimals(min_value=Decimal("1.00"), max_value=Decimal("100000"), places=2))
def test_destination_quotes_balance_to_the_cent(destination: Decimal) -> None:
    quote = quote_from_destination(destination, "usd", "musd", **FEES)
    assert quote.source_amount == quote.destination_amount + quote.transaction_fee + quote.network_fee
    # The fee absorbs at most a cent of rounding against 1.5% of what the customer pays.
    assert abs(quote.transaction_fee - quote.source_amount * FEES["fee_rate"]) <= Decimal("0.015")


def test_fingerprint_ignores_parameter_order_but_not_values() -> None:
    a = fingerprint("POST", "/v1/x", parse_form("a=1&b[c]=2&d[0]=x"))
    assert a == fingerprint("POST", "/v1/x", parse_form("d[0]=x&b[c]=2&a=1"))
    assert a != fingerprint("POST", "/v1/x", parse_form("a=1&b[c]=3&d[0]=x"))
    assert a != fingerprint("POST", "/v1/y", parse_form("a=1&b[c]=2&d[0]=x"))


def test_idempotency_keys_live_24_hours_and_are_bounded_in_count() -> None:
    now = [0.0]
    store = IdempotencyStore(max_keys=2, clock=lambda: now[0])
    store.put("k1", b"f", 200, b"one")
    now[0] = 24 * 3600 - 1
    assert store.get("k1") is not None
    store.put("k2", b"f", 200, b"two")
    now[0] = 24 * 3600 + 1
    assert store.get("k1") is None
    assert store.get("k2") is not None
    store.put("k3", b"f", 200, b"three")
    store.put("k4", b"f", 200, b"four")
    assert store.get("k2") is None
    assert len(store) == 2


def test_transitions_step_forward_and_refuse_backwards_and_terminal() -> None:
    assert transition_path("initialized", "fulfillment_complete") == [
        "requires_payment",
        "fulfillment_processing",
        "fulfillment_complete",
    ]
    assert transition_path("requires_payment", "rejected") == ["rejected"]
    for current, target in [
        ("fulfillment_processing", "requires_payment"),
        ("requires_payment", "requires_payment"),
        ("fulfillment_complete", "rejected"),
        ("rejected", "fulfillment_complete"),
        ("initialized", "paid"),
    ]:
        with pytest.raises(TransitionError):
            transition_path(current, target)


def test_signature_is_what_the_official_sdk_verifies() -> None:
    payload = b'{"id":"evt_1","object":"event"}'
    header = sign(payload, "whsec_abc", int(time.time()))
    stripe.WebhookSignature.verify_header(payload, header, "whsec_abc", tolerance=300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload, header, "whsec_other", tolerance=300)
    assert header == stripe.WebhookSignature.generate_signature_header(
        payload.decode(), "whsec_abc", timestamp=int(header.split(",")[0][2:])
    )


def test_fault_settings_are_validated() -> None:
    assert Faults.from_json({"error_rate": 1, "seed": 7}) == Faults(error_rate=1.0, seed=7)
    assert Faults.from_json({"down": True}, base=Faults(latency_ms=5)).latency_ms == 5
    for bad in ({"error_rate": 1.5}, {"latency_ms": -1}, {"down": "yes"}, {"seed": 1.5}, {"nope": 1}, []):
        with pytest.raises(FaultsError):
            Faults.from_json(bad)
