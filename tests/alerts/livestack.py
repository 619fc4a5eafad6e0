"""The whole local stack in processes, with Prometheus and Alertmanager watching it, after a real run.

anvil <- RPC fault proxies "spectrum" (primary) and "public" <- the API (its own process, delivery worker) and
`musdpay monitor` (its own process); the Stripe emulator pays buyers on the chain; PostgreSQL; Prometheus
scrapes the API and the monitor with the project's generated rules and sends to Alertmanager, which notifies
the capture receivers with the project's routing and templates.

The real run (`exercise`): sessions created, one fulfilled and its MUSD delivery verified on chain, one rejected,
invalid and unknown requests, a Stripe outage answered 503, and the primary RPC answering 503 while the delivery
is verified (errors, failovers). Shared by tests/alerts (the outage test) and tests/dashboards (every panel's
query) through `shared_stack`, started once per test session, stopped when its last user is done.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

from sandbox.chain.local import LocalChain, running_chain
from sandbox.receivers.server import ReceiversConfig, RunningReceivers, running_receivers
from sandbox.rpcproxy.server import RunningProxy, running_proxy
from tests.alerts.support import SMTP_LOGIN, Alertmanager, Prometheus, running_alertmanager, running_prometheus
from tests.sandbox.chain.support import require_anvil
from tests.support.services import ChildProcess, free_port, musdpay_command, start_process, temporary_postgres_database
from tests.support.stack import API_KEY, Emulator, PaymentApi, api_environment, running_emulator, start_api
from tests.support.waiting import wait_until

__all__ = ["API_JOB", "MONITOR_JOB", "LiveStack", "running_live_stack", "shared_stack"]

API_JOB = "musdpay-api"
MONITOR_JOB = "musdpay-monitor"
SESSIONS = "/api/v1/onramp/sessions"


@dataclass
class LiveStack:
    chain: LocalChain
    spectrum: RunningProxy
    public: RunningProxy
    receivers: RunningReceivers
    emulator: Emulator
    api: PaymentApi
    monitor: ChildProcess
    monitor_url: str
    alertmanager: Alertmanager
    prometheus: Prometheus
    database_url: str


def _monitor_config(
    path: Path, *, port: int, database_url: str, chain: LocalChain, providers: str, stripe: str, rpc_interval: float
) -> None:
    config = {
        "settings": {
            "environment": "test",
            "database_url": database_url,
            "chain_id": chain.chain_id,
            "rpc_providers": providers,
            "musd_address": chain.musd_address,
            "stripe_secret_key": API_KEY,
            "stripe_api_base": stripe,
            "log_format": "json",
        },
        "server": {"host": "127.0.0.1", "port": port},
        "rpc": {
            "interval_seconds": rpc_interval,
            "timeout_seconds": min(0.8 * rpc_interval, 4.0),
            "providers": {
                "spectrum": {
                    "sla_target_ratio": 0.999,
                    "credits": {"eth_chainId": 1, "eth_blockNumber": 1, "eth_call": 2, "default": 1},
                    "monthly_credit_quota": 10_000_000,
                },
                "public": {"sla_target_ratio": 0.95},
            },
        },
        "stripe": {"interval_seconds": 2},
        "payments": {"interval_seconds": 2},
        "database": {"interval_seconds": 2},
        "pipeline": {"interval_seconds": 2},
        "treasury": {"interval_seconds": 2, "address": chain.treasury_address},
    }
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML


class _TraceSink(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP trace exports and drops them: the API samples (and so writes exemplars) only when it has
    somewhere to send spans."""

    def do_POST(self) -> None:  # http.server's hook name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def _trace_sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TraceSink)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="otlp-sink")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def running_live_stack(
    tmp_path: Path,
    *,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    fast_alertmanager: bool = True,
    rpc_interval: float = 1.0,
    real_run: bool = True,
) -> Iterator[LiveStack]:
    """The stack; the defaults are the tests' short intervals. bench/alerting.py passes the shipped ones
    (prometheus.yml's 15 s, alertmanager.yml's group timings, monitor.yml's 5 s RPC probes)."""
    require_anvil()
    with ExitStack() as stack:
        database_url = stack.enter_context(temporary_postgres_database())
        chain = stack.enter_context(running_chain())
        spectrum = stack.enter_context(running_proxy(chain.rpc_url, name="spectrum"))
        public = stack.enter_context(running_proxy(chain.rpc_url, name="public"))
        receivers = stack.enter_context(running_receivers(ReceiversConfig(smtp_credentials=SMTP_LOGIN)))
        alertmanager = stack.enter_context(running_alertmanager(tmp_path, receivers, fast=fast_alertmanager))
        api_port, monitor_port = free_port(), free_port()
        extra = ["--chain", json.dumps(chain.info())]
        emulator = stack.enter_context(running_emulator(tmp_path, webhook_port=api_port, extra=extra))
        providers = f"spectrum={spectrum.url}/spectrum-key-0123456789abcdef/mezo,public={public.url}"
        env = api_environment(
            database_url,
            emulator.url,
            chain_id=str(chain.chain_id),
            rpc_providers=providers,
            musd_address=chain.musd_address,
            delivery_poll_seconds="0.2",
            rpc_poll_interval_seconds="0.5",
            rpc_timeout_seconds="2",
        )
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = stack.enter_context(_trace_sink())
        api = start_api(tmp_path, api_port, env)
        stack.callback(api.process.stop)
        config = tmp_path / "monitor.yml"
        _monitor_config(
            config,
            port=monitor_port,
            database_url=database_url,
            chain=chain,
            providers=providers,
            stripe=emulator.url,
            rpc_interval=rpc_interval,
        )
        monitor = start_process(
            musdpay_command("monitor", "--config", str(config)), env={}, log_path=tmp_path / "monitor.log"
        )
        stack.callback(monitor.stop)
        monitor_url = f"http://127.0.0.1:{monitor_port}"
        targets = {API_JOB: f"127.0.0.1:{api_port}", MONITOR_JOB: f"127.0.0.1:{monitor_port}"}
        prometheus = stack.enter_context(
            running_prometheus(
                tmp_path,
                targets,
                alertmanager.url,
                scrape_interval=scrape_interval,
                evaluation_interval=evaluation_interval,
            )
        )
        live = LiveStack(
            chain,
            spectrum,
            public,
            receivers,
            emulator,
            api,
            monitor,
            monitor_url,
            alertmanager,
            prometheus,
            database_url,
        )
        wait_until(lambda: all(live.prometheus.targets_up().values()), timeout=90, what="both targets scraped")
        if real_run:
            exercise(live)
        yield live


