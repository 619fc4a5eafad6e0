"""The baseline of bench/api.py: a bare FastAPI app doing the same database and Stripe work, and nothing more.

- ``POST /webhook`` reads the body, parses the JSON and, in one transaction, does the writes the real ingest
  does for the bench's events: SELECT the session by its Stripe id, UPDATE its status and event position,
  INSERT a status change when the status moved, INSERT the event into ``webhook_events``.
- ``POST /seed`` inserts the sessions the webhook events name (the bench seeds the API with the same ones).
- ``POST /sessions`` POSTs the same form-encoded create to the Stripe emulator (sync httpx, in a ``def`` route)
  and INSERTs one row into an ``onramp_sessions`` table.

Durability matches the real service: one committed transaction per request; on SQLite the same connection
settings as payment/core/db.py (WAL, synchronous=NORMAL, one shared connection, BEGIN IMMEDIATE), on PostgreSQL
a pool of the same size. Blocking database work runs in the threadpool, as a well-written FastAPI app does.
No signature check, no validation beyond the body model, no ORM, no idempotency: the ratio musdpay/baseline is
what all of that costs.

Configured by the environment (set by bench/api.py):
``BENCH_BASELINE_DATABASE_URL`` (``sqlite:///<path>`` or ``postgresql://...``), ``BENCH_BASELINE_STRIPE_API_BASE``,
``BENCH_BASELINE_STRIPE_SECRET_KEY``; run with ``uvicorn --app-dir bench baseline_app:app``.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI, Header, HTTPException, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

__all__ = ["app"]

POOL_SIZE = 10  # MUSDPAY_DATABASE_POOL_SIZE's default (PostgreSQL only; SQLite uses one connection)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS webhook_events (
        id VARCHAR(255) NOT NULL PRIMARY KEY,
        type VARCHAR(128) NOT NULL,
        livemode BOOLEAN NOT NULL,
        stripe_created BIGINT NOT NULL,
        received_at {ts} NOT NULL,
        processed_at {ts},
        outcome VARCHAR(32) NOT NULL,
        session_id VARCHAR(36),
        stripe_object_id VARCHAR(255),
        payload TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_webhook_events_processed_at ON webhook_events (processed_at)",
    """CREATE TABLE IF NOT EXISTS onramp_sessions (
        id VARCHAR(36) NOT NULL PRIMARY KEY,
        stripe_session_id VARCHAR(255) UNIQUE,
        client_secret VARCHAR(512),
        status VARCHAR(32) NOT NULL,
        livemode BOOLEAN NOT NULL,
        wallet_address VARCHAR(42) NOT NULL,
        source_amount VARCHAR(64) NOT NULL,
        source_currency VARCHAR(8) NOT NULL,
        destination_currency VARCHAR(16) NOT NULL,
        destination_network VARCHAR(32) NOT NULL,
        customer_ip_address VARCHAR(45),
        idempotency_key VARCHAR(64) UNIQUE,
        last_event_id VARCHAR(255) NOT NULL DEFAULT '',
        last_event_created BIGINT NOT NULL DEFAULT 0,
        created_at {ts} NOT NULL,
        updated_at {ts} NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_onramp_sessions_created_at_id ON onramp_sessions (created_at, id)",
    "CREATE INDEX IF NOT EXISTS ix_onramp_sessions_status ON onramp_sessions (status)",
    "CREATE INDEX IF NOT EXISTS ix_onramp_sessions_wallet_created ON onramp_sessions (wallet_address, created_at, id)",
    """CREATE TABLE IF NOT EXISTS onramp_session_status_changes (
        id {serial},
        session_id VARCHAR(36) NOT NULL REFERENCES onramp_sessions (id) ON DELETE CASCADE,
        from_status VARCHAR(32),
        to_status VARCHAR(32) NOT NULL,
        source VARCHAR(16) NOT NULL,
        event_id VARCHAR(255),
        occurred_at {ts} NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_status_changes_session_id ON onramp_session_status_changes (session_id)",
)

_INSERT_EVENT = (
    "INSERT INTO webhook_events (id, type, livemode, stripe_created, received_at, processed_at, outcome, "
    "session_id, stripe_object_id, payload) VALUES ({})"
)
_INSERT_SESSION = (
    "INSERT INTO onramp_sessions (id, stripe_session_id, client_secret, status, livemode, wallet_address, "
    "source_amount, source_currency, destination_currency, destination_network, customer_ip_address, "
    "idempotency_key, created_at, updated_at) VALUES ({})"
)


Statement = tuple[str, tuple[Any, ...]]


class Database(Protocol):
    placeholder: str

    def insert(self, statement: str, values: tuple[Any, ...]) -> None: ...

    def transaction(self, work: Any) -> Any:
        """Run `work(execute)` in one committed transaction; `execute(sql, values)` returns the rows."""
        ...


class SqliteDatabase:
    """One connection behind a lock, as payment/core/db.py's QueuePool(pool_size=1) for SQLite."""

    placeholder = "?"

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=10, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000", "foreign_keys=ON"):
            self._conn.execute(f"PRAGMA {pragma}")
        for statement in _SCHEMA:
            self._conn.execute(statement.format(ts="DATETIME", serial="INTEGER PRIMARY KEY AUTOINCREMENT"))

    def _execute(self, statement: str, values: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        values = tuple(v.replace(tzinfo=None).isoformat(" ") if isinstance(v, datetime) else v for v in values)
        return self._conn.execute(statement, values).fetchall()

    def transaction(self, work: Any) -> Any:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._execute)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

    def insert(self, statement: str, values: tuple[Any, ...]) -> None:
        self.transaction(lambda execute: execute(statement, values))


class PostgresDatabase:
    """A fixed pool of psycopg connections; one transaction per insert."""

    placeholder = "%s"

    def __init__(self, url: str) -> None:
        import psycopg

        self._pool: queue.Queue[Any] = queue.Queue()
        for _ in range(POOL_SIZE):
            self._pool.put(psycopg.connect(url))
        with self._connection() as conn, conn.transaction():
            for statement in _SCHEMA:
                conn.execute(statement.format(ts="TIMESTAMPTZ", serial="SERIAL PRIMARY KEY"))

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        conn = self._pool.get(timeout=10)
        try:
            yield conn
        finally:
            self._pool.put(conn)

    def transaction(self, work: Any) -> Any:
        with self._connection() as conn, conn.transaction():

            def execute(statement: str, values: tuple[Any, ...]) -> list[tuple[Any, ...]]:
                cursor = conn.execute(statement, values)
                return cursor.fetchall() if cursor.description else []

            return work(execute)

    def insert(self, statement: str, values: tuple[Any, ...]) -> None:
        self.transaction(lambda execute: execute(statement, values))


def _open_database(url: str) -> SqliteDatabase | PostgresDatabase:
    if url.startswith("sqlite:///"):
        return SqliteDatabase(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgresql+psycopg://")):
        return PostgresDatabase(url.replace("postgresql+psycopg://", "postgresql://", 1))
    raise SystemExit(f"unsupported BENCH_BASELINE_DATABASE_URL: {url}")


_db = _open_database(os.environ["BENCH_BASELINE_DATABASE_URL"])
_stripe_base = os.environ["BENCH_BASELINE_STRIPE_API_BASE"].rstrip("/")
_stripe = httpx.Client(
    timeout=10, headers={"Authorization": f"Bearer {os.environ['BENCH_BASELINE_STRIPE_SECRET_KEY']}"}
)
_event_sql = _INSERT_EVENT.format(", ".join([_db.placeholder] * 10))
_session_sql = _INSERT_SESSION.format(", ".join([_db.placeholder] * 14))

app = FastAPI(title="bench baseline")


def _sql(text: str) -> str:
    """Write statements with `?`; psycopg wants `%s`."""
    return text.replace("?", _db.placeholder)


_select_session_sql = _sql(
    "SELECT id, status, last_event_created, last_event_id FROM onramp_sessions WHERE stripe_session_id = ?"
)
_update_session_sql = _sql(
    "UPDATE onramp_sessions SET status = ?, last_event_created = ?, last_event_id = ?, updated_at = ? WHERE id = ?"
)
_insert_change_sql = _sql(
    "INSERT INTO onramp_session_status_changes (session_id, from_status, to_status, source, event_id, occurred_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


@app.post("/webhook")
async def webhook(request: Request) -> dict[str, Any]:
    payload = await request.body()
    event = json.loads(payload)
    obj = event["data"]["object"]
    now = datetime.now(UTC)

    def ingest(execute: Any) -> None:
        rows = execute(_select_session_sql, (obj.get("id"),))
        session_id = None
        if rows:
            session_id, status = rows[0][0], rows[0][1]
            execute(_update_session_sql, (obj["status"], event["created"], event["id"], now, session_id))
            if status != obj["status"]:
                execute(_insert_change_sql, (session_id, status, obj["status"], "webhook", event["id"], now))
        values = (
            event["id"],
            event["type"],
            bool(event.get("livemode", False)),
            event["created"],
            now,
            now,
            "processed",
            session_id,
            obj.get("id"),
            payload.decode(),
        )
        execute(_event_sql, values)

    await run_in_threadpool(_db.transaction, ingest)
    return {"received": True, "eventId": event["id"]}


class SeedSession(BaseModel):
    id: str
    stripeSessionId: str


@app.post("/seed", status_code=204)
def seed(sessions: list[SeedSession]) -> None:
    now = datetime.now(UTC)
    for row in sessions:
        values = (
            row.id, row.stripeSessionId, None, "initialized", False, "0x52908400098527886E0F7030069857D2E4169EE7",
            "100.00", "usd", "musd", "mezo", None, None, now, now,
        )  # fmt: skip
        _db.insert(_session_sql, values)


class CreateBody(BaseModel):
    walletAddress: str
    sourceAmount: Decimal


@app.post("/sessions", status_code=201)
def create_session(
    body: CreateBody, request: Request, idempotency_key: str | None = Header(default=None, alias="Idempotency-Key")
) -> dict[str, Any]:
    row_id = str(uuid.uuid4())
    client_ip = request.client.host if request.client else None
    form = [
        ("wallet_addresses[mezo]", body.walletAddress),
        ("source_amount", format(body.sourceAmount, "f")),
        ("source_currency", "usd"),
        ("destination_currency", "musd"),
        ("destination_currencies[0]", "musd"),
        ("destination_network", "mezo"),
        ("destination_networks[0]", "mezo"),
        ("lock_wallet_address", "true"),
        ("metadata[musdpay_session_id]", row_id),
    ]
    if client_ip:
        form.append(("customer_ip_address", client_ip))
    response = _stripe.post(
        f"{_stripe_base}/v1/crypto/onramp_sessions",
        content=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": f"bench-{row_id}"},
    )
    if response.status_code != 200:
        raise HTTPException(502, f"stripe answered {response.status_code}")
    obj = response.json()
    now = datetime.now(UTC)
    values = (
        row_id,
        obj["id"],
        obj["client_secret"],
        obj["status"],
        False,
        body.walletAddress,
        format(body.sourceAmount, "f"),
        "usd",
        "musd",
        "mezo",
        client_ip,
        idempotency_key,
        now,
        now,
    )
    _db.insert(_session_sql, values)
    return {"id": row_id, "stripeSessionId": obj["id"], "clientSecret": obj["client_secret"], "status": obj["status"]}
