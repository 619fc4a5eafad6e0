"""The monitor's counters (and the labelled histograms its dashboards read) exist at 0 as soon as its probes are
built, and failing probes emit no series outside them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from monitor.app import Monitor
from monitor.metrics import MonitorMetrics
from monitor.scheduler import ProbeFailed
from payment.chain.errors import RpcErrorKind
from payment.onramp.stripe_gateway import StripeErrorType
from tests.monitor.support import config_of
from tests.support.services import free_port

Series = set[tuple[str, tuple[tuple[str, str], ...]]]


def _monitor(tmp_path: Path) -> Monitor:
    closed = free_port()
    settings = {
        "database_url": f"sqlite:///{tmp_path / 'missing' / 'payments.sqlite'}",  # its directory does not exist
        "rpc_providers": f"spectrum=http://127.0.0.1:{closed}/key,public=http://127.0.0.1:{closed}",
        "stripe_secret_key": "sk_test_initialise",
        "stripe_api_base": f"http://127.0.0.1:{closed}",
    }
    config = config_of(settings, rpc={}, database={}, stripe={})
    return Monitor(config, metrics=MonitorMetrics(CollectorRegistry(), process_collectors=False))


def _series(metrics: MonitorMetrics) -> Series:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in metrics.registry.collect()
        if family.type in ("counter", "histogram")
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_known_series_exist_at_zero_once_the_probes_are_built(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path)
    try:
        text = generate_latest(monitor.metrics.registry).decode()
    finally:
        asyncio.run(monitor.aclose())
    for provider in ("spectrum", "public"):
        for outcome in ("success", "failure"):
            assert f'musdpay_monitor_rpc_probes_total{{outcome="{outcome}",provider="{provider}"}} 0.0' in text
        for kind in set(RpcErrorKind) - {RpcErrorKind.no_provider}:
            assert f'musdpay_monitor_rpc_errors_total{{kind="{kind.value}",provider="{provider}"}} 0.0' in text
        for method in ("eth_chainId", "eth_blockNumber"):
            assert f'musdpay_monitor_rpc_requests_total{{method="{method}",provider="{provider}"}} 0.0' in text
        assert f'musdpay_monitor_rpc_latency_seconds_count{{provider="{provider}"}} 0.0' in text
        assert f'musdpay_monitor_rpc_credits_used_total{{provider="{provider}"}} 0.0' in text
    assert 'musdpay_monitor_rpc_errors_total{kind="no_provider"' not in text  # a probe asks one provider
    for probe, target in (("rpc", "spectrum"), ("rpc", "public"), ("database", "primary"), ("stripe", "stripe")):
        labels = f'probe="{probe}",target="{target}"'
        for outcome in ("failure", "success", "timeout"):
            assert f'musdpay_monitor_probe_runs_total{{outcome="{outcome}",{labels}}} 0.0' in text
        for reason in ("missed", "overlap"):
            line = f'musdpay_monitor_probe_skipped_total{{probe="{probe}",reason="{reason}",target="{target}"}} 0.0'
            assert line in text
        assert f"musdpay_monitor_probe_duration_seconds_count{{{labels}}} 0.0" in text
    for kind in ("connect", "query", "timeout"):
        assert f'musdpay_monitor_db_errors_total{{database="primary",kind="{kind}"}} 0.0' in text
    assert 'kind="not_a_replica"' not in text  # no replica configured
    assert 'musdpay_monitor_db_connect_duration_seconds_count{database="primary"} 0.0' in text
    for operation in ("balance", "list_refunds", "list_disputes"):
        for error_type in StripeErrorType:
            line = f'musdpay_monitor_stripe_errors_total{{error_type="{error_type.value}",operation="{operation}"}} 0.0'
            assert line in text
        assert f'musdpay_monitor_stripe_request_duration_seconds_count{{operation="{operation}"}} 0.0' in text
    # Probes not configured have no series; nor do Stripe's own statuses and reasons.
    assert "musdpay_monitor_reverify_runs_total{" not in text
    assert "musdpay_monitor_stripe_refunds_total{" not in text


def test_failing_probes_emit_no_series_outside_the_initialised_ones(tmp_path: Path) -> None:
    """Every probe fails here (nothing listens, no database directory): what each failure records is already
    there."""
    monitor = _monitor(tmp_path)

    async def run_each_once() -> list[str]:
        reasons = []
        for job in monitor.jobs:
            try:
                await job.run()
            except ProbeFailed as failed:
                reasons.append(f"{job.id}:{failed.reason}")
        return reasons

    async def scenario() -> list[str]:
        try:
            return await run_each_once()
        finally:
            await monitor.aclose()

    before = _series(monitor.metrics)
    reasons = asyncio.run(scenario())
    assert sorted(reasons) == [
        "database:primary:connect",
        "rpc:public:connect",
        "rpc:spectrum:connect",
        "stripe:stripe:connection",
    ]
    assert _series(monitor.metrics) == before
