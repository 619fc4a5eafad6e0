"""The issue's acceptance test: purchases made right after a fresh start show on the payments dashboard.

A real Prometheus (the shipped rules, 1 s scrapes) scrapes a freshly started API, whose Stripe is the emulator
(no chain: each onramp delivery stays pending, which these panels do not read). Once Prometheus has scraped the
API, buyers make purchases (three fulfilled, of different amounts, one rejected); then the payments dashboard's
own queries, read from its committed JSON, must give exactly those figures. Before every known series started
at 0, each series was born with its first event and `increase()`/`rate()` never counted that event: the
fulfilled volume read 0 after the purchases.

Exactness: `increase()` and `rate()` extrapolate a range to its edges. Evaluated at the timestamp of the last
scrape, nothing is extrapolated forward; and since each series' first sample is 0 (the point of the fix),
Prometheus extrapolates backward only down to that zero, that is, not at all. So `increase()` is the exact
difference, and `rate() x range` equals it up to float rounding (one division and one multiplication: checked
to 1e-9 relative). The amounts are binary fractions (10, 25.5, 100.25) so that their float sum is exact.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import sqlalchemy
from eth_account import Account

from tests.alerts.support import Prometheus, running_prometheus
from tests.dashboards.expressions import dashboard_targets
from tests.support.services import free_port, temporary_postgres_database
from tests.support.stack import Emulator, PaymentApi, api_environment, running_emulator, start_api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

API_JOB = "musdpay-api"
SESSIONS = "/api/v1/onramp/sessions"
# The largest first: without a zero before it, no extrapolation towards zero could make up for it.
FULFILLED = (Decimal("100.25"), Decimal("25.50"), Decimal("10.00"))
REJECTED = (Decimal("40.00"),)
RANGE_SECONDS = 600  # longer than the whole test: every range starts before the API's first sample


def panel_expression(title: str) -> str:
    """The payments dashboard's query of the panel, with Grafana's variables as this test evaluates them."""
    targets = [t for uid, panel, t in dashboard_targets() if uid == "musdpay-payments" and panel == title]
    assert len(targets) == 1, (title, targets)
    expr = str(targets[0]["expr"])
    for variable, value in (("$__rate_interval", f"{RANGE_SECONDS}s"), ("$__range", f"{RANGE_SECONDS}s")):
        expr = expr.replace(variable, value)
    return expr.replace("$instance", ".*")


class Stack:
    def __init__(self, tmp_path: Path, stack: ExitStack) -> None:
        self.database_url = stack.enter_context(temporary_postgres_database())
        api_port, closed_rpc = free_port(), free_port()
        self.emulator: Emulator = stack.enter_context(running_emulator(tmp_path, webhook_port=api_port))
        env = api_environment(
            self.database_url,
            self.emulator.url,
            rpc_providers=f"local=http://127.0.0.1:{closed_rpc}",  # no chain: deliveries stay pending
            source_currencies="usd,eur",
        )
        self.api: PaymentApi = start_api(tmp_path, api_port, env)
        stack.callback(self.api.process.stop)
        self.prometheus: Prometheus = stack.enter_context(
            running_prometheus(tmp_path, {API_JOB: f"127.0.0.1:{api_port}"}, None)
        )

    def last_scrape(self) -> float | None:
        """When Prometheus last scraped the API successfully (`timestamp()` of a plain selector is the sample's
        own time; of any other expression, the evaluation time)."""
        result = self.prometheus.query(f'timestamp(up{{job="{API_JOB}"}}) and up{{job="{API_JOB}"}} == 1')
        return float(result[0]["value"][1]) if result else None

    def query(self, title: str, at: float) -> dict[str, float]:
        """The panel's series at `at`, keyed by the value of its single grouping label."""
        found: dict[str, float] = {}
        for series in self.prometheus.query(panel_expression(title), at=at):
            labels = series["metric"]
            key = ",".join(labels[name] for name in sorted(labels))
            found[key] = float(series["value"][1])
        return found


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with ExitStack() as exits:
        yield Stack(tmp_path, exits)


