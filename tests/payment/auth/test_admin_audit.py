"""Admin routes for API keys, the audit log written with each action, and no secret in any log line."""

from __future__ import annotations

import json
import logging

import pytest
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from payment.auth import apikeys, audit
from payment.auth.models import ApiKey, AuditEvent
from payment.auth.principal import Role
from payment.core.logs import JsonFormatter
from tests.payment.auth.conftest import Credentials, assert_problem, sign_in
from tests.support.auth import TEST_ACTOR, bearer

KEYS = "/api/v1/admin/api-keys"


def test_an_admin_manages_keys_over_http_and_each_action_is_audited(
    client: TestClient, credentials: Credentials, factory: sessionmaker[Session]
) -> None:
    created = client.post(KEYS, json={"name": "partner backend", "role": "operator"}, headers=credentials.admin)
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    key, key_id = created.json()["key"], created.json()["id"]
    assert client.get("/api/v1/auth/me", headers=bearer(key)).json()["role"] == "operator"

    listed = client.get(KEYS, headers=credentials.admin).json()
    assert key_id in {item["id"] for item in listed}
    assert all("key" not in item for item in listed)
    assert key not in json.dumps(listed)

    rotated = client.post(f"{KEYS}/{key_id}/rotate", json={"graceSeconds": 0}, headers=credentials.admin)
    assert rotated.status_code == 201, rotated.text
    assert_problem(client.get("/api/v1/auth/me", headers=bearer(key)), 401, "invalid-api-key")  # no grace
    new_id = rotated.json()["id"]
    revoked = client.post(f"{KEYS}/{new_id}/revoke", headers=credentials.admin)
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    assert_problem(client.post(f"{KEYS}/{'f' * 16}/revoke", headers=credentials.admin), 404, "not-found")
    assert client.post(KEYS, json={"name": "x", "role": "wallet"}, headers=credentials.admin).status_code == 422

    with factory() as db:
        events = db.scalars(select(AuditEvent).where(AuditEvent.action.like("api_key.%")).order_by(AuditEvent.id)).all()
    ours = [e for e in events if e.actor.startswith("api_key:")]
    assert [e.action for e in ours] == ["api_key.create", "api_key.rotate", "api_key.revoke"]
    admin_id = credentials.admin["X-API-Key"].split("_")[1]
    assert {e.actor for e in ours} == {f"api_key:{admin_id}"}
    assert {e.actor_role for e in ours} == {"admin"}
    assert {e.origin for e in ours} == {"testclient"}
    assert [e.target for e in ours] == [key_id, key_id, new_id]
    assert all(key not in (e.detail or "") for e in ours)

    audited = client.get("/api/v1/admin/audit-events", params={"action": "api_key.rotate"}, headers=credentials.admin)
    assert [item["target"] for item in audited.json()] == [key_id]


def test_operators_and_wallets_cannot_manage_keys(client: TestClient, credentials: Credentials) -> None:
    for caller in (credentials.operator, credentials.owner):
        assert_problem(client.get(KEYS, headers=caller), 403, "forbidden")
        assert_problem(client.post(KEYS, json={"name": "x", "role": "admin"}, headers=caller), 403, "forbidden")


def test_the_audit_row_commits_and_rolls_back_with_its_action(factory: sessionmaker[Session]) -> None:
    engine = factory.kw["bind"]

    def failing_action() -> None:
        with engine.begin() as conn:
            audit.record(conn, actor=TEST_ACTOR, action="api_key.create", target="x")
            raise RuntimeError("the action failed")

    with pytest.raises(RuntimeError):
        failing_action()
    with factory() as db:
        assert db.scalars(select(AuditEvent)).all() == []
    issued = apikeys.create_key(factory=factory, name="n", role=Role.admin, actor=TEST_ACTOR)
    with factory() as db:
        assert db.get(ApiKey, issued.info.id) is not None
        event = db.scalars(select(AuditEvent)).one()
    assert (event.action, event.target, event.actor, event.origin) == (
        "api_key.create",
        issued.info.id,
        "test:fixtures",
        "test",
    )


def test_sign_ins_are_audited(client: TestClient, account: LocalAccount, factory: sessionmaker[Session]) -> None:
    assert sign_in(client, account).status_code == 200
    with factory() as db:
        event = db.scalars(select(AuditEvent).where(AuditEvent.action == "auth.sign_in")).one()
    assert event.actor == f"wallet:{account.address}"
    assert event.origin == "testclient"


def test_tokens_and_keys_never_reach_the_logs(
    client: TestClient,
    credentials: Credentials,
    account: LocalAccount,
    factory: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    signed = sign_in(client, account).json()
    refreshed = client.post("/api/v1/auth/refresh", json={"refreshToken": signed["refreshToken"]}).json()
    client.post("/api/v1/auth/refresh", json={"refreshToken": signed["refreshToken"]})  # reuse: refused, audited
    created = client.post(KEYS, json={"name": "logged", "role": "operator"}, headers=credentials.admin).json()
    client.get("/api/v1/auth/me", headers=bearer(created["key"][:-2] + "xx"))  # a wrong key
    client.get("/api/v1/auth/me", headers=bearer(signed["accessToken"] + "x"))  # a forged token
    secrets = [
        signed["accessToken"],
        signed["refreshToken"],
        refreshed["accessToken"],
        refreshed["refreshToken"],
        created["key"],
        created["key"].split("_", 2)[2],
        credentials.admin["X-API-Key"],
        credentials.operator["Authorization"].split()[1],
    ]
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records] + [r.getMessage() for r in caplog.records]
    assert lines, "expected some log lines (e.g. the access log)"
    for line in lines:
        for secret in secrets:
            assert secret not in line, f"a secret reached the logs: {line[:200]}"
