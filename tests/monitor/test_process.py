"""`musdpay monitor` as a process: its own /metrics, the treasury's balances, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.monitor.conftest import SPECTRUM_KEY, Chain
from tests.sandbox.chain.support import foreground
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=5).text
    assert SPECTRUM_KEY not in text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_command_serves_metrics_and_stops_cleanly_on_sigterm(chain: Chain, tmp_path: Path) -> None:
    config = tmp_path / "monitor.yml"
    settings = {**chain.settings(), "environment": "test", "database_url": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "settings": settings,
                "rpc": {"interval_seconds": 0.2, "timeout_seconds": 1.0},
                "treasury": {"interval_seconds": 0.2, "address": chain.chain.treasury_address},
                "stripe": {"enabled": False},
                "payments": {"enabled": False},
                "pipeline": {"enabled": False},
                "database": {"enabled": False},
            }
        )
    )
    with foreground(tmp_path, "monitor", "--config", str(config), "--port", "0") as process:
        url = process.start["metricsUrl"]
        assert sorted(process.start["jobs"]) == ["rpc:public", "rpc:spectrum", "treasury:treasury"]

        def ready() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            samples = scrape(url)
            up = samples.get(("musdpay_monitor_rpc_up", (("provider", "spectrum"),)))
            treasury = samples.get(("musdpay_monitor_treasury_balance", (("asset", "musd"),)))
            return samples if up == 1 and treasury is not None else {}

        samples = wait_until(ready, timeout=20, what="the first probes")
        assert samples[("musdpay_monitor_treasury_balance", (("asset", "musd"),))] == 1_000_000
        assert samples[("musdpay_monitor_treasury_balance", (("asset", "btc"),))] == 100
        assert samples[("musdpay_monitor_treasury_minimum_balance", (("asset", "btc"),))] == 0.001
        assert ("process_cpu_seconds_total", ()) in samples  # the monitor's own CPU and memory

        chain.spectrum.set_faults(down=True)
        wait_until(
            lambda: scrape(url).get(("musdpay_monitor_rpc_up", (("provider", "spectrum"),))) == 0,
            timeout=10,
            what="spectrum down in the scrape",
        )

        process.popen.send_signal(signal.SIGTERM)
        assert process.popen.wait(15) == 0, process.stderr()
        assert "Traceback" not in process.stderr()
        assert "monitor stopping" in process.stderr()
