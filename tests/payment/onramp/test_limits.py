"""Session-creation limits with the shipped defaults, as a dApp and its buyers meet them: a dApp's backend (one
API key, one IP) creating sessions for many buyers is not refused, while one buyer past its limit is, however it
calls (through the dApp's key or signed in itself). The real SDK talks to the emulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_utils import to_checksum_address
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from payment.api import create_app
from payment.core.config import DEFAULT_RATE_LIMITS, Settings
from tests.payment.conftest import make_settings
from tests.support.auth import api_key, bearer, wallet_token
from tests.support.stack import API_KEY, Emulator

pytestmark = pytest.mark.integration

SESSIONS = "/api/v1/onramp/sessions"
PER_WALLET = DEFAULT_RATE_LIMITS["create_session"].limit


def wallet(index: int) -> str:
    return to_checksum_address(f"0x{index + 1:040x}")


@pytest.fixture
def app_settings(database_url: str, emulator: Emulator) -> Settings:
    # The shipped rate limits, untouched (make_settings leaves them at their defaults).
    return make_settings(database_url, stripe_api_base=emulator.url, stripe_secret_key=API_KEY)


@pytest.fixture
def client(app_settings: Settings, factory: sessionmaker[Session]) -> Iterator[TestClient]:
    # `factory`: the database of the test, migrated.
    with TestClient(create_app(app_settings), raise_server_exceptions=False, client=("198.51.100.10", 4000)) as client:
        yield client


def create(client: TestClient, credential: str, address: str) -> int:
    body = {"walletAddress": address, "sourceAmount": "20.00"}
    return client.post(SESSIONS, json=body, headers=bearer(credential)).status_code


def test_a_dapp_backend_creating_for_many_buyers_is_not_refused(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    dapp = api_key(factory)
    buyers = 4 * PER_WALLET  # four times what one IP or one wallet may create in the period, from one IP
    statuses = [create(client, dapp, wallet(i)) for i in range(buyers)]
    assert statuses == [201] * buyers
    # The headers speak of the tightest bucket the request was counted in: here the buyer's own (its second
    # session; a token may have come back meanwhile on a slow machine, 30/60 being one every 2 s).
    answer = client.post(SESSIONS, json={"walletAddress": wallet(0), "sourceAmount": "5.00"}, headers=bearer(dapp))
    assert answer.status_code == 201
    assert answer.headers["RateLimit-Limit"] == str(PER_WALLET)
    assert int(answer.headers["RateLimit-Remaining"]) in {PER_WALLET - 2, PER_WALLET - 1}


def test_one_abusive_buyer_is_stopped_through_the_dapp_and_on_its_own(
    client: TestClient, factory: sessionmaker[Session], app_settings: Settings
) -> None:
    dapp = api_key(factory)
    abuser = wallet(900)
    statuses = [create(client, dapp, abuser) for _ in range(PER_WALLET + 2)]
    assert statuses == [201] * PER_WALLET + [429, 429]
    refused = client.post(SESSIONS, json={"walletAddress": abuser, "sourceAmount": "20.00"}, headers=bearer(dapp))
    assert refused.json()["type"] == "/problems/rate-limited"
    assert int(refused.headers["Retry-After"]) >= 1
    # Its own sign-in shares the bucket: a second route to the same buyer gives it nothing more.
    assert create(client, wallet_token(app_settings, abuser), abuser) == 429
    # Everyone else, through the same key and IP, carries on.
    assert [create(client, dapp, wallet(901 + i)) for i in range(3)] == [201] * 3


def test_a_wallet_keeps_the_limit_of_its_ip(client: TestClient, app_settings: Settings) -> None:
    # Many wallets signed in from one IP (one browser cycling addresses) share that IP's bucket.
    statuses = [create(client, wallet_token(app_settings, wallet(500 + i)), wallet(500 + i)) for i in range(PER_WALLET)]
    assert statuses == [201] * PER_WALLET
    assert create(client, wallet_token(app_settings, wallet(600)), wallet(600)) == 429
