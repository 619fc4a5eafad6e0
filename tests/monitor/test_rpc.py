"""RPC probes against anvil behind two fault proxies ("spectrum" and "public"): what each fault looks like."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import generate_latest

from tests.monitor.conftest import SPECTRUM_KEY, Chain
from tests.monitor.support import RunningMonitor, config_of, running_monitor

pytestmark = pytest.mark.integration

INTERVAL = 0.2
TIMEOUT = 1.0  # the probe; each call gets half
RPC: dict[str, Any] = {
    "interval_seconds": INTERVAL,
    "jitter_seconds": 0.02,
    "timeout_seconds": TIMEOUT,
    "stall_after_seconds": 0.5,
    "providers": {
        "spectrum": {"sla_target_ratio": 0.999, "credits": {"eth_blockNumber": 2}, "monthly_credit_quota": 1e6},
        "public": {"sla_target_ratio": 0.95},
    },
}
# Two intervals, plus the call timeout for faults that only show when it expires, plus slack for 2 busy cores.
DETECTION = 2 * INTERVAL + TIMEOUT / 2 + 1.0


def errors(running: RunningMonitor, provider: str, kind: str) -> float:
    return running.count("musdpay_monitor_rpc_errors_total", provider=provider, kind=kind)


def successes(running: RunningMonitor, provider: str) -> float:
    return running.count("musdpay_monitor_rpc_probes_total", provider=provider, outcome="success")


def test_healthy_providers_report_head_chain_availability_and_credits(chain: Chain) -> None:
    with running_monitor(config_of(chain.settings(), rpc=RPC)) as running:
        running.wait(lambda: successes(running, "spectrum") >= 3 and successes(running, "public") >= 3)
        head = chain.chain.block_number()
        for provider in ("spectrum", "public"):
            assert running.value("musdpay_monitor_rpc_up", provider=provider) == 1
            assert running.value("musdpay_monitor_rpc_chain_id_match", provider=provider) == 1
            assert running.value("musdpay_monitor_rpc_chain_id", provider=provider) == chain.chain.chain_id
            assert running.value("musdpay_monitor_rpc_head_block", provider=provider) == head
            assert running.value("musdpay_monitor_rpc_head_lag_blocks", provider=provider) == 0
            assert running.value("musdpay_monitor_rpc_head_stalled", provider=provider) == 0
            assert running.count("musdpay_monitor_rpc_latency_seconds_count", provider=provider) >= 3
        assert running.value("musdpay_monitor_rpc_sla_target_ratio", provider="spectrum") == 0.999
        assert running.value("musdpay_monitor_rpc_sla_target_ratio", provider="public") == 0.95
        assert running.value("musdpay_monitor_probe_success", probe="rpc", target="spectrum") == 1

        # Requests by method, and credits from the table (eth_chainId 1, eth_blockNumber 2 on spectrum).
        text = generate_latest(running.registry).decode()
        chain_ids = running.count("musdpay_monitor_rpc_requests_total", provider="spectrum", method="eth_chainId")
        heads = running.count("musdpay_monitor_rpc_requests_total", provider="spectrum", method="eth_blockNumber")
        credits = running.count("musdpay_monitor_rpc_credits_used_total", provider="spectrum")
        assert heads >= 3
        assert credits in {chain_ids + 2 * heads, chain_ids + 2 * heads + 1, chain_ids + 2 * heads + 2}
        assert running.value("musdpay_monitor_rpc_credit_cost", provider="spectrum", method="eth_blockNumber") == 2
        assert running.value("musdpay_monitor_rpc_month_credit_quota", provider="spectrum") == 1e6
        assert (running.value("musdpay_monitor_rpc_month_credits_projected", provider="spectrum") or 0) > 0
        assert SPECTRUM_KEY not in text  # provider URLs carry keys: only names are labels


def test_added_latency_is_measured_within_two_milliseconds(chain_processes: Chain) -> None:
    chain = chain_processes
    chain.spectrum.set_faults(latency_ms=100, methods=["eth_blockNumber"])
    with running_monitor(config_of(chain.settings(), rpc=RPC)) as running:
        samples: dict[str, list[float]] = {"spectrum": [], "public": []}
        seen = {provider: successes(running, provider) for provider in samples}
        deadline = time.monotonic() + 30
        while min(len(values) for values in samples.values()) < 20:
            assert time.monotonic() < deadline, samples
            for provider, values in samples.items():
                count = successes(running, provider)
                if count > seen[provider]:  # a new run finished: its latency is in the gauge until the next
                    seen[provider] = count
                    latency = running.value("musdpay_monitor_rpc_last_latency_seconds", provider=provider)
                    assert latency is not None
                    values.append(latency)
            time.sleep(0.01)
        # The fastest probe of each: on two shared cores, scheduling noise only ever adds time, so the minimum
        # is each provider's own latency with the least noise in it (medians wander by milliseconds under load).
        added = min(samples["spectrum"]) - min(samples["public"])
        assert abs(added - 0.100) <= 0.002, samples
        assert statistics.median(samples["spectrum"]) >= 0.100


@contextmanager
def garbage_provider() -> Iterator[str]:
    """An endpoint that answers every POST with an HTML page (a misconfigured gateway), on a free port."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b"<html><body>502 Bad Gateway</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("http_5xx", {"http_error_rate": 1.0, "http_error_status": 503}),
    ("http_429", {"rate_limit_rate": 1.0}),
    ("jsonrpc_error", {"rpc_error_rate": 1.0}),
    ("timeout", {"timeout_rate": 1.0, "timeout_ms": 5000}),
    ("connect", {"down": True}),
    ("chain_id_mismatch", {"chain_id": 999}),
]


