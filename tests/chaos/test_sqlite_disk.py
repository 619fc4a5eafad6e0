"""SQLite on a full disk and on a read-only file (issue 15.5): clear 503/507 problem answers (never a 500), no
partial write, no corruption (`PRAGMA integrity_check`), and recovery once space returns or the file is
writable again, without restarting the API.

The full disk is a small tmpfs the test mounts and fills; the read-only file is made immutable (`chattr +i`)
under the running API: root, whom the tests run as, ignores file modes, and a read-only remount is refused while
the API holds the file open for writing. Stripe's webhooks sent meanwhile are refused and retried by the
emulator, so they are applied after recovery: none is lost.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.chaos import SESSIONS, Stopwatch, report, wallet
from tests.support.mounts import fill, immutable, tmpfs
from tests.support.services import free_port
from tests.support.stack import Emulator, PaymentApi, api_environment, running_emulator, start_api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

ATTEMPTS = 10  # session creations tried while the database cannot be written
FAST_RETRIES = ["--delivery-max-attempts", "60", "--delivery-backoff-base", "0.1", "--delivery-backoff-cap", "0.5"]


@pytest.fixture
def emulator_and_port(tmp_path: Path) -> Iterator[tuple[Emulator, int]]:
    port = free_port()
    with running_emulator(tmp_path, webhook_port=port, extra=FAST_RETRIES) as emulator:
        yield emulator, port


def _api(tmp_path: Path, port: int, emulator: Emulator, database: Path) -> PaymentApi:
    env = api_environment(
        f"sqlite:///{database}",
        emulator.url,
        reconcile_interval_seconds="0",  # only webhooks move sessions: a refused webhook must come back by retry
        delivery_worker_enabled="false",
        rate_limit_enabled="false",
    )
    return start_api(tmp_path, port, env)


def _create(client: httpx.Client, index: int) -> httpx.Response:
    return client.post(SESSIONS, json={"walletAddress": wallet(index), "sourceAmount": "20.00"})


def _created(client: httpx.Client, index: int) -> httpx.Response | None:
    answer = _create(client, index)
    return answer if answer.status_code == 201 else None


def _refusals(answers: list[httpx.Response]) -> list[tuple[int, str, str]]:
    """Each refused answer as (status, content type, problem type): what a client sees."""
    found = []
    for answer in answers:
        if answer.status_code != 201:
            kind = answer.json().get("type", "") if answer.headers.get("content-type", "").endswith("json") else ""
            found.append((answer.status_code, answer.headers.get("content-type", ""), str(kind)))
    return found


def _integrity(database: Path) -> str:
    with sqlite3.connect(database) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def _rows(database: Path) -> dict[str, str]:
    with sqlite3.connect(database) as db:
        return dict(db.execute("SELECT id, status FROM onramp_sessions").fetchall())


def _status(client: httpx.Client, session: dict[str, Any]) -> str:
    return str(client.get(f"{SESSIONS}/{session['id']}").json()["status"])


def _refused_deliveries(emulator: Emulator) -> int:
    """Webhook deliveries the API refused (Stripe retries each)."""
    return sum(1 for attempt in emulator.deliveries() if not attempt["delivered"])


def _checkpoint(database: Path) -> None:
    # An empty WAL, so the next commit must grow a file: on a full disk it cannot.
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def test_a_full_disk_answers_503_corrupts_nothing_and_recovers(
    tmp_path: Path, emulator_and_port: tuple[Emulator, int]
) -> None:
    emulator, port = emulator_and_port
    with tmpfs(tmp_path / "disk", size="16m") as disk:
        database = disk / "musdpay.sqlite"
        api = _api(tmp_path, port, emulator, database)
        try:
            with api.client() as client:
                before = _create(client, 0)
                assert before.status_code == 201, before.text
                _checkpoint(database)
                filler = disk / "filler"
                filled = fill(filler)
                full = Stopwatch()
                answers = [_create(client, index) for index in range(1, ATTEMPTS + 1)]
                emulator.advance(before.json()["stripeSessionId"], "fulfillment_complete")  # Stripe's webhooks
                wait_until(lambda: _refused_deliveries(emulator) > 0, timeout=10, what="a webhook refused")
                assert _status(client, before.json()) == "initialized"  # reads still work
                refused = _refusals(answers)
                filler.unlink()  # space returns
                healed = Stopwatch()
                after = wait_until(lambda: _created(client, 99), timeout=10, what="a session created again")
                assert after is not None
                recovered_seconds = healed.elapsed()
                wait_until(lambda: _status(client, before.json()) == "fulfillment_complete", timeout=30)
                outage_seconds = full.elapsed()
        finally:
            api.process.stop()
        integrity = _integrity(database)
        rows = _rows(database)
    acknowledged = [before.json(), after.json()] + [a.json() for a in answers if a.status_code == 201]
    figures = {
        "filler_bytes": filled,
        "attempts": ATTEMPTS,
        "refused": len(refused),
        "refusals": sorted(set(refused)),
        "server_errors": sum(1 for status, _, _ in refused if status == 500),
        "integrity_check": integrity,
        "recovery_seconds": recovered_seconds,
        "webhook_refused_attempts": _refused_deliveries(emulator),
        "full_until_webhooks_applied_seconds": outage_seconds,
        "lost": sum(1 for s in acknowledged if s["id"] not in rows),
    }
    report(tmp_path, "sqlite-disk-full", figures)
    assert refused, "the full disk refused no write: the test did not fill it"
    for status, content_type, kind in refused:
        assert status in (503, 507), refused
        assert content_type.startswith("application/problem+json"), refused
        assert kind.endswith("/problems/database-unavailable") or kind.endswith("/problems/insufficient-storage")
    assert integrity == "ok"
    assert figures["lost"] == 0
    # No partial write: only the acknowledged sessions are in the database (a refused one left no row behind).
    assert set(rows) == {s["id"] for s in acknowledged}


def test_a_read_only_file_answers_503_corrupts_nothing_and_recovers(
    tmp_path: Path, emulator_and_port: tuple[Emulator, int]
) -> None:
    emulator, port = emulator_and_port
    database = tmp_path / "musdpay.sqlite"
    api = _api(tmp_path, port, emulator, database)
    try:
        with api.client() as client:
            first = _create(client, 0)
            assert first.status_code == 201, first.text
            _checkpoint(database)
            files = [database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")]
            with immutable(*files):  # read-only under the running API, its open connection included
                answers = [_create(client, index) for index in range(1, ATTEMPTS + 1)]
                emulator.advance(first.json()["stripeSessionId"], "fulfillment_complete")
                wait_until(lambda: _refused_deliveries(emulator) > 0, timeout=10, what="a webhook refused")
                readable = client.get(f"{SESSIONS}/{first.json()['id']}").status_code
                ready = client.get("/readyz").status_code
            healed = Stopwatch()  # writable again, the API still running
            after = wait_until(lambda: _created(client, 99), timeout=10, what="a session created again")
            assert after is not None
            recovered_seconds = healed.elapsed()
            wait_until(lambda: _status(client, first.json()) == "fulfillment_complete", timeout=30)
    finally:
        api.process.stop()
    refused = _refusals(answers)
    integrity = _integrity(database)
    rows = _rows(database)
    acknowledged = [first.json(), after.json()] + [a.json() for a in answers if a.status_code == 201]
    figures = {
        "attempts": ATTEMPTS,
        "refused": len(refused),
        "refusals": sorted(set(refused)),
        "server_errors": sum(1 for status, _, _ in refused if status == 500),
        "read_while_read_only": readable,
        "readyz_while_read_only": ready,
        "webhook_refused_attempts": _refused_deliveries(emulator),
        "integrity_check": integrity,
        "recovery_seconds": recovered_seconds,
        "lost": sum(1 for s in acknowledged if s["id"] not in rows),
    }
    report(tmp_path, "sqlite-read-only", figures)
    assert len(refused) == ATTEMPTS  # not one write can succeed on a read-only file
    for status, content_type, _ in refused:
        assert status in (503, 507), refused
        assert content_type.startswith("application/problem+json"), refused
    assert integrity == "ok"
    assert figures["lost"] == 0
    assert set(rows) == {s["id"] for s in acknowledged}
