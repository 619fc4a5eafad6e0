"""Authentication settings: keys from the environment or a file, and no start without a key outside development."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from payment.api import create_app
from payment.core.config import Settings, SettingsError
from tests.payment.conftest import make_settings


def test_outside_development_the_app_refuses_to_start_without_a_jwt_key(database_url: str) -> None:
    for environment in ("test", "staging", "production"):
        settings = make_settings(database_url, environment=environment, jwt_keys=[])
        with pytest.raises(SettingsError, match="no JWT signing key"):
            create_app(settings)


def test_development_signs_with_an_ephemeral_key_and_says_so(
    database_url: str, factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(database_url, environment="development", jwt_keys=[])
    with caplog.at_level(logging.WARNING, logger="payment.auth.tokens"):
        app = create_app(settings)
    assert app.state.musdpay.auth.keyring.kids[0].startswith("dev-")
    assert any("ephemeral key" in record.getMessage() for record in caplog.records)


def test_keys_come_from_the_environment_or_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MUSDPAY_JWT_KEYS", f"k1:{'a' * 32}, k2:{'b' * 32}")
    monkeypatch.setenv("MUSDPAY_JWT_ACTIVE_KID", "k2")
    settings = Settings()
    assert [key.kid for key in settings.jwt_keys] == ["k1", "k2"]
    assert settings.jwt_active_kid == "k2"
    assert "a" * 32 not in repr(settings)
    monkeypatch.delenv("MUSDPAY_JWT_KEYS")
    secret_file = tmp_path / "jwt"
    secret_file.write_text(f"k2:{'c' * 40}\n")
    monkeypatch.setenv("MUSDPAY_JWT_KEYS_FILE", str(secret_file))
    assert Settings().jwt_keys[0].secret.get_secret_value() == "c" * 40


@pytest.mark.parametrize(
    ("keys", "active", "message"),
    [
        ("k1:short", None, "at least 32 bytes"),
        ("k1", None, "kid:secret"),
        (f"k1:{'a' * 32},k1:{'b' * 32}", None, "unique"),
        (f"k1:{'a' * 32}", "k9", "not among"),
        (f"bad kid!:{'a' * 32}", None, "kid"),
    ],
)
def test_bad_key_settings_are_refused(keys: str, active: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(jwt_keys=keys, jwt_active_kid=active)


def test_a_placeholder_jwt_secret_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        Settings(environment="staging", jwt_keys=f"k1:changeme-{'a' * 32}")
