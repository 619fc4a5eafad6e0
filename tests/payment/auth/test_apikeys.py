"""API keys: shown once, stored hashed, looked up by id; rotation keeps the old key for a grace period only."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from musdpay.cli import main
from payment.auth import apikeys
from payment.auth.errors import Unauthorized
from payment.auth.models import ApiKey, AuditEvent
from payment.auth.principal import Role
from tests.payment.auth.conftest import assert_problem
from tests.support.auth import TEST_ACTOR, bearer

ME = "/api/v1/auth/me"
KEY_PATTERN = r"^mpk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$"


def test_a_key_is_shown_once_and_only_its_hash_is_stored(factory: sessionmaker[Session]) -> None:
    issued = apikeys.create_key(factory=factory, name="dapp backend", role=Role.operator, actor=TEST_ACTOR)
    assert issued.key.startswith(f"mpk_{issued.info.id}_")
    assert re.fullmatch(KEY_PATTERN, issued.key)
    with factory() as db:
        row = db.get(ApiKey, issued.info.id)
    assert row is not None
    secret = issued.key.split("_", 2)[2]
    assert secret not in row.secret_hash
    assert issued.key not in row.secret_hash
    assert row.secret_hash == hashlib.sha256(f"{row.id}:{secret}".encode()).hexdigest()
    principal = apikeys.authenticate(factory=factory, presented=issued.key)
    assert (principal.kind, principal.subject, principal.role) == ("api_key", issued.info.id, Role.operator)


def test_keys_are_accepted_as_bearer_or_x_api_key(client: TestClient, factory: sessionmaker[Session]) -> None:
    key = apikeys.create_key(factory=factory, name="ops", role=Role.operator, actor=TEST_ACTOR).key
    for headers in (bearer(key), {"X-API-Key": key}, {"X-API-Key": key, **bearer(key)}):
        response = client.get(ME, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "operator"


@pytest.mark.parametrize(
    "presented",
    [
        "mpk_0123456789abcdef_" + "A" * 43,  # unknown id
        "mpk_short",
        "mpk_0123456789abcdef_" + "A" * 42,
        "mpk_0123456789ABCDEF_" + "A" * 43,
    ],
)
def test_unknown_and_malformed_keys_are_401(client: TestClient, presented: str) -> None:
    assert_problem(client.get(ME, headers={"X-API-Key": presented}), 401, "invalid-api-key")
    assert_problem(client.get(ME, headers=bearer(presented)), 401, "invalid-api-key")


def test_a_wrong_secret_for_a_real_key_id_is_401(client: TestClient, factory: sessionmaker[Session]) -> None:
    key = apikeys.create_key(factory=factory, name="ops", role=Role.operator, actor=TEST_ACTOR).key
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert_problem(client.get(ME, headers=bearer(wrong)), 401, "invalid-api-key")


def test_two_different_credentials_are_refused(client: TestClient, factory: sessionmaker[Session]) -> None:
    first = apikeys.create_key(factory=factory, name="a", role=Role.operator, actor=TEST_ACTOR).key
    second = apikeys.create_key(factory=factory, name="b", role=Role.admin, actor=TEST_ACTOR).key
    response = client.get(ME, headers={"X-API-Key": first, **bearer(second)})
    assert_problem(response, 401, "invalid-credentials")
    assert_problem(client.get(ME, headers={"X-API-Key": "not-a-key"}), 401, "invalid-api-key")


def test_a_revoked_key_stops_working_at_once(client: TestClient, factory: sessionmaker[Session]) -> None:
    issued = apikeys.create_key(factory=factory, name="ops", role=Role.operator, actor=TEST_ACTOR)
    assert client.get(ME, headers=bearer(issued.key)).status_code == 200
    apikeys.revoke_key(factory=factory, key_id=issued.info.id, actor=TEST_ACTOR)
    response = client.get(ME, headers=bearer(issued.key))
    assert_problem(response, 401, "invalid-api-key")
    assert "revoked" in response.json()["detail"]


def test_a_rotated_key_works_during_the_grace_period_and_not_after(factory: sessionmaker[Session]) -> None:
    t0 = datetime.now(UTC)
    old = apikeys.create_key(factory=factory, name="ops", role=Role.operator, actor=TEST_ACTOR, now=t0)
    new = apikeys.rotate_key(factory=factory, key_id=old.info.id, grace_seconds=600, actor=TEST_ACTOR, now=t0)
    assert new.info.family_id == old.info.id
    assert new.info.name == "ops"
    assert new.info.role is Role.operator
    in_grace = t0 + timedelta(seconds=599)
    assert apikeys.authenticate(factory=factory, presented=old.key, now=in_grace).subject == old.info.id
    assert apikeys.authenticate(factory=factory, presented=new.key, now=in_grace).subject == new.info.id
    after = t0 + timedelta(seconds=600)
    with pytest.raises(Unauthorized) as refused:
        apikeys.authenticate(factory=factory, presented=old.key, now=after)
    assert refused.value.slug == "invalid-api-key"
    assert "grace period" in refused.value.detail
    a_year_later = after + timedelta(days=365)
    assert apikeys.authenticate(factory=factory, presented=new.key, now=a_year_later).role is Role.operator
    # Both keys are one client for Idempotency-Keys.
    assert (
        apikeys.authenticate(factory=factory, presented=new.key, now=in_grace).idempotency_scope
        == apikeys.authenticate(factory=factory, presented=old.key, now=in_grace).idempotency_scope
    )
    with pytest.raises(Exception, match="already rotated"):
        apikeys.rotate_key(factory=factory, key_id=old.info.id, grace_seconds=600, actor=TEST_ACTOR, now=in_grace)


def test_last_used_is_written_at_most_once_a_minute(factory: sessionmaker[Session]) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0)
    issued = apikeys.create_key(factory=factory, name="ops", role=Role.operator, actor=TEST_ACTOR, now=t0)

    def last_used() -> datetime | None:
        with factory() as db:
            return db.scalar(select(ApiKey.last_used_at).where(ApiKey.id == issued.info.id))

    apikeys.authenticate(factory=factory, presented=issued.key, now=t0)
    assert last_used() == t0
    apikeys.authenticate(factory=factory, presented=issued.key, now=t0 + timedelta(seconds=59))
    assert last_used() == t0
    apikeys.authenticate(factory=factory, presented=issued.key, now=t0 + timedelta(seconds=61))
    assert last_used() == t0 + timedelta(seconds=61)


def test_the_cli_creates_rotates_lists_and_revokes_keys(
    database_url: str, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    from payment.core.config import get_settings

    monkeypatch.setenv("MUSDPAY_DATABASE_URL", database_url)
    monkeypatch.setenv("MUSDPAY_ENVIRONMENT", "test")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        created = runner.invoke(main, ["apikey", "create", "--name", "ops team", "--role", "operator"])
        assert created.exit_code == 0, created.output
        key = created.stdout.strip()
        assert re.fullmatch(KEY_PATTERN, key), created.stdout
        key_id = key.split("_")[1]
        assert "shown once" in created.stderr
        assert key not in created.stderr

        rotated = runner.invoke(main, ["apikey", "rotate", key_id, "--grace", "60"])
        assert rotated.exit_code == 0, rotated.output
        new_key = rotated.stdout.strip()
        assert re.fullmatch(KEY_PATTERN, new_key)
        assert new_key != key

        listed = runner.invoke(main, ["apikey", "list"])
        assert listed.exit_code == 0, listed.output
        assert key_id in listed.stdout
        assert "rotating" in listed.stdout
        assert "ops team" in listed.stdout
        assert key.split("_", 2)[2] not in listed.stdout

        revoked = runner.invoke(main, ["apikey", "revoke", key_id])
        assert revoked.exit_code == 0, revoked.output
        with pytest.raises(Unauthorized):
            apikeys.authenticate(factory=factory, presented=key)
        missing = runner.invoke(main, ["apikey", "revoke", "0" * 16])
        assert missing.exit_code != 0
        assert "No API key" in missing.output
    finally:
        get_settings.cache_clear()
    with factory() as db:
        actions = [e.action for e in db.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        actors = {e.actor for e in db.scalars(select(AuditEvent))}
    assert actions == ["api_key.create", "api_key.rotate", "api_key.revoke"]
    assert all(actor.startswith("cli:") for actor in actors)


def test_repeated_bad_credentials_are_rate_limited(database_url: str, factory: sessionmaker[Session]) -> None:
    """Failed keys and sign-ins count against the client's `auth_failure` bucket (payment/security/throttle.py):
    once it is empty, credentials are refused with 429 before they are even checked, the right key included."""
    from payment.api import create_app
    from tests.payment.auth.conftest import auth_settings

    good = apikeys.create_key(factory=factory, name="ops", role=Role.operator, actor=TEST_ACTOR).key
    settings = auth_settings(database_url, rate_limit_enabled=True, rate_limits="auth_failure=3/300")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        bad = "mpk_0123456789abcdef_" + "A" * 43
        for _ in range(3):
            assert_problem(client.get(ME, headers={"X-API-Key": bad}), 401, "invalid-api-key")
        refused = client.get(ME, headers=bearer(good))
        assert_problem(refused, 429, "too-many-auth-failures")
        assert int(refused.headers["retry-after"]) > 0
        # Without credentials (and off the sign-in routes) nothing is guessed: not refused.
        assert_problem(client.get("/api/v1/onramp/sessions"), 401, "authentication-required")
