"""PostgreSQL restarted under load (issue 15.5): while it is down the API answers only 503 problems (never a
500), `/readyz` says not ready, the service is back within 5 s of the database, and no acknowledged write is
lost (every session answered 201 is in the database after).

The database is a private cluster (tests/monitor/pgcluster.py) stopped in immediate mode (as a crash: no
checkpoint, the next start replays the WAL) and started again while four clients keep creating sessions and a
fifth polls readiness.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.monitor.pgcluster import PgCluster, own_postgres
from tests.support.chaos import SESSIONS, report, wallet
from tests.support.services import free_port
from tests.support.stack import PaymentApi, api_environment, running_emulator, start_api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

CLIENTS = 4
OUTAGE_SECONDS = 3.0  # refusals seen over this long before the database returns: an outage, not a blip
BACK_WITHIN_SECONDS = 5.0


@dataclass(frozen=True)
class Answer:
    at: float  # monotonic
    status: int  # 0: no HTTP answer at all
    content_type: str
    session_id: str | None


class Load:
    """Clients creating sessions, and a readiness poller, until stopped; every answer is kept."""

    def __init__(self, api: PaymentApi) -> None:
        self.api = api
        self.answers: list[Answer] = []
        self.ready: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._create, args=(n,), daemon=True) for n in range(CLIENTS)]
        self._threads.append(threading.Thread(target=self._poll_ready, daemon=True))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _create(self, client_number: int) -> None:
        index = client_number * 100_000
        with self.api.client(timeout=30) as client:
            while not self._stop.is_set():
                index += 1
                try:
                    response = client.post(SESSIONS, json={"walletAddress": wallet(index), "sourceAmount": "10.00"})
                    body = response.json() if response.status_code == 201 else {}
                    answer = Answer(
                        time.monotonic(), response.status_code, response.headers.get("content-type", ""), body.get("id")
                    )
                except httpx.HTTPError:
                    answer = Answer(time.monotonic(), 0, "", None)
                with self._lock:
                    self.answers.append(answer)

    def _poll_ready(self) -> None:
        with httpx.Client(base_url=self.api.url, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    status = client.get("/readyz").status_code
                except httpx.HTTPError:
                    status = 0
                with self._lock:
                    self.ready.append((time.monotonic(), status))
                self._stop.wait(0.05)

    def created_since(self, at: float) -> int:
        with self._lock:
            return sum(1 for a in self.answers if a.at > at and a.status == 201)

    def refused_since(self, at: float) -> int:
        with self._lock:
            return sum(1 for a in self.answers if a.at > at and a.status != 201)

    def refused_over(self, at: float) -> float:
        """Seconds between the first and the last refusal after `at`."""
        with self._lock:
            times = [a.at for a in self.answers if a.at > at and a.status != 201]
        return times[-1] - times[0] if times else 0.0

    def not_ready_since(self, at: float) -> bool:
        with self._lock:
            return any(t > at and status == 503 for t, status in self.ready)


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    with own_postgres() as cluster:
        yield cluster


def test_postgres_restarted_under_load_503_meanwhile_back_within_5s_nothing_acknowledged_lost(
    tmp_path: Path, cluster: PgCluster
) -> None:
    port = free_port()
    with running_emulator(tmp_path, webhook_port=port) as emulator:
        env = api_environment(
            cluster.url,
            emulator.url,
            reconcile_interval_seconds="0",
            delivery_worker_enabled="false",
            rate_limit_enabled="false",
        )
        api = start_api(tmp_path, port, env)
        try:
            with Load(api) as load:
                started = time.monotonic()
                wait_until(lambda: load.created_since(started) >= 20, timeout=30, what="load before the outage")
                down_at = time.monotonic()  # before the stop: refusals begin while pg_ctl is still stopping it
                cluster.stop()
                wait_until(lambda: load.refused_since(down_at) >= 10, timeout=30, what="refusals meanwhile")
                wait_until(lambda: load.refused_over(down_at) >= OUTAGE_SECONDS, timeout=30, what="a long outage")
                wait_until(lambda: load.not_ready_since(down_at), timeout=30, what="/readyz not ready")
                cluster.start()  # pg_ctl -w: returns once the database accepts connections
                up_at = time.monotonic()
                wait_until(lambda: load.created_since(up_at) >= 1, timeout=30, what="a session created again")
                wait_until(lambda: load.created_since(up_at) >= 20, timeout=30, what="load after the outage")
            answers = list(load.answers)
            ready = list(load.ready)
        finally:
            api.process.stop()
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres") as db:
        stored = {row[0] for row in db.execute("SELECT id FROM onramp_sessions")}
    acknowledged = [a.session_id for a in answers if a.status == 201]
    outage = [a for a in answers if down_at < a.at and a.status != 201]
    back = min(a.at for a in answers if a.at > up_at and a.status == 201) - up_at
    ready_again = min((t for t, status in ready if t > up_at and status == 200), default=float("inf")) - up_at
    figures = {
        "requests": len(answers),
        "acknowledged": len(acknowledged),
        "refused": len(outage),
        "refusals": sorted({(a.status, a.content_type) for a in outage}),
        "server_errors": sum(1 for a in answers if a.status >= 500 and a.status != 503),
        "no_answer": sum(1 for a in answers if a.status == 0),
        "database_down_seconds": round(up_at - down_at, 3),
        "created_again_after_seconds": round(back, 3),
        "ready_again_after_seconds": round(ready_again, 3),
        "lost": sum(1 for session_id in acknowledged if session_id not in stored),
    }
    report(tmp_path, "postgres-restart", figures)
    for answer in answers:
        if answer.status != 201:
            assert answer.status == 503, figures
            assert answer.content_type.startswith("application/problem+json"), figures
    assert figures["lost"] == 0
    assert back <= BACK_WITHIN_SECONDS, figures
    assert ready_again <= BACK_WITHIN_SECONDS, figures
