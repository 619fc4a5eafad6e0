"""A Slack receiver answering 500 for a while (issue 15.5): the real Alertmanager, with the shipped routing,
retries, and the notification arrives once Slack is healed, once.

The capture receivers' fault control (sandbox/receivers/faults.py) makes Slack answer 500 and counts the refused
requests; the alert is posted to Alertmanager directly, as Prometheus would. Group timings are shortened to 1 s
(fast=True), so Alertmanager's retries come within seconds, not minutes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.receivers.server import RunningReceivers, running_receivers
from tests.alerts.support import running_alertmanager
from tests.support.chaos import Stopwatch, report
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

REFUSED_AT_LEAST = 3  # Slack refused this many requests before it heals: Alertmanager did retry


@pytest.fixture
def receivers() -> Iterator[RunningReceivers]:
    with running_receivers() as running:
        yield running


def _alert(alertname: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": alertname, "severity": "warning", "service": "payment-api"},
        "annotations": {
            "summary": f"{alertname} summary",
            "description": f"{alertname}: the chaos suite's alert",
            "runbook_url": f"https://example.com/docs/runbooks/{alertname}.md",
        },
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=10)).isoformat(),
        "generatorURL": "http://prometheus.test/graph",
    }


def _slack_messages(receivers: RunningReceivers, alertname: str) -> int:
    return sum(1 for item in receivers.received("slack") if alertname in str(item["payload"]))


def _failed_notifications(url: str) -> float:
    """Alertmanager's own count of its Slack requests that failed (its /metrics): each one it retried."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    pattern = r'^alertmanager_notification_requests_failed_total\{[^}]*integration="slack"[^}]*\} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


def test_slack_answering_500_is_retried_and_notified_once_healed(tmp_path: Path, receivers: RunningReceivers) -> None:
    receivers.set_faults(slack=500)
    with running_alertmanager(tmp_path, receivers, fast=True) as manager:
        outage = Stopwatch()
        manager.post([_alert("ChaosSlackOutage")])
        wait_until(
            lambda: receivers.faults()["refused"].get("slack", 0) >= REFUSED_AT_LEAST,
            timeout=30,
            interval=0.1,
            what=f"Alertmanager to try Slack {REFUSED_AT_LEAST} times",
        )
        refused = receivers.faults()["refused"]["slack"]
        during = _slack_messages(receivers, "ChaosSlackOutage")
        discord = wait_until(lambda: receivers.received("discord"), timeout=30, what="the healthy receiver")
        receivers.set_faults()  # Slack is back
        healed = Stopwatch()
        wait_until(lambda: _slack_messages(receivers, "ChaosSlackOutage") >= 1, timeout=30, what="the notification")
        recovered_seconds = healed.elapsed()
        # A later alert through the same route reaches Slack too: Alertmanager has moved on, and the first one
        # must still be there exactly once (no repeat of a notification that finally went through).
        manager.post([_alert("ChaosSlackAfter")])
        wait_until(lambda: _slack_messages(receivers, "ChaosSlackAfter") >= 1, timeout=30, what="the later alert")
        delivered = _slack_messages(receivers, "ChaosSlackOutage")
        failed = _failed_notifications(manager.url)
        refused_total = receivers.faults()["refused"]["slack"]
    figures = {
        "refused_by_slack": refused,
        "alertmanager_failed_requests": failed,
        "received_during_outage": during,
        "outage_seconds": round(outage.elapsed() - recovered_seconds, 3),
        "notified_after_heal_seconds": recovered_seconds,
        "delivered": delivered,
        "lost": 0 if delivered else 1,
        "duplicated": max(0, delivered - 1),
    }
    report(tmp_path, "slack-outage", figures)
    assert during == 0  # a refused request is not a notification
    assert discord  # the other receiver of the route was notified all along
    assert failed == refused_total >= REFUSED_AT_LEAST  # Alertmanager counted each refusal, and tried again
    assert delivered == 1
