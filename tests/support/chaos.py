"""Helpers of the fault-injection suite (tests/chaos/): its figures, and the checks of "nothing lost, nothing
applied twice" against the Stripe emulator's truth.

Each scenario reports its figures twice: printed (seen with `-s` or in a failure's captured output) and written
as JSON under the test's temporary directory (`chaos-<scenario>.json`), whatever pytest's capture mode; the
figures of docs/reliability.md come from those files.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from payment.onramp.models import OnrampSession, SessionStatusChange
from payment.webhooks.models import WebhookEvent
from tests.support.stack import PaymentApi

__all__ = [
    "ORDER",
    "SESSIONS",
    "Ledger",
    "Stopwatch",
    "compare_with_stripe",
    "create_sessions",
    "report",
    "wallet",
]

ORDER = ["initialized", "requires_payment", "fulfillment_processing", "fulfillment_complete"]
SESSIONS = "/api/v1/onramp/sessions"


def report(tmp_path: Path, scenario: str, figures: dict[str, Any]) -> Path:
    """Print the scenario's figures and write them to `<tmp_path>/chaos-<scenario>.json`; returns that path."""
    line = json.dumps({"scenario": scenario, **figures}, sort_keys=True, default=str)
    print(f"chaos figures: {line}")
    path = tmp_path / f"chaos-{scenario}.json"
    path.write_text(line + "\n", encoding="utf-8")
    return path


class Stopwatch:
    """Seconds since it was made (monotonic)."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)


def wallet(index: int) -> str:
    """A distinct checksummed address per index (no key behind it: nothing is paid to it here)."""
    from eth_utils.address import to_checksum_address

    return str(to_checksum_address(f"0x{0xC4A05 * 0x10000 + index:040x}"))


def create_sessions(api: PaymentApi, count: int, *, workers: int = 8, amount: str = "25.00") -> list[dict[str, Any]]:
    """`count` sessions through the API (each a real Stripe call to the emulator), `workers` at a time."""
    local = threading.local()
    clients: list[httpx.Client] = []

    def create(index: int) -> dict[str, Any]:
        client = getattr(local, "client", None)
        if client is None:  # one keep-alive client per worker: a new client per request costs more than the request
            client = local.client = api.client()
            clients.append(client)
        answer = client.post(SESSIONS, json={"walletAddress": wallet(index), "sourceAmount": amount})
        assert answer.status_code == 201, answer.text
        body: dict[str, Any] = answer.json()
        return body

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(create, range(count)))
    finally:
        for client in clients:
            client.close()


@dataclass
class Ledger:
    """How the database compares with Stripe's truth."""

    events: int = 0  # Stripe's events for our sessions
    lost_events: list[str] = field(default_factory=list)  # created at Stripe, never stored
    extra_events: list[str] = field(default_factory=list)  # stored, unknown to Stripe
    wrong_sessions: list[tuple[str, str | None, str]] = field(default_factory=list)  # (stripe id, ours, Stripe's)
    repeated_transitions: list[tuple[str, list[tuple[str | None, str]]]] = field(default_factory=list)
    broken_histories: list[tuple[str, list[tuple[str | None, str]]]] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return len(self.lost_events) + len(self.wrong_sessions)

    @property
    def duplicated(self) -> int:
        return len(self.repeated_transitions)


def compare_with_stripe(factory: sessionmaker[Session], truth: dict[str, str], events: list[dict[str, Any]]) -> Ledger:
    """Each session's status and history against Stripe's (`truth`: stripe id -> status; `events`: Stripe's)."""
    ledger = Ledger(events=len(events))
    with factory() as db:
        stored = set(db.scalars(select(WebhookEvent.id)).all())
        counted = db.scalar(select(func.count()).select_from(WebhookEvent))
        assert counted == len(stored)  # the id is the key: an event is stored once or not at all
        wanted = {event["id"] for event in events}
        ledger.lost_events = sorted(wanted - stored)
        ledger.extra_events = sorted(stored - wanted)
        rows = {row.stripe_session_id: row for row in db.scalars(select(OnrampSession))}
        changes: dict[str, list[tuple[str | None, str]]] = {}
        for change in db.scalars(select(SessionStatusChange).order_by(SessionStatusChange.id)):
            changes.setdefault(change.session_id, []).append((change.from_status, change.to_status))
    for stripe_id, status in truth.items():
        row = rows.get(stripe_id)
        if row is None or row.status != status:
            ledger.wrong_sessions.append((stripe_id, None if row is None else row.status, status))
            continue
        path = changes.get(row.id, [])
        if len(set(path)) != len(path):  # one history row per transition, never two
            ledger.repeated_transitions.append((stripe_id, path))
        chained = all(a[1] == b[0] for a, b in itertools.pairwise(path))
        ends = path[-1][1] == status if path else status == "initialized"
        forward = status not in ORDER or [ORDER.index(to) for _, to in path] == sorted(
            ORDER.index(to) for _, to in path
        )
        if not (chained and ends and forward):
            ledger.broken_histories.append((stripe_id, path))
    return ledger