def _buy(client: httpx.Client, amount: Decimal) -> dict[str, str]:
    response = client.post(
        SESSIONS,
        json={"walletAddress": Account.create().address, "sourceAmount": str(amount)},
        headers={"Idempotency-Key": f"first-events-{time.monotonic_ns()}"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


def test_purchases_right_after_start_show_on_the_payments_dashboard(stack: Stack) -> None:
    wait_until(stack.last_scrape, timeout=30, interval=0.1, what="Prometheus scraped the fresh API")
    with stack.api.client() as client:
        fulfilled = [_buy(client, amount) for amount in FULFILLED]
        rejected = [_buy(client, amount) for amount in REJECTED]
        for session in fulfilled:
            stack.emulator.advance(session["stripeSessionId"], "fulfillment_complete")
        for session in rejected:
            stack.emulator.advance(session["stripeSessionId"], "rejected")

        def all_final() -> bool:
            wanted = [(s, "fulfillment_complete") for s in fulfilled] + [(s, "rejected") for s in rejected]
            return all(client.get(f"{SESSIONS}/{s['id']}").json()["status"] == status for s, status in wanted)

        wait_until(all_final, timeout=30, interval=0.1, what="every purchase final at the API")

    # What the API applied, from its own records: every status change, every webhook by outcome. The emulator
    # delivers each step's webhook in the background, so they are read once every event it made is recorded.
    def emitted() -> list[object]:
        events: list[object] = stack.emulator.sdk().raw_request("get", "/v1/events", limit=100).data["data"]
        assert len(events) < 100
        return events

    engine = sqlalchemy.create_engine(stack.database_url)
    try:

        def recorded() -> tuple[Counter[str], Counter[str]] | None:
            with engine.connect() as conn:
                changes = conn.execute(sqlalchemy.text("SELECT to_status FROM onramp_session_status_changes")).all()
                events = conn.execute(sqlalchemy.text("SELECT outcome FROM webhook_events")).all()
            if len(events) < len(emitted()):
                return None
            return Counter(row[0] for row in changes), Counter(row[0] for row in events)

        transitions, outcomes = wait_until(recorded, timeout=30, interval=0.2, what="every webhook recorded")
    finally:
        engine.dispose()
    done = time.time()
    # Evaluated at a scrape taken after everything was applied (the API counts before it answers).
    at = wait_until(
        lambda: (t := stack.last_scrape()) is not None and t > done + 0.01 and t,
        timeout=30,
        interval=0.1,
        what="a scrape after the purchases",
    )

    volume = stack.query("Fulfilled volume", at)
    assert volume["usd"] == float(sum(FULFILLED))
    assert volume == {"usd": float(sum(FULFILLED)), "eur": 0.0}

    by_status = {k: v * RANGE_SECONDS for k, v in stack.query("Volume by final status", at).items()}
    assert by_status == pytest.approx(
        {
            "usd,fulfillment_complete": float(sum(FULFILLED)),
            "usd,rejected": float(sum(REJECTED)),
            "eur,fulfillment_complete": 0.0,
            "eur,rejected": 0.0,
        },
        rel=1e-9,
    )

    funnel = stack.query("Status funnel", at)
    assert transitions["fulfillment_complete"] == len(FULFILLED)
    assert transitions["rejected"] == len(REJECTED)
    assert transitions["initialized"] == len(FULFILLED) + len(REJECTED)  # created (from_status=creating)
    assert {status: funnel.get(status) for status in transitions} == dict(transitions)
    assert {status: value for status, value in funnel.items() if value} == dict(transitions)
    assert set(funnel) == {
        "initialized",
        "requires_payment",
        "fulfillment_processing",
        "fulfillment_complete",
        "rejected",
    }

    webhooks = {k: v * RANGE_SECONDS for k, v in stack.query("Webhooks by outcome", at).items()}
    assert outcomes["processed"] >= len(FULFILLED) + len(REJECTED)
    assert {k: round(webhooks.get(k, 0), 6) for k in outcomes} == dict(outcomes)
    assert webhooks == pytest.approx({k: float(outcomes.get(k, 0)) for k in webhooks}, rel=1e-9)
