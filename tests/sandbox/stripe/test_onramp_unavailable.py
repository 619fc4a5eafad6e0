"""The `onramp_unavailable` fault: session creation answers Stripe's refusal of the whole account, in Stripe's exact
error shape (HTTP 400 invalid_request_error with the code, message and doc_url), read through the official SDK."""

from __future__ import annotations

import httpx
import pytest
import stripe

from sandbox.stripe.errors import ONRAMP_UNAVAILABLE_MESSAGES
from tests.sandbox.stripe.support import API_KEY, SESSIONS, Sandbox

CODES = sorted(ONRAMP_UNAVAILABLE_MESSAGES)


def test_the_codes_are_the_ones_the_payment_api_treats_as_outages() -> None:
    # The emulator knows nothing of its client (no import of payment/ in sandbox/), so the two lists are compared here.
    from payment.onramp.stripe_gateway import INTEGRATION_FAULT_CODES

    assert set(CODES) == INTEGRATION_FAULT_CODES


@pytest.mark.parametrize("code", CODES)
def test_session_creation_answers_stripes_refusal(emu: Sandbox, code: str) -> None:
    assert emu.set_faults(onramp_unavailable=code)["onramp_unavailable"] == code
    with pytest.raises(stripe.InvalidRequestError) as raised:
        emu.create_mezo()
    error = raised.value
    assert error.http_status == 400
    assert error.code == code
    assert error.request_id is not None
    assert error.request_id.startswith("req_")
    body = error.json_body
    assert body is not None
    assert set(body) == {"error"}
    assert body["error"] == {
        "type": "invalid_request_error",
        "code": code,
        "message": ONRAMP_UNAVAILABLE_MESSAGES[code],
        "param": None,
        "doc_url": f"https://stripe.com/docs/error-codes/{code}",
        "request_log_url": f"https://dashboard.stripe.com/test/logs/{error.request_id}",
    }
    # Nothing was created, and reads are not refused.
    assert emu.get(SESSIONS)["data"] == []


def test_the_fault_is_validated_and_heals(emu: Sandbox) -> None:
    for bad in ("crypto_onramp_unsupported_country", "", 3, True):
        response = emu.control.put("/_sandbox/faults", json={"onramp_unavailable": bad})
        assert response.status_code == 400, bad
        assert "onramp_unavailable" in response.json()["error"]["message"]
    emu.set_faults(onramp_unavailable="crypto_onramp_disabled")
    # PUT replaces every fault: an empty body heals it.
    assert emu.set_faults()["onramp_unavailable"] is None
    assert emu.create_mezo()["status"] == "initialized"
    emu.set_faults(onramp_unavailable="crypto_onramp_disabled")
    healed = emu.control.patch("/_sandbox/faults", json={"onramp_unavailable": None}).json()
    assert healed["onramp_unavailable"] is None


def test_over_plain_http_the_status_and_body_are_stripes(emu: Sandbox) -> None:
    emu.set_faults(onramp_unavailable="crypto_onramp_merchant_not_properly_setup")
    response = httpx.post(
        f"{emu.url}{SESSIONS}",
        data={"source_amount": "10.00"},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["request-id"].startswith("req_")
    assert response.json()["error"]["code"] == "crypto_onramp_merchant_not_properly_setup"
