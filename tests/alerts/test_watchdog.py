"""The watcher of the watchers: a real Prometheus with the shipped rules fires Watchdog, a real Alertmanager with the
rendered alertmanager.yml posts it to the capture receivers' heartbeat (a dead man's switch) again and again, and
when Prometheus stops the heartbeats stop and the receiver reports them stale within its window.

Timings are shortened, not changed in kind: evaluation every 1 s, Prometheus's resend delay 1 s (so Alertmanager
keeps the alert 4 s after the last send instead of 4 min), the Watchdog route's repeat 1 s (shipped: 1 min) and a
stale window of 3 s (shipped: 180 s, three repeats)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.receivers.server import ReceiversConfig, RunningReceivers, running_receivers
from tests.alerts.support import SMTP_LOGIN, Alertmanager, running_alertmanager, running_prometheus
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

STALE_AFTER = 3.0


@pytest.fixture
def receivers() -> Iterator[RunningReceivers]:
    config = ReceiversConfig(smtp_credentials=SMTP_LOGIN, heartbeat_stale_after=STALE_AFTER)
    with running_receivers(config) as running:
        yield running


@pytest.fixture
def alertmanager(tmp_path: Path, receivers: RunningReceivers) -> Iterator[Alertmanager]:
    with running_alertmanager(tmp_path, receivers, fast=True, heartbeat_interval="1s") as manager:
        yield manager


def test_heartbeats_arrive_while_prometheus_runs_and_go_stale_when_it_stops(
    tmp_path: Path, receivers: RunningReceivers, alertmanager: Alertmanager
) -> None:
    flags = ("--rules.alert.resend-delay=1s",)
    with running_prometheus(tmp_path, {}, alertmanager.url, flags=flags) as prometheus:
        beating = wait_until(
            lambda: (state := receivers.heartbeat())["count"] >= 3 and state,
            timeout=60,
            interval=0.25,
            what="three heartbeats from Alertmanager",
        )
        assert beating["stale"] is False
        assert beating["alertnames"] == ["Watchdog"]
        assert beating["rejected"] == 0, beating["lastErrors"]
        # The Watchdog reached the heartbeat alone: no person was notified of it.
        assert [item for item in receivers.received() if "Watchdog" in str(item["payload"])] == []
        assert prometheus.query('ALERTS{alertname="Watchdog",alertstate="firing"}')
        prometheus.process.stop()
        stopped = time.monotonic()
    stale = wait_until(
        lambda: (state := receivers.heartbeat())["stale"] and state,
        timeout=30,
        interval=0.25,
        what="the heartbeat reported stale after Prometheus stopped",
    )
    took = time.monotonic() - stopped
    # Alertmanager holds the alert 4 resend delays (4 s) after Prometheus's last send, then STALE_AFTER passes.
    assert took < 4 + STALE_AFTER + 10, took
    assert stale["count"] >= beating["count"]
    # Stale means no heartbeat since: the last one is at least the window old.
    assert receivers.heartbeat_state().last_seen is not None
    assert receivers.heartbeat()["count"] == stale["count"]
