from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from payment.core.config import Settings, SettingsError
from payment.core.db import create_db_engine
from tests.support.services import temporary_postgres_database


def test_lists_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSDPAY_STRIPE_WEBHOOK_SECRETS", "whsec_a, whsec_b,,")
    monkeypatch.setenv("MUSDPAY_SOURCE_CURRENCIES", "USD,eur")
    monkeypatch.setenv("MUSDPAY_MAX_SOURCE_AMOUNT", "2500.50")
    settings = Settings()
    assert [s.get_secret_value() for s in settings.stripe_webhook_secrets] == ["whsec_a", "whsec_b"]
    assert settings.source_currencies == ["usd", "eur"]
    assert settings.max_source_amount == Decimal("2500.50")


def test_secrets_can_come_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "stripe_key"
    key_file.write_text("sk_test_from_a_file\n")
    monkeypatch.setenv("MUSDPAY_STRIPE_SECRET_KEY_FILE", str(key_file))
    settings = Settings()
    assert settings.stripe_secret_key is not None
    assert settings.stripe_secret_key.get_secret_value() == "sk_test_from_a_file"
    assert "sk_test_from_a_file" not in repr(settings)


def test_an_unreadable_secret_file_stops_start_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MUSDPAY_STRIPE_SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises((SettingsError, ValidationError), match="STRIPE_SECRET_KEY_FILE"):
        Settings()


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_placeholder_secrets_are_refused_outside_development(environment: str) -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(environment=environment, stripe_secret_key="sk_test_changeme")
    assert Settings(environment="development", stripe_secret_key="sk_test_changeme").stripe_secret_key


def test_a_live_key_is_refused_outside_production() -> None:
    with pytest.raises(ValidationError, match="live Stripe key"):
        Settings(environment="staging", stripe_secret_key="sk_live_abc123")
    assert Settings(environment="production", stripe_secret_key="sk_live_abc123").stripe_secret_key


def test_amount_bounds_must_make_sense() -> None:
    with pytest.raises(ValidationError):
        Settings(min_source_amount=Decimal("10"), max_source_amount=Decimal("5"))


def test_migrations_run_at_start_in_development_only_unless_told() -> None:
    assert Settings(environment="development").migrate_at_start
    assert not Settings(environment="production").migrate_at_start
    assert Settings(environment="production", auto_migrate=True).migrate_at_start


@pytest.mark.integration
@pytest.mark.parametrize("scheme", ["postgresql://", "postgres://"])
def test_a_plain_postgres_url_connects_with_psycopg_3(scheme: str) -> None:
    # Railway's DATABASE_URL and CloudNativePG's `uri` say postgresql:// (Heroku's postgres://): they must work as
    # given, not make SQLAlchemy reach for psycopg2, which is not installed.
    with temporary_postgres_database() as url:
        plain = scheme + url.split("://", 1)[1]
        settings = Settings(database_url=plain)
        assert settings.database_url == url
        engine = create_db_engine(settings)
        try:
            with engine.connect() as connection:
                assert connection.execute(text("SELECT 1")).scalar_one() == 1
        finally:
            engine.dispose()
    assert Settings(database_url="sqlite:///./x.sqlite").database_url == "sqlite:///./x.sqlite"
