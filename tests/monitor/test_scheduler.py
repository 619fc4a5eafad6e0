"""The schedule itself: timeouts, overlap, jitter and lag, with real APScheduler jobs on a real loop."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from monitor.config import JobConfig
from monitor.metrics import MonitorMetrics
from monitor.scheduler import ProbeFailed, ProbeJob, ProbeScheduler


def sample(metrics: MonitorMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {condition}"
        await asyncio.sleep(0.01)


def test_a_hung_probe_times_out_alone_and_others_keep_their_schedule() -> None:
    metrics = MonitorMetrics(CollectorRegistry(), process_collectors=False)
    fast_runs: list[float] = []
    release = asyncio.Event()

    async def hang() -> None:
        await release.wait()  # never set: a probe stuck on a dead connection

    async def fast() -> None:
        fast_runs.append(time.monotonic())

    async def failing() -> None:
        raise ProbeFailed("connect")

    timing = JobConfig(interval_seconds=0.1, jitter_seconds=0.01, timeout_seconds=0.3)
    jobs = [
        ProbeJob("test", "hung", timing, hang),
        ProbeJob("test", "fast", timing, fast),
        ProbeJob("test", "failing", timing, failing),
    ]

    async def scenario() -> None:
        scheduler = ProbeScheduler(metrics, jobs)
        await scheduler.start()
        try:
            await until(lambda: sample(metrics, "musdpay_monitor_probe_runs_total", probe="test", target="hung",
                                       outcome="timeout") >= 2)  # fmt: skip
        finally:
            await scheduler.aclose()

    started = time.monotonic()
    asyncio.run(scenario())
    elapsed = time.monotonic() - started
    # While the hung probe held its slot for 0.3 s at a time, the fast one ran at its own pace.
    assert len(fast_runs) >= int(elapsed / 0.1 * 0.5)
    labels = {"probe": "test", "target": "hung"}
    assert sample(metrics, "musdpay_monitor_probe_success", **labels) == 0
    assert sample(metrics, "musdpay_monitor_probe_skipped_total", **labels, reason="overlap") >= 1
    assert sample(metrics, "musdpay_monitor_probe_success", probe="test", target="fast") == 1
    assert sample(metrics, "musdpay_monitor_probe_last_success_timestamp_seconds", probe="test", target="fast") > 0
    failing_labels = {"probe": "test", "target": "failing"}
    assert sample(metrics, "musdpay_monitor_probe_runs_total", **failing_labels, outcome="failure") >= 2
    assert sample(metrics, "musdpay_monitor_probe_interval_seconds", **failing_labels) == 0.1
    # Lag is observed for every run that started; each is small on an idle loop.
    lags = sample(metrics, "musdpay_monitor_probe_scheduling_lag_seconds_count", probe="test", target="fast")
    assert lags == len(fast_runs)
    assert sample(metrics, "musdpay_monitor_probe_scheduling_lag_seconds_sum", probe="test", target="fast") / lags < 0.1
