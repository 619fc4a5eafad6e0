"""The /v1 onramp session API through the official SDK: shape, parameters, errors, auth, idempotency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from tests.sandbox.stripe.support import (
    API_KEY,
    ETH_WALLET,
    MEZO_WALLET,
    SESSIONS,
    Sandbox,
    http_client,
    sandbox,
    sdk,
)

FIXTURE = json.loads((Path(__file__).parent / "onramp_session.fixture.json").read_text())["crypto.onramp_session"]
ERROR_KEYS = {"type", "code", "message", "param", "doc_url", "request_log_url"}


def assert_same_shape(actual: Any, expected: Any, path: str = "session") -> None:
    """Same key set at every level; same JSON type wherever the fixture has a non-null value."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        assert set(actual) == set(expected), f"{path}: keys differ: {set(actual) ^ set(expected)}"
        for key, value in expected.items():
            assert_same_shape(actual[key], value, f"{path}.{key}")
    elif expected is not None:
        assert type(actual) is type(expected), f"{path}: {type(actual).__name__} != {type(expected).__name__}"


def test_objects_have_the_fixture_shape_in_every_status(emu: Sandbox) -> None:
    created = emu.create_mezo(metadata={"order": "o-1"})
    assert_same_shape(created, FIXTURE)
    assert emu.advance(created["id"], "fulfillment_complete").status_code == 200
    complete = emu.retrieve(created["id"])
    assert_same_shape(complete, FIXTURE)
    rejected = emu.create(customer_ip_address="198.51.100.4")
    assert emu.advance(rejected["id"], "rejected").status_code == 200
    assert_same_shape(emu.retrieve(rejected["id"]), FIXTURE)
    # The typed values the fixture leaves null are typed too.
    details = complete["transaction_details"]
    assert isinstance(details["destination_currencies"], list)
    assert isinstance(details["destination_networks"], list)
    for amount in (details["source_amount"], details["destination_amount"], *details["fees"].values()):
        assert isinstance(amount, str)
    assert isinstance(complete["metadata"], dict)


def test_shape_check_catches_an_extra_or_missing_key() -> None:
    wrong = json.loads(json.dumps(FIXTURE))
    wrong["transaction_details"]["wallet_addresses"]["mezo"] = None
    with pytest.raises(AssertionError, match="mezo"):
        assert_same_shape(wrong, FIXTURE)
    del wrong["transaction_details"]["wallet_addresses"]["mezo"]
    del wrong["transaction_details"]["fees"]["network_fee_amount"]
    with pytest.raises(AssertionError, match="network_fee_amount"):
        assert_same_shape(wrong, FIXTURE)


def test_create_reads_every_bracket_parameter(emu: Sandbox) -> None:
    session = emu.create(
        wallet_addresses={"mezo": MEZO_WALLET, "ethereum": ETH_WALLET},
        source_amount="250.50",
        source_currency="usd",
        destination_currencies=["musd", "usdc"],
        destination_currency="musd",
        destination_networks=["mezo", "ethereum"],
        destination_network="mezo",
        lock_wallet_address=True,
        customer_ip_address="198.51.100.7",
        metadata={"order_id": "ord_1", "0": "digit key"},
        settlement_speed="standard",
    )
    assert session["id"].startswith("cos_")
    assert session["object"] == "crypto.onramp_session"
    assert session["client_secret"].startswith(session["id"] + "_secret_")
    assert session["livemode"] is False
    assert session["status"] == "initialized"
    assert session["metadata"] == {"order_id": "ord_1", "0": "digit key"}
    details = session["transaction_details"]
    assert details["wallet_address"] == MEZO_WALLET
    assert details["wallet_addresses"]["ethereum"] == ETH_WALLET
    assert "mezo" not in details["wallet_addresses"]
    assert details["destination_currencies"] == ["musd", "usdc"]
    assert details["destination_networks"] == ["mezo", "ethereum"]
    assert (details["destination_currency"], details["destination_network"]) == ("musd", "mezo")
    assert details["source_amount"] == "250.50"
    assert details["source_currency"] == "usd"
    assert details["destination_amount"] == "246.73"  # 250.50 - 3.76 fee - 0.01 network fee, 1:1
    assert details["lock_wallet_address"] is True
    assert details["settlement_speed"] == "standard"
    assert details["fees"] == {"network_fee_amount": None, "transaction_fee_amount": None}


def test_the_wallet_of_the_destination_network_is_the_one_used(emu: Sandbox) -> None:
    session = emu.create(wallet_addresses={"mezo": MEZO_WALLET, "base_network": ETH_WALLET}, destination_network="base")
    details = session["transaction_details"]
    assert details["wallet_address"] == ETH_WALLET
    assert details["wallet_addresses"]["base_network"] == ETH_WALLET
    bare = emu.create()
    assert bare["transaction_details"]["wallet_address"] is None
    assert "mezo" in bare["transaction_details"]["destination_networks"]
    assert "musd" in bare["transaction_details"]["destination_currencies"]