def _create(client: httpx.Client, wallet: str, amount: str = "100.00") -> httpx.Response:
    # The dApp sends a sampled W3C traceparent, which the API follows: its latency exemplars carry it.
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    return client.post(
        SESSIONS,
        json={"walletAddress": wallet, "sourceAmount": amount},
        headers={"Idempotency-Key": str(uuid.uuid4()), "traceparent": traceparent},
    )


def exercise(live: LiveStack) -> None:
    """A real run: every family of docs/metrics.md gets samples, errors included."""
    with live.api.client() as client:
        paid = _create(client, Account.create().address)
        assert paid.status_code == 201, paid.text
        rejected = _create(client, Account.create().address, "20.00")
        assert rejected.status_code == 201, rejected.text
        assert _create(client, Account.create().address, "30.00").status_code == 201  # left open
        assert _create(client, "0xnot-an-address").status_code == 422
        assert client.get(f"{SESSIONS}/{uuid.uuid4()}").status_code == 404
        # The primary RPC answers 503 while the delivery is verified: errors, failovers, failed probes.
        live.spectrum.set_faults(http_error_rate=1.0, http_error_status=503)
        live.emulator.advance(paid.json()["stripeSessionId"], "fulfillment_complete")
        live.emulator.advance(rejected.json()["stripeSessionId"], "rejected")

        def verified() -> bool:
            body = client.get(f"{SESSIONS}/{paid.json()['id']}").json()
            return bool((body.get("delivery") or {}).get("status") == "verified")

        wait_until(verified, timeout=60, what="the delivery verified on chain")
        # Stripe fails: the API answers 503 and counts the error.
        live.emulator.set_faults(down=True)
        assert _create(client, Account.create().address).status_code in {502, 503, 504}
        live.emulator.set_faults()
    query = live.prometheus.query
    wait_until(
        lambda: (
            query('sum(musdpay_rpc_errors_total{provider="spectrum"}) > 0')
            and query('sum(musdpay_monitor_rpc_errors_total{provider="spectrum"}) > 0')
            and query("sum(musdpay_rpc_failovers_total) > 0")
        ),
        timeout=30,
        what="RPC errors seen by the API and the monitor",
    )
    live.spectrum.heal()
    wait_until(
        lambda: query('musdpay_monitor_rpc_up{provider="spectrum"} == 1'), timeout=30, what="spectrum healthy again"
    )
    wait_until(
        lambda: (
            query('slo:error_budget_remaining:ratio{slo="api-availability"}')
            and query('musdpay_monitor_pipeline_deliveries{status="verified"} > 0')
            and query("provider:musdpay_rpc_credits:month_projected")
        ),
        timeout=60,
        what="the recording rules and the monitor's database reads",
    )


_lock = threading.Lock()
_users = 0
_stack: ExitStack | None = None
_live: LiveStack | None = None


@contextmanager
def shared_stack(tmp_path: Path) -> Iterator[LiveStack]:
    """One live stack for every user in the test session (tests/alerts and tests/dashboards), stopped when the
    last user is done."""
    global _users, _stack, _live
    with _lock:
        if _live is None:
            stack = ExitStack()
            try:
                _live = stack.enter_context(running_live_stack(tmp_path))
            except BaseException:
                stack.close()
                raise
            _stack = stack
        _users += 1
        live = _live
    try:
        yield live
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _stack is not None:
                _stack.close()
                _stack, _live = None, None


def scrape(url: str) -> str:
    return httpx.get(url, timeout=10).text


def metric_names(*texts: str) -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for text in texts:
        for family in text_string_to_metric_families(text):
            names |= {sample.name for sample in family.samples}
    return names
