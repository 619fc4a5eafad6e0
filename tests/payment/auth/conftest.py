"""Fixtures of the authentication tests: an app on each backend, credentials of every role, SIWE messages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from payment.api import create_app
from payment.auth.principal import Role
from payment.auth.siwe import SiweMessage
from payment.core.config import Settings
from tests.payment.conftest import make_settings
from tests.support.auth import api_key, bearer, wallet_account, wallet_token

DOMAIN = "app.musdpay.test"
CHAIN_ID = 31611


def auth_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "siwe_domains": [DOMAIN, "localhost:5175"],
        "chain_id": CHAIN_ID,
        "rate_limit_enabled": False,  # these tests make many refused requests from one client on purpose
        "delivery_worker_enabled": False,
        "recovery_interval_seconds": 3600,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return auth_settings(database_url)


async def no_contract(to: str, data: bytes) -> bytes:
    """eth_call as a node answers it for an address without code (an EOA): no data."""
    return b""


@pytest.fixture
def client(settings: Settings, factory: sessionmaker[Session]) -> Iterator[TestClient]:
    app = create_app(settings)
    # No chain in these tests: every address is an EOA (EIP-1271 runs against anvil in test_eip1271.py).
    app.state.musdpay.auth.eth_call = no_contract
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@dataclass(frozen=True)
class Credentials:
    """Headers of each kind of caller."""

    owner: dict[str, str]  # the wallet WALLET
    other_wallet: dict[str, str]
    operator: dict[str, str]
    admin: dict[str, str]

    def of(self, name: str) -> dict[str, str]:
        return {} if name == "anonymous" else dict(getattr(self, name))


@pytest.fixture
def credentials(settings: Settings, factory: sessionmaker[Session]) -> Credentials:
    from tests.payment.conftest import WALLET

    return Credentials(
        owner=bearer(wallet_token(settings, WALLET)),
        other_wallet=bearer(wallet_token(settings, wallet_account(2).address)),
        operator=bearer(api_key(factory, Role.operator, "operator")),
        admin={"X-API-Key": api_key(factory, Role.admin, "admin")},
    )


@pytest.fixture
def account() -> LocalAccount:
    return wallet_account(1)


def siwe_message(address: str, nonce: str, **fields: Any) -> str:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "scheme": "https",
        "domain": DOMAIN,
        "address": address,
        "statement": "Sign in to musdpay to buy MUSD.",
        "uri": f"https://{DOMAIN}/login",
        "chain_id": CHAIN_ID,
        "nonce": nonce,
        "issued_at": now,
        "expiration_time": now + timedelta(minutes=5),
    }
    values.update(fields)
    return SiweMessage(**values).prepare()


def sign(account: LocalAccount, message: str) -> str:
    return "0x" + account.sign_message(encode_defunct(text=message)).signature.hex()


def new_nonce(client: TestClient) -> str:
    response = client.post("/api/v1/auth/nonce")
    assert response.status_code == 201, response.text
    nonce: str = response.json()["nonce"]
    return nonce


def sign_in(client: TestClient, account: LocalAccount, **fields: Any) -> Any:
    message = siwe_message(account.address, new_nonce(client), **fields)
    return client.post("/api/v1/auth/verify", json={"message": message, "signature": sign(account, message)})


def assert_problem(response: Any, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json", response.text
    assert response.json()["type"] == f"/problems/{slug}", response.text