def test_each_error_class_is_classified_and_the_monitor_keeps_running(chain: Chain) -> None:
    with garbage_provider() as garbage:
        settings = chain.settings()
        settings["rpc_providers"] += f",garbage={garbage}"
        with running_monitor(config_of(settings, rpc=RPC)) as running:
            running.wait(lambda: successes(running, "spectrum") >= 1 and successes(running, "public") >= 1)
            # A provider answering HTML is an invalid response, probe after probe.
            running.wait(lambda: errors(running, "garbage", "invalid_response") >= 2)
            assert running.value("musdpay_monitor_rpc_up", provider="garbage") == 0

            for kind, faults in FAULTS:
                before = errors(running, "spectrum", kind)
                public_before = successes(running, "public")
                chain.spectrum.set_faults(**faults)
                started = time.monotonic()
                running.wait(lambda k=kind, b=before: errors(running, "spectrum", k) > b, what=kind)  # type: ignore[misc]
                assert time.monotonic() - started <= DETECTION, kind
                assert running.value("musdpay_monitor_rpc_up", provider="spectrum") == 0
                if kind == "chain_id_mismatch":
                    assert running.value("musdpay_monitor_rpc_chain_id", provider="spectrum") == 999
                    assert running.value("musdpay_monitor_rpc_chain_id_match", provider="spectrum") == 0
                # The other provider is probed all along.
                running.wait(lambda b=public_before: successes(running, "public") > b, what="public")  # type: ignore[misc]
                chain.spectrum.heal()
                running.wait(lambda: running.value("musdpay_monitor_rpc_up", provider="spectrum") == 1, what="heal")

            failures = running.count("musdpay_monitor_rpc_probes_total", provider="spectrum", outcome="failure")
            assert failures >= len(FAULTS)
            # Every probe of every job is still scheduled and answering.
            running.wait_runs("rpc", "public", 2, outcome="success")
            running.wait_runs("rpc", "spectrum", 2, outcome="success")
            assert (
                running.count("musdpay_monitor_probe_runs_total", probe="rpc", target="spectrum", outcome="timeout")
                == 0
            )


def test_a_stalled_head_shows_as_lag_and_stall(chain: Chain) -> None:
    with running_monitor(config_of(chain.settings(), rpc=RPC)) as running:
        running.wait(lambda: successes(running, "spectrum") >= 1 and successes(running, "public") >= 1)
        chain.spectrum.set_faults(stall=True)
        chain.chain.mine(3)
        started = time.monotonic()
        running.wait(
            lambda: (running.value("musdpay_monitor_rpc_head_lag_blocks", provider="spectrum") or 0) >= 3, what="lag"
        )
        assert time.monotonic() - started <= DETECTION
        running.wait(
            lambda: running.value("musdpay_monitor_rpc_head_stalled", provider="spectrum") == 1,
            what="stalled",
            timeout=RPC["stall_after_seconds"] + DETECTION,
        )
        assert (running.value("musdpay_monitor_rpc_head_lag_seconds", provider="spectrum") or 0) > 0
        assert (running.value("musdpay_monitor_rpc_head_age_seconds", provider="spectrum") or 0) >= 0.5
        assert running.value("musdpay_monitor_rpc_head_lag_blocks", provider="public") == 0
        assert running.value("musdpay_monitor_rpc_head_stalled", provider="public") == 0
        assert running.value("musdpay_monitor_rpc_up", provider="spectrum") == 1  # answering, just behind

        chain.spectrum.heal()
        running.wait(lambda: running.value("musdpay_monitor_rpc_head_lag_blocks", provider="spectrum") == 0)
        running.wait(lambda: running.value("musdpay_monitor_rpc_head_stalled", provider="spectrum") == 0)
