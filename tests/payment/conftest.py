"""Fixtures of the payment service: migrated databases, settings, and helpers to seed sessions."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import stripe
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from payment.core import migrations
from payment.core.config import Settings
from payment.core.db import create_db_engine, make_session_factory
from payment.onramp.models import OnrampSession
from tests.support.auth import JWT_KEYS
from tests.support.services import free_port

WEBHOOK_SECRET = "whsec_test_primary_0123456789"
STRIPE_KEY = "sk_test_musdpay_tests"
WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "stripe_secret_key": STRIPE_KEY,
        "stripe_webhook_secrets": [WEBHOOK_SECRET],
        "auto_migrate": False,
        "jwt_keys": JWT_KEYS,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = create_db_engine(settings)
    migrations.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def db(database_url: str) -> Iterator[sessionmaker[Session]]:
    """A session factory on the test's database, not migrated: for tests whose API process migrates it."""
    engine = create_db_engine(Settings(database_url=database_url))
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def api_port() -> int:
    """A free port for an API process (the emulator's webhook URL needs it before the API starts)."""
    return free_port()


def seed_session(factory: sessionmaker[Session], *, status: str = "initialized", **fields: Any) -> OnrampSession:
    """A session row as if Stripe had created it, for tests of what happens after creation."""
    now = datetime.now(UTC)
    row_id = str(uuid.uuid4())
    values: dict[str, Any] = {
        "id": row_id,
        "stripe_session_id": f"cos_{uuid.uuid4().hex[:24]}",
        "client_secret": f"cos_secret_{uuid.uuid4().hex}",
        "status": status,
        "livemode": False,
        "wallet_address": WALLET,
        "source_amount": Decimal("100.00"),
        "source_currency": "usd",
        "destination_currency": "musd",
        "destination_network": "mezo",
        "customer_ip_address": "127.0.0.1",
        "request_fingerprint": "0" * 64,
        "last_event_id": "",
        "last_event_created": 0,
        "created_at": now,
        "updated_at": now,
    }
    values.update(fields)
    row = OnrampSession(**values)
    with factory() as db, db.begin():
        db.add(row)
    return row


def onramp_object(row: OnrampSession, status: str, **details: Any) -> dict[str, Any]:
    """A Stripe crypto.onramp_session object for `row` (shape of Stripe's published fixture)."""
    return {
        "id": row.stripe_session_id,
        "object": "crypto.onramp_session",
        "client_secret": row.client_secret,
        "created": int(row.created_at.timestamp()),
        "livemode": False,
        "metadata": {"musdpay_session_id": row.id},
        "redirect_url": None,
        "status": status,
        "transaction_details": {
            "destination_amount": details.get("destination_amount"),
            "destination_currencies": ["musd"],
            "destination_currency": "musd",
            "destination_network": "mezo",
            "destination_networks": ["mezo"],
            "fees": {
                "network_fee_amount": details.get("network_fee_amount"),
                "transaction_fee_amount": details.get("transaction_fee_amount"),
            },
            "lock_wallet_address": True,
            "source_amount": "100.00",
            "source_currency": "usd",
            "transaction_id": details.get("transaction_id"),
            "wallet_address": row.wallet_address,
        },
    }


def event_payload(obj: dict[str, Any], *, event_id: str | None = None, created: int | None = None) -> bytes:
    event = {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2026-10-28",
        "created": created if created is not None else int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "crypto.onramp_session_updated",
    }
    return json.dumps(event).encode()


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    header: str = stripe.WebhookSignature.generate_signature_header(payload.decode(), secret, timestamp=timestamp)
    return header
