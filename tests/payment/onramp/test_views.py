"""The onramp routes in process (FastAPI TestClient), with the real SDK talking to the emulator over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from payment.api import create_app
from payment.core.config import Settings
from payment.onramp.models import OnrampSession
from tests.payment.conftest import make_settings, seed_session
from tests.support.auth import JWT_KEYS, api_key, bearer, wallet_token
from tests.support.stack import API_KEY, Emulator

pytestmark = pytest.mark.integration

WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"
OTHER_WALLET = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
SESSIONS = "/api/v1/onramp/sessions"


@pytest.fixture
def app_settings(database_url: str, emulator: Emulator) -> Settings:
    return make_settings(database_url, stripe_api_base=emulator.url, stripe_secret_key=API_KEY)


@pytest.fixture
def client(app_settings: Settings, factory: sessionmaker[Session]) -> Iterator[TestClient]:
    # An operator (a dApp backend's API key): creates sessions for any wallet, reads all of them.
    headers = bearer(api_key(factory))
    with TestClient(create_app(app_settings), raise_server_exceptions=False, headers=headers) as client:
        yield client


def count_rows(factory: sessionmaker[Session]) -> int:
    with factory() as db:
        return int(db.scalar(select(func.count()).select_from(OnrampSession)) or 0)


VALID = {"walletAddress": WALLET, "sourceAmount": "100.00"}

BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("not json", b"{bad json", 400, "body"),
    ("array", b"[]", 400, "body"),
    ("empty object", {}, 422, "body.walletAddress"),
    ("missing amount", {"walletAddress": WALLET}, 422, "body.sourceAmount"),
    ("short address", {**VALID, "walletAddress": "0x1234"}, 422, "body.walletAddress"),
    ("bad checksum", {**VALID, "walletAddress": WALLET[:-1] + "e"}, 422, "body.walletAddress"),
    ("zero address", {**VALID, "walletAddress": "0x" + "0" * 40}, 422, "body.walletAddress"),
    ("address not a string", {**VALID, "walletAddress": 12}, 422, "body.walletAddress"),
    ("three decimals", {**VALID, "sourceAmount": "10.001"}, 422, "body.sourceAmount"),
    ("negative", {**VALID, "sourceAmount": "-5"}, 422, "body.sourceAmount"),
    ("zero", {**VALID, "sourceAmount": "0"}, 422, "body.sourceAmount"),
    ("below minimum", {**VALID, "sourceAmount": "0.99"}, 422, "body.sourceAmount"),
    ("above maximum", {**VALID, "sourceAmount": "10000.01"}, 422, "body.sourceAmount"),
    ("exponent", {**VALID, "sourceAmount": "1e3"}, 422, "body.sourceAmount"),
    ("boolean amount", {**VALID, "sourceAmount": True}, 422, "body.sourceAmount"),
    ("float with 3 places", {**VALID, "sourceAmount": 10.125}, 422, "body.sourceAmount"),
    ("huge amount", {**VALID, "sourceAmount": "9" * 400}, 422, "body.sourceAmount"),
    ("unsupported fiat", {**VALID, "sourceCurrency": "jpy"}, 422, "body.sourceCurrency"),
    ("unsupported token", {**VALID, "destinationCurrency": "usdc"}, 422, "body.destinationCurrency"),
    ("unsupported network", {**VALID, "destinationNetwork": "ethereum"}, 422, "body.destinationNetwork"),
    ("unknown field", {**VALID, "amount": 5}, 422, "body.amount"),
    ("null currency", {**VALID, "sourceCurrency": None}, 422, "body.sourceCurrency"),
]


@pytest.mark.parametrize(("case", "body", "status", "field"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_input_is_a_problem_naming_the_field_and_writes_nothing(
    client: TestClient,
    factory: sessionmaker[Session],
    emulator: Emulator,
    case: str,
    body: Any,
    status: int,
    field: str,
) -> None:
    before = len(emulator.sessions())
    if isinstance(body, bytes):
        response = client.post(SESSIONS, content=body, headers={"Content-Type": "application/json"})
    else:
        response = client.post(SESSIONS, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["type"] == "/problems/validation-error"
    assert problem["instance"] == SESSIONS
    assert any(error["field"] == field for error in problem["errors"]), problem["errors"]
    assert "Traceback" not in response.text
    assert count_rows(factory) == 0
    assert len(emulator.sessions()) == before


@pytest.mark.parametrize("key", [b"", b"x" * 256, "caf\u00e9".encode(), b"tab\there", b"nul\x01"])
def test_a_malformed_idempotency_key_is_refused(client: TestClient, factory: sessionmaker[Session], key: bytes) -> None:
    response = client.post(SESSIONS, json=VALID, headers={"Idempotency-Key": key})
    assert response.status_code in (400, 422)
    assert response.headers["content-type"] == "application/problem+json"
    assert count_rows(factory) == 0


def test_a_created_session_is_returned_in_camel_case_with_exact_amounts(client: TestClient) -> None:
    response = client.post(SESSIONS, json={**VALID, "walletAddress": WALLET.lower(), "sourceAmount": 25.5})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {
        "id", "stripeSessionId", "clientSecret", "status", "walletAddress", "sourceAmount", "sourceCurrency",
        "destinationCurrency", "destinationNetwork", "transactionDetails", "quotedDestinationAmount", "livemode",
        "createdAt", "updatedAt", "delivery",
    }  # fmt: skip
    assert body["delivery"] is None  # not fulfilled yet: nothing owed on chain
    assert body["walletAddress"] == WALLET  # stored in EIP-55 form
    assert body["sourceAmount"] == "25.50"
    assert (body["sourceCurrency"], body["destinationCurrency"], body["destinationNetwork"]) == ("usd", "musd", "mezo")
    assert body["createdAt"].endswith(("Z", "+00:00"))


def test_reading_a_session_does_not_reveal_its_client_secret(client: TestClient) -> None:
    created = client.post(SESSIONS, json=VALID).json()
    fetched = client.get(f"{SESSIONS}/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["id"] == created["id"]
    assert fetched.json()["clientSecret"] is None
    listed = client.get(SESSIONS).json()
    assert all(item["clientSecret"] is None for item in listed["data"])


def test_an_unknown_session_is_a_404_problem(client: TestClient) -> None:
    response = client.get(f"{SESSIONS}/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/not-found"


def test_listing_pages_newest_first_without_gaps_or_repeats(client: TestClient, factory: sessionmaker[Session]) -> None:
    mine = [seed_session(factory).id for _ in range(7)]
    theirs = seed_session(factory, wallet_address=OTHER_WALLET, status="fulfillment_complete").id
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"walletAddress": WALLET.lower(), "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get(SESSIONS, params=params).json()
        seen += [item["id"] for item in page["data"]]
        if not page["hasMore"]:
            assert page["nextCursor"] is None
            break
        cursor = page["nextCursor"]
        seed_session(factory)  # rows added while paging must not shift the pages already read
    assert seen == list(reversed(mine))
    assert theirs not in seen
    created_at = [client.get(f"{SESSIONS}/{i}").json()["createdAt"] for i in seen]
    assert created_at == sorted(created_at, reverse=True)
    done = client.get(SESSIONS, params={"status": "fulfillment_complete"}).json()
    assert [item["id"] for item in done["data"]] == [theirs]


@pytest.mark.parametrize(
    "params",
    [{"cursor": "not-a-cursor"}, {"limit": 0}, {"limit": 101}, {"status": "paid"}, {"walletAddress": "0x12"}],
)
def test_bad_list_parameters_are_422_problems(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get(SESSIONS, params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"]


def test_readiness_reports_each_check(client: TestClient, tmp_path: Path) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["database"]["ok"]
    assert checks["migrations"]["ok"]
    assert checks["stripe"]["ok"]
    assert API_KEY not in ready.text


def test_readiness_fails_with_details_when_not_migrated_or_not_configured(tmp_path: Path) -> None:
    settings = Settings(environment="test", database_url=f"sqlite:///{tmp_path / 'empty.sqlite'}", jwt_keys=JWT_KEYS)
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["checks"]["migrations"]["ok"] is False
    assert body["checks"]["stripe"]["ok"] is False
    assert client.get("/healthz").status_code == 200


def test_unknown_routes_and_methods_are_problems(client: TestClient) -> None:
    missing = client.get("/api/v1/nothing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong_method = client.delete(SESSIONS)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"
    assert client.get("/problems/validation-error").status_code == 200


def test_cors_allows_the_configured_dapp_origin_only(client: TestClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    allowed = client.options(SESSIONS, headers={"Origin": "http://localhost:5175", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:5175"
    refused = client.options(SESSIONS, headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in refused.headers


def test_an_unreachable_database_is_a_503_problem_not_a_500(tmp_path: Path) -> None:
    settings = make_settings("postgresql+psycopg://postgres@127.0.0.1:9/none", recovery_interval_seconds=3600)
    headers = bearer(wallet_token(settings, WALLET))  # checked without the database
    with TestClient(create_app(settings), raise_server_exceptions=False, headers=headers) as client:
        listed = client.get(SESSIONS)
        created = client.post(SESSIONS, json=VALID)
    for response in (listed, created):
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/database-unavailable"
        assert response.headers["retry-after"] == "5"
