"""Secrets: from the environment or `*_FILE`, never in a log line or an answer; database TLS options."""

from __future__ import annotations

import io
import json
import logging
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from payment.core.config import SECRET_FIELDS, Settings, SettingsError
from payment.core.db import create_db_engine
from payment.core.logs import JsonFormatter
from payment.security.secrets import REPLACEMENT, ScrubbingFormatter, install_secret_scrubber, secret_values
from tests.payment.conftest import event_payload, sign
from tests.support.services import free_port, temporary_postgres_database
from tests.support.stack import running_api
from tests.support.waiting import wait_until

# One known value per secret field: (environment text, how to read it back from Settings).
_SECRET_CASES: dict[str, tuple[str, Any]] = {
    "stripe_secret_key": ("sk_test_fromfile_51Hx", lambda s: s.stripe_secret_key.get_secret_value()),
    "stripe_webhook_secrets": (
        "whsec_one_0123,whsec_two_4567",
        lambda s: [w.get_secret_value() for w in s.stripe_webhook_secrets],
    ),
    "rpc_providers": (
        "spectrum=https://rpc.example/v2/k3y,backup=http://127.0.0.1:8545",
        lambda s: [(p.name, p.url.get_secret_value()) for p in s.rpc_providers],
    ),
    "treasury_key": ("0x" + "ab" * 32, lambda s: s.treasury_key.get_secret_value()),
    "jwt_keys": (
        "k1:0123456789abcdef0123456789abcdef,k0:fedcba9876543210fedcba9876543210",
        lambda s: [(k.kid, k.secret.get_secret_value()) for k in s.jwt_keys],
    ),
    "redis_url": ("redis://:p4ss@127.0.0.1:6379/0", lambda s: s.redis_url.get_secret_value()),
    "database_url": ("postgresql+psycopg://app:pw@db.internal/musdpay", lambda s: s.database_url),
    "backup_encryption_key": ("cd" * 32, lambda s: s.backup_encryption_key.get_secret_value()),
}
_EXPECTED: dict[str, Any] = {
    "stripe_secret_key": "sk_test_fromfile_51Hx",
    "stripe_webhook_secrets": ["whsec_one_0123", "whsec_two_4567"],
    "rpc_providers": [("spectrum", "https://rpc.example/v2/k3y"), ("backup", "http://127.0.0.1:8545")],
    "treasury_key": "0x" + "ab" * 32,
    "jwt_keys": [("k1", "0123456789abcdef0123456789abcdef"), ("k0", "fedcba9876543210fedcba9876543210")],
    "redis_url": "redis://:p4ss@127.0.0.1:6379/0",
    "database_url": "postgresql+psycopg://app:pw@db.internal/musdpay",
    "backup_encryption_key": "cd" * 32,
}


def test_every_secret_field_is_covered_here() -> None:
    assert set(_SECRET_CASES) == set(SECRET_FIELDS)


