"""Wallet sign-in (EIP-4361): a strict parser, and every refusal a 401 problem naming what was wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from payment.auth.errors import Unauthorized
from payment.auth.models import SiweNonce
from payment.auth.siwe import SiweMessage, parse_message
from tests.payment.auth.conftest import (
    DOMAIN,
    assert_problem,
    new_nonce,
    sign,
    sign_in,
    siwe_message,
)
from tests.support.auth import bearer, wallet_account

VERIFY = "/api/v1/auth/verify"
ADDRESS = "0x52908400098527886E0F7030069857D2E4169EE7"

# The example of EIP-4361 itself (with a checksummed address).
SPEC_EXAMPLE = (
    "service.org wants you to sign in with your Ethereum account:\n"
    f"{ADDRESS}\n"
    "\n"
    "I accept the ServiceOrg Terms of Service: https://service.org/tos\n"
    "\n"
    "URI: https://service.org/login\n"
    "Version: 1\n"
    "Chain ID: 1\n"
    "Nonce: 32891756\n"
    "Issued At: 2021-09-30T16:25:24Z\n"
    "Resources:\n"
    "- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/\n"
    "- https://example.com/my-web2-claim.json"
)


def test_the_spec_example_parses_and_prints_back_identically() -> None:
    message = parse_message(SPEC_EXAMPLE)
    assert message.domain == "service.org"
    assert message.scheme is None
    assert message.address == ADDRESS
    assert message.chain_id == 1
    assert message.nonce == "32891756"
    assert message.issued_at == datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC)
    assert message.resources == (
        "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",
        "https://example.com/my-web2-claim.json",
    )
    again = SiweMessage(**{**message.__dict__, "issued_at": message.issued_at})
    assert parse_message(again.prepare()) == message


def test_every_optional_field_round_trips() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    message = SiweMessage(
        scheme="https",
        domain="localhost:5175",
        address=ADDRESS,
        uri="https://localhost:5175/",
        chain_id=31612,
        nonce="abcdef0123456789",
        issued_at=now,
        expiration_time=now + timedelta(minutes=5),
        not_before=now,
        request_id="req-1",
        resources=("https://localhost:5175/terms",),
    )
    assert parse_message(message.prepare()) == message
    no_statement = message.prepare()
    assert f"{ADDRESS}\n\n\nURI: " in no_statement  # the ABNF's two blank lines around a missing statement


MALFORMED = [
    ("trailing newline", SPEC_EXAMPLE + "\n"),
    ("lower-case address", SPEC_EXAMPLE.replace(ADDRESS, ADDRESS.lower())),
    ("bad checksum", SPEC_EXAMPLE.replace(ADDRESS, ADDRESS[:-1] + "e")),
    ("no blank line after address", SPEC_EXAMPLE.replace(f"{ADDRESS}\n\n", f"{ADDRESS}\n", 1)),
    ("version 2", SPEC_EXAMPLE.replace("Version: 1", "Version: 2")),
    ("short nonce", SPEC_EXAMPLE.replace("Nonce: 32891756", "Nonce: 1234")),
    ("nonce with symbols", SPEC_EXAMPLE.replace("Nonce: 32891756", "Nonce: 1234-5678")),
    ("date without zone", SPEC_EXAMPLE.replace("2021-09-30T16:25:24Z", "2021-09-30T16:25:24")),
    ("fields out of order", SPEC_EXAMPLE.replace("Version: 1\nChain ID: 1", "Chain ID: 1\nVersion: 1")),
    ("userinfo in domain", SPEC_EXAMPLE.replace("service.org wants", "evil@service.org wants", 1)),
    ("statement with newline trick", SPEC_EXAMPLE.replace("Terms of Service", "Terms\nof Service")),
    ("statement with quotes", SPEC_EXAMPLE.replace("Terms of Service", 'Terms "of" Service')),
    ("carriage returns", SPEC_EXAMPLE.replace("\n", "\r\n")),
    ("extra line", SPEC_EXAMPLE.replace("Version: 1\n", "Version: 1\nX: y\n")),
    ("bad resource", SPEC_EXAMPLE.replace("- https://example.com", "* https://example.com")),
    ("wrong header", SPEC_EXAMPLE.replace("wants you to sign in", "wants you to log in")),
    ("empty", ""),
]


@pytest.mark.parametrize(("case", "text"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_messages_are_refused(case: str, text: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        parse_message(text)
    assert refused.value.slug == "invalid-siwe-message"


def test_an_eoa_signs_in_and_its_token_works(client: TestClient, account: LocalAccount) -> None:
    response = sign_in(client, account)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["walletAddress"] == account.address
    assert body["tokenType"] == "Bearer"
    assert body["expiresIn"] == 900
    assert body["refreshToken"].startswith("mrt_")
    assert response.headers["cache-control"] == "no-store"
    me = client.get("/api/v1/auth/me", headers=bearer(body["accessToken"]))
    assert me.json() == {"kind": "wallet", "subject": account.address, "role": "wallet"}


def test_a_replayed_nonce_is_refused(client: TestClient, account: LocalAccount) -> None:
    message = siwe_message(account.address, new_nonce(client))
    signed = {"message": message, "signature": sign(account, message)}
    assert client.post(VERIFY, json=signed).status_code == 200
    assert_problem(client.post(VERIFY, json=signed), 401, "siwe-nonce-invalid")


def test_an_unknown_nonce_is_refused(client: TestClient, account: LocalAccount) -> None:
    message = siwe_message(account.address, "madeup1234567890")
    assert_problem(client.post(VERIFY, json={"message": message, "signature": sign(account, message)}), 401,
                   "siwe-nonce-invalid")  # fmt: skip


def test_an_expired_nonce_is_refused(client: TestClient, account: LocalAccount, factory: sessionmaker[Session]) -> None:
    nonce = new_nonce(client)
    with factory() as db, db.begin():
        past = datetime.now(UTC) - timedelta(seconds=1)
        db.execute(update(SiweNonce).where(SiweNonce.nonce == nonce).values(expires_at=past))
    message = siwe_message(account.address, nonce)
    response = client.post(VERIFY, json={"message": message, "signature": sign(account, message)})
    assert_problem(response, 401, "siwe-nonce-invalid")


REFUSED = [
    ("wrong domain", {"domain": "evil.example", "uri": "https://evil.example/login"}, "siwe-domain-mismatch"),
    ("uri on another host", {"uri": "https://evil.example/login"}, "siwe-domain-mismatch"),
    ("plain http off localhost", {"scheme": "http", "uri": f"http://{DOMAIN}/"}, "siwe-domain-mismatch"),
    ("mainnet chain id", {"chain_id": 31612}, "siwe-chain-mismatch"),
    ("ethereum chain id", {"chain_id": 1}, "siwe-chain-mismatch"),
    ("expired message", {"expiration_time": datetime.now(UTC) - timedelta(seconds=1)}, "siwe-message-expired"),
    ("not valid yet", {"not_before": datetime.now(UTC) + timedelta(hours=1)}, "siwe-message-expired"),
    ("issued in the future", {"issued_at": datetime.now(UTC) + timedelta(hours=1)}, "siwe-message-expired"),
    ("issued long ago", {"issued_at": datetime.now(UTC) - timedelta(days=1)}, "siwe-message-expired"),
]


@pytest.mark.parametrize(("case", "fields", "slug"), REFUSED, ids=[c[0] for c in REFUSED])
def test_messages_for_another_domain_chain_or_time_are_refused(
    client: TestClient, account: LocalAccount, case: str, fields: dict[str, object], slug: str
) -> None:
    assert_problem(sign_in(client, account, **fields), 401, slug)


def test_a_localhost_dapp_may_use_http(client: TestClient, account: LocalAccount) -> None:
    response = sign_in(client, account, scheme="http", domain="localhost:5175", uri="http://localhost:5175/")
    assert response.status_code == 200, response.text


def test_a_signature_by_another_address_is_refused(client: TestClient, account: LocalAccount) -> None:
    message = siwe_message(account.address, new_nonce(client))
    forged = sign(wallet_account(7), message)
    assert_problem(client.post(VERIFY, json={"message": message, "signature": forged}), 401, "siwe-signature-invalid")


def test_a_signature_of_another_message_is_refused(client: TestClient, account: LocalAccount) -> None:
    nonce = new_nonce(client)
    message = siwe_message(account.address, nonce)
    other = siwe_message(account.address, nonce, statement="Something else.")
    response = client.post(VERIFY, json={"message": message, "signature": sign(account, other)})
    assert_problem(response, 401, "siwe-signature-invalid")


@pytest.mark.parametrize("signature", ["", "0x", "nothex", "0x" + "00" * 65, "0x" + "ab" * 64 + "1b", "0x123"])
def test_malformed_signatures_are_refused_not_500(client: TestClient, account: LocalAccount, signature: str) -> None:
    message = siwe_message(account.address, new_nonce(client))
    response = client.post(VERIFY, json={"message": message, "signature": signature})
    assert_problem(response, 401, "siwe-signature-invalid")


def test_malformed_bodies_are_problems(client: TestClient) -> None:
    assert_problem(client.post(VERIFY, json={"message": "hello", "signature": "0x00"}), 401, "invalid-siwe-message")
    assert client.post(VERIFY, json={}).status_code == 422
    assert client.post(VERIFY, json={"message": "x" * 5000, "signature": "0x"}).status_code == 422
