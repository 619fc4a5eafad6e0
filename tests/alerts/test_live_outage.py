"""The issue's "done when": an outage of the primary RPC in the local stack pages PagerDuty and posts to Slack with
a runbook link, and both resolve when it heals. Real processes throughout: anvil, the RPC fault proxy, the API,
the monitor, Prometheus with the generated rules, Alertmanager with alerts/alertmanager.yml and its templates,
and the capture receivers (which validate each payload against the service's format). Scrape and evaluation
intervals and Alertmanager's group timings are 1 s; the rule (`for: 30s`) is the shipped one."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.alerts.livestack import LiveStack
from tests.alerts.support import PAGERDUTY_KEY
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _new(live: LiveStack, kind: str, seen: set[int], predicate: Any) -> list[dict[str, Any]]:
    return [item for item in live.receivers.received(kind) if item["id"] not in seen and predicate(item)]


def _pd(action: str) -> Any:
    def match(item: dict[str, Any]) -> bool:
        payload = item["payload"]
        return bool(payload.get("event_action") == action and "RpcProviderDown" in str(payload))

    return match


def test_primary_rpc_outage_pages_pagerduty_and_slack_then_resolves(live_stack: LiveStack) -> None:
    live = live_stack
    seen = {item["id"] for item in live.receivers.received()}
    live.spectrum.set_faults(down=True)
    started = time.monotonic()
    try:
        [page] = wait_until(
            lambda: _new(live, "pagerduty", seen, _pd("trigger")), timeout=120, what="the PagerDuty page"
        )
        fired_after = time.monotonic() - started
        slack = wait_until(
            lambda: _new(live, "slack", seen, lambda item: "RpcProviderDown" in str(item["payload"])),
            timeout=30,
            what="the Slack message",
        )
    finally:
        live.spectrum.heal()
    # PagerDuty Events v2, as PagerDuty would accept it, with what an on-call needs.
    assert page["valid"], page["errors"]
    event = page["payload"]
    assert event["routing_key"] == PAGERDUTY_KEY
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["summary"].startswith("[FIRING:1] RpcProviderDown spectrum (critical)")
    assert event["payload"]["class"] == "RpcProviderDown"
    assert event["payload"]["component"] == "rpc"
    details = event["payload"]["custom_details"]
    assert details["runbook_url"].endswith("/docs/runbooks/RpcProviderDown.md")
    assert details["dashboard_url"].endswith("/d/musdpay-rpc")
    assert "Every probe of spectrum" in details["description"]
    assert {link["text"]: link["href"] for link in event["links"]}["Runbook"] == details["runbook_url"]
    # Slack: the summary, the description with the provider, the runbook and dashboard links.
    message = slack[0]
    assert message["valid"], message["errors"]
    attachment = message["payload"]["attachments"][0]
    assert attachment["title"].startswith("[FIRING:1] RpcProviderDown spectrum (critical)")
    assert attachment["color"] == "danger"
    assert "Primary RPC provider spectrum is down" in attachment["text"]
    assert "/docs/runbooks/RpcProviderDown.md|Runbook>" in attachment["text"]
    # Well within the 90 s target even though these intervals are short; bench/alerting.py measures the shipped ones.
    assert fired_after < 90, fired_after

    [resolve] = wait_until(
        lambda: _new(live, "pagerduty", seen, _pd("resolve")), timeout=60, what="the PagerDuty resolve"
    )
    assert resolve["valid"], resolve["errors"]
    assert resolve["payload"]["dedup_key"] == event["dedup_key"]
    resolved = wait_until(
        lambda: _new(live, "slack", seen, lambda item: "[RESOLVED] RpcProviderDown" in str(item["payload"])),
        timeout=30,
        what="the Slack resolve",
    )
    assert resolved[0]["payload"]["attachments"][0]["color"] == "good"
    # Nothing invalid was ever sent to any receiver.
    assert [item for item in live.receivers.received() if not item["valid"]] == []