def test_retrieve_and_list_with_pagination(emu: Sandbox) -> None:
    ids = [emu.create_mezo()["id"] for _ in range(5)]
    assert emu.retrieve(ids[2])["id"] == ids[2]
    first = emu.get(SESSIONS, limit=2)
    assert first["object"] == "list"
    assert first["url"] == SESSIONS
    assert [s["id"] for s in first["data"]] == [ids[4], ids[3]]
    assert first["has_more"] is True
    second = emu.get(SESSIONS, limit=2, starting_after=ids[3])
    assert [s["id"] for s in second["data"]] == [ids[2], ids[1]]
    assert second["has_more"] is True
    last = emu.get(SESSIONS, limit=2, starting_after=ids[1])
    assert [s["id"] for s in last["data"]] == [ids[0]]
    assert last["has_more"] is False
    before = emu.get(SESSIONS, limit=2, ending_before=ids[1])
    assert [s["id"] for s in before["data"]] == [ids[3], ids[2]]
    assert before["has_more"] is True
    everything = emu.get(SESSIONS, limit=100, created={"gte": 0})
    assert [s["id"] for s in everything["data"]] == ids[::-1]


def test_unknown_ids_are_resource_missing(emu: Sandbox) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        emu.retrieve("cos_doesnotexist")
    assert raised.value.http_status == 404
    assert raised.value.code == "resource_missing"
    assert set(raised.value.json_body["error"]) == ERROR_KEYS
    with pytest.raises(stripe.InvalidRequestError) as raised:
        emu.get(SESSIONS, starting_after="cos_doesnotexist")
    assert raised.value.code == "resource_missing"
    assert raised.value.param == "starting_after"


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"source_amount": "12.345"}, "parameter_invalid_string", "source_amount"),
        ({"source_amount": "-5"}, "parameter_invalid_string", "source_amount"),
        ({"source_amount": ""}, "parameter_invalid_empty", "source_amount"),
        ({"source_amount": "0.50"}, "amount_too_small", "source_amount"),
        ({"source_currency": "gbp"}, "parameter_invalid_string", "source_currency"),
        ({"source_amount": "10", "destination_amount": "9"}, "parameters_exclusive", "destination_amount"),
        ({"destination_amount": "9", "destination_network": "mezo"}, "parameter_missing", "destination_currency"),
        ({"destination_network": "dogechain"}, "parameter_invalid_string", "destination_network"),
        ({"destination_networks": ["mezo", "nope"]}, "parameter_invalid_string", "destination_networks[1]"),
        (
            {"destination_currency": "eth", "destination_network": "mezo"},
            "parameter_invalid_string",
            "destination_currency",
        ),
        (
            {"destination_network": "base", "destination_networks": ["mezo"]},
            "parameter_invalid_string",
            "destination_network",
        ),
        ({"wallet_addresses": {"mezo": "0x1234"}}, "parameter_invalid_string", "wallet_addresses[mezo]"),
        ({"wallet_addresses": {"dogechain": MEZO_WALLET}}, "parameter_unknown", "wallet_addresses[dogechain]"),
        ({"lock_wallet_address": "maybe"}, "parameter_invalid_string", "lock_wallet_address"),
        ({"lock_wallet_address": True}, "parameter_missing", "wallet_addresses"),
        ({"customer_ip_address": "300.1.1.1"}, "parameter_invalid_string", "customer_ip_address"),
        ({"settlement_speed": "warp"}, "parameter_invalid_string", "settlement_speed"),
        ({"colour": "blue"}, "parameter_unknown", "colour"),
    ],
)
def test_invalid_parameters_get_stripe_errors(emu: Sandbox, params: dict[str, Any], code: str, param: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        emu.create(**params)
    error = raised.value
    assert (error.http_status, error.code, error.param) == (400, code, param)
    body = error.json_body["error"]
    assert set(body) == ERROR_KEYS
    assert body["type"] == "invalid_request_error"
    assert body["doc_url"].endswith(code)
    assert body["request_log_url"].endswith(error.headers["request-id"])
    assert emu.get(SESSIONS)["data"] == []  # nothing was created


def test_unsupported_country_is_refused_by_ip(emu: Sandbox) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        emu.create_mezo(customer_ip_address="203.0.113.77")
    assert (raised.value.http_status, raised.value.code) == (400, "crypto_onramp_unsupported_country")
    assert raised.value.param == "customer_ip_address"
    assert emu.create_mezo(customer_ip_address="198.51.100.77")["status"] == "initialized"
    assert emu.create_mezo(customer_ip_address="2001:db8::1")["status"] == "initialized"


def test_the_blocked_networks_are_configurable() -> None:
    with sandbox(blocked_ip_networks=["2001:db8::/32"]) as emu:
        assert emu.create(customer_ip_address="203.0.113.77")["status"] == "initialized"
        with pytest.raises(stripe.InvalidRequestError, match="country"):
            emu.create(customer_ip_address="2001:db8::5")


def test_api_keys_are_checked(emu: Sandbox) -> None:
    with http_client() as http:
        for key, fragment in [
            ("sk_live_realmoney", "live API keys are refused"),
            ("pk_test_publishable", "Invalid API Key provided: pk_test_****able"),
            ("sk_test_", "Invalid API Key provided"),
        ]:
            with pytest.raises(stripe.AuthenticationError) as raised:
                sdk(emu.url, http, api_key=key).raw_request("get", "/v1/balance")
            assert raised.value.http_status == 401
            assert fragment in raised.value.user_message or fragment in str(raised.value.json_body)
            assert raised.value.json_body["error"]["type"] == "invalid_request_error"
    missing = httpx.get(f"{emu.url}/v1/balance")
    assert missing.status_code == 401
    assert missing.headers["request-id"].startswith("req_")
    assert missing.json()["error"]["message"].startswith("You did not provide an API key")
    basic = httpx.get(f"{emu.url}/v1/balance", auth=(API_KEY, ""))
    assert basic.status_code == 200


def test_a_configured_key_is_the_only_one_accepted() -> None:
    with sandbox(api_key="sk_test_only_this_one") as emu, http_client() as http:
        with pytest.raises(stripe.AuthenticationError):
            emu.get("/v1/balance")
        assert sdk(emu.url, http, api_key="sk_test_only_this_one").raw_request("get", "/v1/balance").code == 200


def test_every_response_has_a_request_id_and_the_version_is_echoed(emu: Sandbox) -> None:
    response = emu.stripe.raw_request("get", "/v1/balance", stripe_version="2024-06-20")
    assert response.headers["request-id"].startswith("req_")
    assert response.headers["stripe-version"] == "2024-06-20"
    assert response.data["object"] == "balance"
    unknown = httpx.post(f"{emu.url}/v1/charges", headers={"Authorization": f"Bearer {API_KEY}"})
    assert unknown.status_code == 404
    assert unknown.headers["request-id"].startswith("req_")
    assert "Unrecognized request URL (POST: /v1/charges)" in unknown.json()["error"]["message"]
    wrong_method = httpx.delete(f"{emu.url}{SESSIONS}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert wrong_method.status_code == 404


def test_idempotent_replay_is_byte_for_byte(emu: Sandbox) -> None:
    params: dict[str, Any] = {"wallet_addresses": {"mezo": MEZO_WALLET}, "source_amount": "10.00"}
    first = emu.stripe.raw_request("post", SESSIONS, idempotency_key="key-1", **params)
    again = emu.stripe.raw_request("post", SESSIONS, idempotency_key="key-1", **dict(reversed(params.items())))
    assert again.body == first.body
    assert again.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["request-id"] != first.headers["request-id"]
    assert len(emu.get(SESSIONS)["data"]) == 1


def test_a_key_reused_with_other_parameters_is_an_idempotency_error(emu: Sandbox) -> None:
    emu.stripe.raw_request("post", SESSIONS, idempotency_key="key-2", source_amount="10.00")
    with pytest.raises(stripe.IdempotencyError) as raised:
        emu.stripe.raw_request("post", SESSIONS, idempotency_key="key-2", source_amount="11.00")
    assert raised.value.http_status == 400
    assert raised.value.json_body["error"]["type"] == "idempotency_error"
    assert len(emu.get(SESSIONS)["data"]) == 1


def test_failures_are_not_stored_under_the_key(emu: Sandbox) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        emu.stripe.raw_request("post", SESSIONS, idempotency_key="key-3", source_amount="oops")
    fixed = emu.stripe.raw_request("post", SESSIONS, idempotency_key="key-3", source_amount="12.00")
    assert fixed.code == 200
    assert "idempotent-replayed" not in fixed.headers
    emu.set_faults(error_rate=1.0)
    with pytest.raises(stripe.APIError):
        emu.stripe.raw_request("post", SESSIONS, idempotency_key="key-4", source_amount="12.00")
    emu.set_faults()
    after = emu.stripe.raw_request("post", SESSIONS, idempotency_key="key-4", source_amount="12.00")
    assert after.code == 200
    assert "idempotent-replayed" not in after.headers
    assert len(emu.get(SESSIONS)["data"]) == 2


def test_the_sdk_retries_a_fault_safely_with_its_own_key(emu: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK retries 5xx with the same generated Idempotency-Key; the fault is not stored, so the retry
    # creates the session exactly once.
    monkeypatch.setattr(stripe.HTTPClient, "INITIAL_DELAY", 0.01)
    emu.set_faults(error_rate=0.5, seed=3)
    with http_client() as http:
        client = sdk(emu.url, http, max_network_retries=6)
        created = [client.raw_request("post", SESSIONS, source_amount="5.00").data["id"] for _ in range(6)]
    emu.set_faults()
    listed = [s["id"] for s in emu.get(SESSIONS, limit=100)["data"]]
    assert sorted(listed) == sorted(created)
    assert len(set(created)) == 6
