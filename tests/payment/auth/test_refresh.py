"""Refresh tokens rotate on every use; a reused one revokes its whole family; logout revokes it too."""

from __future__ import annotations

import hashlib

from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from payment.auth.models import AuditEvent, RefreshToken
from tests.payment.auth.conftest import assert_problem, sign_in

REFRESH = "/api/v1/auth/refresh"


def signed_in(client: TestClient, account: LocalAccount) -> dict[str, str]:
    response = sign_in(client, account)
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def test_a_refresh_token_is_spent_for_a_new_pair(client: TestClient, account: LocalAccount) -> None:
    first = signed_in(client, account)
    second = client.post(REFRESH, json={"refreshToken": first["refreshToken"]})
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["refreshToken"] != first["refreshToken"]
    assert body["accessToken"] != first["accessToken"]
    assert body["walletAddress"] == account.address
    assert body["refreshExpiresAt"] == first["refreshExpiresAt"]  # the family's absolute expiry
    third = client.post(REFRESH, json={"refreshToken": body["refreshToken"]})
    assert third.status_code == 200, third.text


def test_reusing_a_refresh_token_revokes_the_family(
    client: TestClient, account: LocalAccount, factory: sessionmaker[Session]
) -> None:
    first = signed_in(client, account)
    other_session = signed_in(client, account)  # another sign-in: another family, untouched
    rotated = client.post(REFRESH, json={"refreshToken": first["refreshToken"]}).json()
    # The old token again (an attacker who copied it, or the victim after the attacker): the family is revoked.
    reused = client.post(REFRESH, json={"refreshToken": first["refreshToken"]})
    assert_problem(reused, 401, "refresh-token-reused")
    # The legitimate latest token is dead too.
    assert_problem(client.post(REFRESH, json={"refreshToken": rotated["refreshToken"]}), 401, "invalid-refresh-token")
    assert client.post(REFRESH, json={"refreshToken": other_session["refreshToken"]}).status_code == 200
    with factory() as db:
        events = db.scalars(select(AuditEvent).where(AuditEvent.action == "auth.refresh_reused")).all()
        stored = db.scalars(select(RefreshToken.token_hash)).all()
    assert len(events) == 1
    assert events[0].target == account.address
    # Stored as hashes only.
    assert first["refreshToken"] not in stored
    assert hashlib.sha256(first["refreshToken"].encode()).hexdigest() in stored


def test_logout_revokes_the_family(client: TestClient, account: LocalAccount) -> None:
    session = signed_in(client, account)
    assert client.post("/api/v1/auth/logout", json={"refreshToken": session["refreshToken"]}).status_code == 204
    assert_problem(client.post(REFRESH, json={"refreshToken": session["refreshToken"]}), 401, "invalid-refresh-token")
    # Unknown tokens log out quietly (nothing is revealed).
    assert client.post("/api/v1/auth/logout", json={"refreshToken": "mrt_" + "A" * 43}).status_code == 204


def test_unknown_and_malformed_refresh_tokens_are_401(client: TestClient) -> None:
    for token in ("mrt_" + "A" * 43, "garbage", ""):
        assert_problem(client.post(REFRESH, json={"refreshToken": token}), 401, "invalid-refresh-token")