@pytest.mark.parametrize("field", SECRET_FIELDS)
@pytest.mark.parametrize("source", ["env", "file"])
def test_each_secret_reads_from_the_environment_or_a_file(
    field: str, source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value, read = _SECRET_CASES[field]
    name = f"MUSDPAY_{field.upper()}"
    if source == "env":
        monkeypatch.setenv(name, value)
    else:
        path = tmp_path / field
        path.write_text(value + "\n", encoding="utf-8")  # mounted secrets often end with a newline
        monkeypatch.setenv(f"{name}_FILE", str(path))
    assert read(Settings()) == _EXPECTED[field]
    for secret in secret_values(Settings()):  # and every one of them is known to the log scrubber
        assert secret
    shown = repr(Settings())
    for part in ("fromfile", "whsec_one", "k3y", "abab", "0123456789abcdef", "p4ss"):
        if part in value and field != "database_url":
            assert part not in shown  # SecretStr: never in a repr, so never in a traceback's locals


def test_the_environment_wins_over_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "key").write_text("sk_test_from_file")
    monkeypatch.setenv("MUSDPAY_STRIPE_SECRET_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("MUSDPAY_STRIPE_SECRET_KEY", "sk_test_from_env")
    assert Settings().stripe_secret_key == SecretStr("sk_test_from_env")


def test_a_live_stripe_key_refuses_to_start_outside_production() -> None:
    for environment in ("development", "test", "staging"):
        with pytest.raises((SettingsError, ValidationError), match="live Stripe key"):
            Settings(environment=environment, stripe_secret_key="sk_live_51Hxyz")
        with pytest.raises((SettingsError, ValidationError), match="live Stripe key"):
            Settings(environment=environment, stripe_secret_key="rk_live_51Hxyz")
    assert Settings(environment="production", stripe_secret_key="sk_live_51Hxyz").stripe_secret_key


def test_configured_secrets_are_scrubbed_from_every_formatted_line() -> None:
    rpc_key = secrets.token_hex(16)
    settings = Settings(
        rpc_providers=f"spectrum=https://rpc.example/v2/{rpc_key}",
        treasury_key="0x" + "cd" * 32,
        jwt_keys="k1:" + "z" * 40,
        redis_url="redis://:redis-password-123@cache:6379/0",
    )
    stream = io.StringIO()
    logger = logging.getLogger(f"test.scrub.{uuid.uuid4().hex}")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    install_secret_scrubber(settings, logger)
    install_secret_scrubber(settings, logger)  # idempotent: one wrapper
    assert isinstance(handler.formatter, ScrubbingFormatter)
    assert not isinstance(handler.formatter.inner, ScrubbingFormatter)
    logger.warning("provider %s failed", f"https://rpc.example/v2/{rpc_key}/")
    logger.warning("key %s / %s", "cd" * 32, "z" * 40)
    try:
        raise RuntimeError("connect to redis://:redis-password-123@cache failed")
    except RuntimeError:
        logger.exception("boom")
    output = stream.getvalue()
    for secret in (rpc_key, "cd" * 32, "z" * 40, "redis-password-123"):
        assert secret not in output
    assert output.count(REPLACEMENT) >= 4


@pytest.mark.integration
def test_no_secret_reaches_a_log_line_or_an_answer(tmp_path: Path) -> None:
    """A real `musdpay serve` with known secrets, driven through successes and failures (Stripe down, bad
    signatures, bad credentials, bad input, readiness); its whole output and every answer are searched."""
    token = secrets.token_hex(12)
    known = {
        "stripe_secret_key": f"sk_test_{token}stripe",
        "webhook_secret": f"whsec_{token}hook",
        "rpc_key": f"{token}rpckey",
        "treasury_key": secrets.token_hex(32),
        "jwt_secret": f"{token}jwtsecret{token}",
        "redis_password": f"{token}redispw",
        "database_password": f"{token}dbpw",
    }
    with temporary_postgres_database() as database_url:
        db_url = database_url.replace("postgres@", f"postgres:{known['database_password']}@", 1)  # trust auth
        assert known["database_password"] in db_url
        env = {
            "MUSDPAY_ENVIRONMENT": "test",
            "MUSDPAY_LOG_LEVEL": "DEBUG",
            "MUSDPAY_DATABASE_URL": db_url,
            "MUSDPAY_AUTO_MIGRATE": "true",
            "MUSDPAY_STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}",  # nobody there: Stripe is down
            "MUSDPAY_STRIPE_SECRET_KEY": known["stripe_secret_key"],
            "MUSDPAY_STRIPE_WEBHOOK_SECRETS": known["webhook_secret"],
            "MUSDPAY_STRIPE_TIMEOUT_SECONDS": "1",
            "MUSDPAY_STRIPE_MAX_NETWORK_RETRIES": "0",
            "MUSDPAY_RPC_PROVIDERS": f"spectrum=http://127.0.0.1:{free_port()}/v2/{known['rpc_key']}",
            "MUSDPAY_RPC_POLL_INTERVAL_SECONDS": "0.2",
            "MUSDPAY_TREASURY_KEY": "0x" + known["treasury_key"],
            "MUSDPAY_JWT_KEYS": f"k1:{known['jwt_secret']}",
            # Nobody there: the limiter's calls fail and are logged (with the URL's password, were it not for us).
            "MUSDPAY_REDIS_URL": f"redis://:{known['redis_password']}@127.0.0.1:{free_port()}/0",
        }
        answers: list[str] = []
        with running_api(tmp_path, free_port(), env) as api, api.client() as client:

            def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
                response = client.request(method, path, **kwargs)
                answers.append(f"{response.status_code} {dict(response.headers)} {response.text}")
                return response

            wallet = "0x52908400098527886E0F7030069857D2E4169EE7"
            created = call(
                "POST",
                "/api/v1/onramp/sessions",
                json={"walletAddress": wallet, "sourceAmount": "10.00"},
                headers={"Authorization": f"Bearer {known['stripe_secret_key']}"},
            )
            assert created.status_code in {401, 403, 503}
            call("POST", "/api/v1/onramp/sessions", json={"walletAddress": "nope", "sourceAmount": "-1"})
            call("POST", "/api/v1/onramp/sessions", content=b"{not json", headers={"Content-Type": "application/json"})
            payload = event_payload({"id": "cos_unknown", "object": "crypto.onramp_session", "status": "x"})
            call("POST", "/api/v1/webhooks/stripe", content=payload, headers={"Stripe-Signature": "t=1,v1=bad"})
            signed = sign(payload, known["webhook_secret"])
            call("POST", "/api/v1/webhooks/stripe", content=payload, headers={"Stripe-Signature": signed})
            call("GET", "/api/v1/onramp/sessions", headers={"X-API-Key": f"mpk_{token}"})
            call("GET", "/api/v1/onramp/sessions", headers={"Authorization": f"Bearer {known['jwt_secret']}"})
            call("GET", "/readyz")
            call("GET", "/healthz")
            call("GET", "/metrics")
            call("GET", "/openapi.json")
            call("GET", "/nope")
            wait_until(lambda: "Redis unavailable" in api.process.log(), timeout=5, what="the Redis warning")
        output = api.process.log()
    assert "Redis unavailable" in output  # the failures were really logged...
    assert len(output.splitlines()) > 10
    everything = output + "\n".join(answers)
    for name, value in known.items():
        assert value not in everything, f"{name} leaked"  # ...and no secret with them


@pytest.mark.integration
def test_database_tls_options_pass_through_to_the_driver() -> None:
    with temporary_postgres_database() as url:
        settings = Settings(database_url=f"{url}?sslmode=verify-full&sslrootcert=/etc/ssl/certs/db-ca.pem")
        engine = create_db_engine(settings)
        try:
            assert engine.url.query["sslmode"] == "verify-full"
            assert engine.url.query["sslrootcert"] == "/etc/ssl/certs/db-ca.pem"
            _, params = engine.dialect.create_connect_args(engine.url)
            assert params["sslmode"] == "verify-full"
            assert params["sslrootcert"] == "/etc/ssl/certs/db-ca.pem"
        finally:
            engine.dispose()


@pytest.mark.integration
def test_sslmode_disable_connects_and_require_fails_fast_against_a_plain_server() -> None:
    with temporary_postgres_database() as url:
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            row = conn.execute("SHOW ssl").fetchone()
        assert row is not None
        if row[0] == "on":
            pytest.skip("the local PostgreSQL speaks TLS; this test needs a plain one")
        plain = create_db_engine(Settings(database_url=f"{url}?sslmode=disable"))
        try:
            with plain.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
        finally:
            plain.dispose()
        strict = create_db_engine(Settings(database_url=f"{url}?sslmode=require"))
        started = time.monotonic()
        try:
            with pytest.raises(OperationalError) as failure, strict.connect():
                pass
        finally:
            strict.dispose()
        assert time.monotonic() - started < 5  # an error, not a hang
        assert "SSL" in str(failure.value)  # libpq: "server does not support SSL, but SSL was required"


def test_a_postgresql_engine_gets_a_connect_timeout_unless_the_url_sets_one() -> None:
    engine = create_db_engine(Settings(database_url="postgresql+psycopg://u@127.0.0.1:1/x"))
    assert engine.dialect.create_connect_args(engine.url)[1].get("connect_timeout") is None  # from connect_args
    started = time.monotonic()
    with pytest.raises(OperationalError), engine.connect():
        pass
    assert time.monotonic() - started < 15
    engine.dispose()
    own = create_db_engine(Settings(database_url="postgresql+psycopg://u@127.0.0.1:1/x?connect_timeout=3"))
    assert own.dialect.create_connect_args(own.url)[1]["connect_timeout"] == "3"
    own.dispose()


def test_readiness_shows_no_secret(edge_client: Any) -> None:
    client = edge_client(jwt_keys="k1:" + "q" * 40, redis_url="redis://:readyz-password-1@127.0.0.1:1/0")
    body = client.get("/readyz").text
    for secret in ("sk_test_musdpay_tests", "whsec_test_primary", "q" * 40, "readyz-password-1"):
        assert secret not in body
    assert json.loads(body)["checks"]
