"""Several instances, for real, as the enterprise topology runs them (docker-compose.yml, deploy/k8s): two
`musdpay serve` on one PostgreSQL and one Redis, two `musdpay deliver` and two `musdpay monitor`, every one of
them scraped by a real Prometheus.

- sessions are created through both APIs; every Stripe event is delivered to both at the same moment (a retry
  racing the first delivery behind a load balancer), in shuffled order: each session ends in Stripe's state,
  with one history row per transition and one stored event per Stripe event;
- a rate limit is one limit, not one per instance: the 429 comes at the same count whichever instance is hit;
- Prometheus sees each instance under its own `instance` label, and a dashboard's sum is the sum of them;
- the two delivery workers verify each paid session once, and the two monitors re-open a given-up delivery once.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from payment.auth.models import AuditEvent
from payment.core.config import Settings
from payment.core.db import create_db_engine, make_session_factory
from payment.delivery.models import Delivery
from payment.delivery.store import FAR_FUTURE
from payment.onramp.models import OnrampSession, SessionStatusChange
from payment.webhooks.models import WebhookEvent
from sandbox.chain.local import running_chain
from tests.alerts.support import Prometheus, running_prometheus
from tests.dashboards.expressions import dashboard_targets, runnable
from tests.payment.conftest import seed_session
from tests.sandbox.chain.support import require_anvil
from tests.support.redis import REDIS_URL, redis_prefix
from tests.support.services import (
    ChildProcess,
    free_port,
    musdpay_command,
    start_process,
    temporary_postgres_database,
    wait_http_ok,
)
from tests.support.stack import WEBHOOK_SECRET, Emulator, PaymentApi, api_environment, running_emulator, start_api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

SESSIONS = "/api/v1/onramp/sessions"
WEBHOOKS = "/api/v1/webhooks/stripe"
PER_WALLET = 4  # create_session for this test: small enough to reach, through two instances
# What each session is driven to at Stripe: paid (delivered on chain), rejected, or left mid-way.
TARGETS = ["fulfillment_complete"] * 4 + ["rejected"] * 2 + ["fulfillment_processing", "requires_payment"]
ORDER = ["initialized", "requires_payment", "fulfillment_processing", "fulfillment_complete"]


@dataclass
class Deployment:
    apis: list[PaymentApi]
    delivers: list[ChildProcess]
    monitors: list[ChildProcess]
    emulator: Emulator
    prometheus: Prometheus
    factory: sessionmaker[Session]


def _wallet(index: int) -> str:
    from eth_utils import to_checksum_address

    return str(to_checksum_address(f"0x{0xD0 + index:040x}"))


def _monitor_config(path: Path, *, port: int, env: dict[str, str]) -> None:
    config = {
        "settings": {
            "environment": "test",
            "database_url": env["MUSDPAY_DATABASE_URL"],
            "chain_id": int(env["MUSDPAY_CHAIN_ID"]),
            "rpc_providers": env["MUSDPAY_RPC_PROVIDERS"],
            "musd_address": env["MUSDPAY_MUSD_ADDRESS"],
            "stripe_secret_key": env["MUSDPAY_STRIPE_SECRET_KEY"],
            "stripe_api_base": env["MUSDPAY_STRIPE_API_BASE"],
        },
        "server": {"host": "127.0.0.1", "port": port},
        "rpc": {"interval_seconds": 1},
        "pipeline": {"interval_seconds": 1},
        # The one writing job: both monitors run it every second; the advisory lock lets one act per round.
        "reverify": {"enabled": True, "interval_seconds": 0.5, "after_seconds": 600},
    }
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require_anvil()
    tmp_path = tmp_path_factory.mktemp("instances")
    with ExitStack() as stack:
        database_url = stack.enter_context(temporary_postgres_database())
        prefix = stack.enter_context(redis_prefix())
        chain = stack.enter_context(running_chain())
        # No webhook endpoint: the test delivers Stripe's events itself, to both instances at once.
        extra = ["--chain", json.dumps(chain.info())]
        emulator = stack.enter_context(running_emulator(tmp_path, webhook_port=None, extra=extra))
        env = api_environment(
            database_url,
            emulator.url,
            chain_id=str(chain.chain_id),
            rpc_providers=f"local={chain.rpc_url}",
            musd_address=chain.musd_address,
            redis_url=REDIS_URL,
            rate_limit_redis_prefix=prefix,
            rate_limits=f"create_session={PER_WALLET}/60",
            delivery_worker_enabled="false",  # the standalone workers deliver, as in the enterprise topology
            delivery_poll_seconds="0.2",
            reconcile_interval_seconds="0",  # webhooks alone move the sessions here
        )
        apis = []
        for _ in range(2):  # the first migrates; the second finds the schema up to date
            api = start_api(tmp_path, free_port(), env)
            stack.callback(api.process.stop)
            apis.append(api)
        delivers = []
        for name in ("deliver-a", "deliver-b"):
            worker_env = {**env, "MUSDPAY_DELIVERY_METRICS_PORT": str(free_port())}
            worker = start_process(musdpay_command("deliver"), env=worker_env, log_path=tmp_path / f"{name}.log")
            stack.callback(worker.stop)
            delivers.append(worker)
        monitors = []
        for name in ("monitor-a", "monitor-b"):
            port = free_port()
            config = tmp_path / f"{name}.yml"
            _monitor_config(config, port=port, env=env)
            monitor = start_process(
                musdpay_command("monitor", "--config", str(config)), env={}, log_path=tmp_path / f"{name}.log"
            )
            stack.callback(monitor.stop)
            monitor.env["port"] = str(port)
            monitors.append(monitor)
        for worker in delivers:
            wait_http_ok(f"http://127.0.0.1:{worker.env['MUSDPAY_DELIVERY_METRICS_PORT']}/metrics", worker)
        for monitor in monitors:
            wait_http_ok(f"http://127.0.0.1:{monitor.env['port']}/metrics", monitor)
        targets = {
            "musdpay-api": [api.url.removeprefix("http://") for api in apis],
            "musdpay-deliver": [f"127.0.0.1:{w.env['MUSDPAY_DELIVERY_METRICS_PORT']}" for w in delivers],
            "musdpay-monitor": [f"127.0.0.1:{m.env['port']}" for m in monitors],
        }
        prometheus = stack.enter_context(running_prometheus(tmp_path, targets, None))
        wait_until(
            lambda: sum(prometheus.instances_up().values()) == 6, timeout=60, what="every instance scraped and up"
        )
        engine = create_db_engine(Settings(database_url=database_url))
        stack.callback(engine.dispose)
        yield Deployment(apis, delivers, monitors, emulator, prometheus, make_session_factory(engine))


def _deliver_to_both(apis: list[PaymentApi], event: dict[str, Any]) -> list[int]:
    """The same signed event to every instance at the same moment (a barrier releases the requests together)."""
    payload = json.dumps(event).encode()
    header = stripe.WebhookSignature.generate_signature_header(payload.decode(), WEBHOOK_SECRET)
    barrier = threading.Barrier(len(apis))
    statuses = [0] * len(apis)

    def post(index: int) -> None:
        with httpx.Client(base_url=apis[index].url, timeout=30) as client:
            barrier.wait(timeout=30)
            statuses[index] = client.post(
                WEBHOOKS, content=payload, headers={"Stripe-Signature": header, "Content-Type": "application/json"}
            ).status_code

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(apis))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses


def _scalar(prometheus: Prometheus, expr: str) -> float:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else 0.0


def test_two_instances_agree_on_every_session_whatever_order_and_whichever_instance(deployment: Deployment) -> None:
    apis = deployment.apis
    created = []
    for index, _ in enumerate(TARGETS):
        with apis[index % 2].client() as client:  # alternately through each instance
            answer = client.post(SESSIONS, json={"walletAddress": _wallet(index), "sourceAmount": "40.00"})
        assert answer.status_code == 201, answer.text
        created.append(answer.json())
    for session, target in zip(created, TARGETS, strict=True):
        if target != "initialized":
            deployment.emulator.advance(session["stripeSessionId"], target)

    ours = {session["stripeSessionId"] for session in created}
    events = [e for e in deployment.emulator.events() if e["data"]["object"]["id"] in ours]
    assert len(events) >= len(TARGETS)
    random.Random(20261204).shuffle(events)  # seeded: a failure replays in the same order
    with ThreadPoolExecutor(max_workers=4) as pool:  # several events at once, each to both instances at once
        answers = list(pool.map(lambda event: _deliver_to_both(apis, event), events))
    assert all(status == 200 for pair in answers for status in pair), answers

    truth = {s["id"]: s["status"] for s in deployment.emulator.sessions() if s["id"] in ours}
    with deployment.factory() as db:
        rows = {row.stripe_session_id: row for row in db.scalars(select(OnrampSession))}
        stored = db.scalars(select(WebhookEvent.id)).all()
        for stripe_id, status in truth.items():
            row = rows[stripe_id]
            assert row.status == status, (stripe_id, row.status, status)
            changes = db.scalars(
                select(SessionStatusChange)
                .where(SessionStatusChange.session_id == row.id)
                .order_by(SessionStatusChange.id)
            ).all()
            # One row per transition, chained: each starts where the previous one ended, none repeated.
            path = [(change.from_status, change.to_status) for change in changes]
            assert len(set(path)) == len(path), path
            assert all(a[1] == b[0] for a, b in itertools.pairwise(path)), path
            assert path[-1][1] == status if path else status == "initialized"
            if status in ORDER:  # out of order, yet never backwards
                ranks = [ORDER.index(to) for _, to in path]
                assert ranks == sorted(ranks), path
    assert {e["id"] for e in events} <= set(stored)  # every event stored, once (the id is the key)

    # The standalone workers verify each paid session once (counted by whichever of them acted).
    paid = [s for s in created if truth[s["stripeSessionId"]] == "fulfillment_complete"]
    assert len(paid) == TARGETS.count("fulfillment_complete")

    def all_verified() -> bool:
        with deployment.factory() as db:
            ids = [rows[s["stripeSessionId"]].id for s in paid]
            statuses = db.scalars(select(Delivery.status).where(Delivery.session_id.in_(ids))).all()
            return len(statuses) == len(paid) and set(statuses) == {"verified"}

    wait_until(all_verified, timeout=60, what="every paid session's delivery verified by the standalone workers")
    verified = 'sum(musdpay_delivery_total{job="musdpay-deliver",outcome="verified"})'
    wait_until(lambda: _scalar(deployment.prometheus, verified) == len(paid), timeout=30, what="both workers scraped")
    assert _scalar(deployment.prometheus, 'sum(musdpay_delivery_total{job="musdpay-api"})') == 0  # worker off


def test_a_rate_limit_is_one_limit_across_instances(deployment: Deployment) -> None:
    apis = deployment.apis
    buyer = _wallet(50)
    statuses = []
    for attempt in range(PER_WALLET + 2):
        with apis[attempt % 2].client() as client:
            statuses.append(client.post(SESSIONS, json={"walletAddress": buyer, "sourceAmount": "5.00"}).status_code)
    assert statuses == [201] * PER_WALLET + [429, 429]  # the same count as on one instance
    other = _wallet(51)
    statuses = []
    for _ in range(PER_WALLET + 1):  # all on the second instance: the same count again
        with apis[1].client() as client:
            statuses.append(client.post(SESSIONS, json={"walletAddress": other, "sourceAmount": "5.00"}).status_code)
    assert statuses == [201] * PER_WALLET + [429]


def test_prometheus_sees_each_instance_and_a_dashboard_sums_them(deployment: Deployment) -> None:
    prometheus = deployment.prometheus
    health = prometheus.instances_up()
    for job in ("musdpay-api", "musdpay-deliver", "musdpay-monitor"):
        assert sorted(up for (j, _), up in health.items() if j == job) == [True, True], health
    # Both APIs answered requests; the dashboard panel of HTTP traffic sums them.
    per_instance = 'sum by (instance) (musdpay_http_request_duration_seconds_count{job="musdpay-api"})'
    wait_until(
        lambda: len([r for r in prometheus.query(per_instance) if float(r["value"][1]) > 0]) == 2,
        timeout=30,
        what="requests seen on both instances",
    )
    # Every dashboard panel of the API's request counts: its sum by label equals the sum of the instances'.
    panels = [
        match
        for _, _, target in dashboard_targets()
        if "musdpay_http_request_duration_seconds_count" in str(target["expr"])
        and " / " not in str(target["expr"])  # a ratio of sums is not a sum of the instances
        and (match := _SUM_BY.match(runnable(str(target["expr"])))) is not None
    ]
    assert panels, "the API dashboard's panels of request rates"
    at = time.time()  # one instant for every query: the sums are then exact
    for panel in panels:
        by, inner = panel.group(1), panel.group(2)
        labels = [label.strip() for label in by.split(",") if label.strip()]
        whole = {_key(r, labels): float(r["value"][1]) for r in prometheus.query(panel.group(0), at=at)}
        parts = prometheus.query(f"sum by ({by}, instance) ({inner})", at=at)
        assert {r["metric"]["instance"] for r in parts} == {api.url.removeprefix("http://") for api in deployment.apis}
        summed: dict[tuple[str, ...], float] = {}
        for r in parts:
            summed[_key(r, labels)] = summed.get(_key(r, labels), 0.0) + float(r["value"][1])
        assert whole == pytest.approx(summed), panel.group(0)


_SUM_BY = re.compile(r"^sum by \(([^)]*)\) \((.*)\)$", re.DOTALL)


def _key(result: dict[str, Any], labels: list[str]) -> tuple[str, ...]:
    return tuple(result["metric"].get(label, "") for label in labels)


def test_two_monitors_reopen_a_given_up_delivery_once(deployment: Deployment) -> None:
    rounds = 'sum by (instance) (musdpay_monitor_reverify_runs_total{job="musdpay-monitor"})'
    before = {r["metric"]["instance"]: float(r["value"][1]) for r in deployment.prometheus.query(rounds)}
    assert len(before) == 2
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    row = seed_session(
        deployment.factory,
        status="fulfillment_complete",
        wallet_address=_wallet(70),
        destination_amount=Decimal("12.5"),
        transaction_id="0x" + "ab" * 32,
    )
    with deployment.factory() as db, db.begin():
        db.add(
            Delivery(
                session_id=row.id,
                mode="onramp",
                status="not_found",
                reason="deadline passed: Stripe's transaction is not on chain",
                wallet_address=row.wallet_address,
                expected_amount=Decimal("12.5"),
                tx_hash="0x" + "ab" * 32,
                confirmations=0,
                checks=9,
                next_check_at=FAR_FUTURE,  # as the worker leaves a delivery it gave up on
                deadline_at=long_ago,
                created_at=long_ago,
                updated_at=long_ago,
            )
        )

    def both_ran_rounds_since() -> bool:  # each monitor has tried several times since the delivery gave up
        now = {r["metric"]["instance"]: float(r["value"][1]) for r in deployment.prometheus.query(rounds)}
        return all(now.get(instance, 0) >= count + 4 for instance, count in before.items())

    wait_until(both_ran_rounds_since, timeout=60, what="both monitors to run re-verification rounds")
    with deployment.factory() as db:
        reopened = db.scalars(
            select(AuditEvent).where(AuditEvent.target == row.id, AuditEvent.action.like("delivery.%"))
        ).all()
    assert len(reopened) == 1, [(event.action, event.actor) for event in reopened]
    total = 'sum(musdpay_monitor_reverified_deliveries_total{job="musdpay-monitor"})'
    wait_until(lambda: _scalar(deployment.prometheus, total) == 1, timeout=30, what="one reopening, counted once")
