"""The capture receivers accept what Slack, Discord, PagerDuty and SMTP accept, refuse what they refuse (with
their status codes), keep everything, and list it on a page; and, as a dead man's switch, count Alertmanager's
Watchdog heartbeats and say when they stop."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from sandbox.receivers.formats import (
    validate_alertmanager_webhook,
    validate_discord,
    validate_pagerduty,
    validate_slack,
)
from sandbox.receivers.server import ReceiversConfig, RunningReceivers, running_receivers
from tests.support.waiting import wait_until

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def receivers() -> Iterator[RunningReceivers]:
    with running_receivers(ReceiversConfig(smtp_credentials=("alerts", "secret"))) as running:
        yield running


def test_slack_incoming_webhook(receivers: RunningReceivers) -> None:
    ok = httpx.post(receivers.slack_url, json={"text": "hello", "attachments": [{"fallback": "f", "title": "t"}]})
    assert (ok.status_code, ok.text) == (200, "ok")
    empty = httpx.post(receivers.slack_url, json={"channel": "#x"})
    assert (empty.status_code, empty.text) == (400, "no_text")
    bad = httpx.post(receivers.slack_url, json={"attachments": [{"title": "no fallback"}]})
    assert (bad.status_code, bad.text) == (400, "invalid_payload")
    form = httpx.post(receivers.slack_url, content=b"text=hi", headers={"Content-Type": "text/plain"})
    assert form.status_code == 400
    received = receivers.received("slack")
    assert [item["valid"] for item in received] == [True, False, False, False]
    assert received[0]["payload"]["text"] == "hello"


def test_discord_webhook(receivers: RunningReceivers) -> None:
    embed = {"title": "t", "description": "d", "color": 0xFF0000}
    assert httpx.post(receivers.discord_url, json={"embeds": [embed]}).status_code == 204
    waited = httpx.post(receivers.discord_url + "?wait=true", json={"content": "c"})
    assert waited.status_code == 200
    assert waited.json()["content"] == "c"
    too_long = httpx.post(receivers.discord_url, json={"content": "x" * 2001})
    assert too_long.status_code == 400
    assert too_long.json()["code"] == 50035
    assert httpx.post(receivers.discord_url, json={}).status_code == 400
    assert [item["valid"] for item in receivers.received("discord")] == [True, True, False, False]


def test_pagerduty_events_v2(receivers: RunningReceivers) -> None:
    trigger = {
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": "abc",
        "payload": {"summary": "s", "source": "musdpay", "severity": "critical"},
        "links": [{"href": "https://example.com/runbook", "text": "Runbook"}],
    }
    response = httpx.post(receivers.pagerduty_url, json=trigger)
    assert response.status_code == 202
    assert response.json() == {"status": "success", "message": "Event processed", "dedup_key": "abc"}
    resolve = httpx.post(
        receivers.pagerduty_url, json={"routing_key": KEY, "event_action": "resolve", "dedup_key": "abc"}
    )
    assert resolve.status_code == 202
    bad = httpx.post(receivers.pagerduty_url, json={**trigger, "routing_key": "short", "payload": {"summary": "s"}})
    assert bad.status_code == 400
    assert bad.json()["status"] == "invalid event"
    assert any("routing_key" in error for error in bad.json()["errors"])
    assert any("severity" in error for error in bad.json()["errors"])


def test_validators_name_each_problem() -> None:
    assert validate_slack({"text": "x" * 40_001}) == ["text is 40001 characters (at most 40000)"]
    assert "embeds must be a list of at most 10 embeds" in validate_discord({"embeds": [{}] * 11})
    assert validate_discord({"embeds": [{"title": "t", "description": "x" * 5000}]}) == [
        "embeds[0].description is 5000 characters (at most 4096)"
    ]
    three = [{"title": "t", "description": "x" * 2500}] * 3
    assert validate_discord({"embeds": three}) == ["the embeds hold 7503 characters (at most 6000)"]
    assert validate_pagerduty({"routing_key": KEY, "event_action": "resolve"}) == ["dedup_key is required to resolve"]


def test_smtp_with_auth(receivers: RunningReceivers) -> None:
    message = EmailMessage()
    message["From"] = "alerts@musdpay.test"
    message["To"] = "oncall@musdpay.test"
    message["Subject"] = "[FIRING:1] DatabaseDown"
    message["Date"] = formatdate()
    message.set_content("text body")
    message.add_alternative("<p>html body</p>", subtype="html")
    with smtplib.SMTP(receivers.smtp_host, receivers.smtp_port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("alerts", "wrong")
        client.login("alerts", "secret")
        client.send_message(message)
    emails = wait_until(lambda: receivers.received("email"), timeout=5, what="the email")
    assert emails[0]["valid"]
    payload = emails[0]["payload"]
    assert payload["subject"] == "[FIRING:1] DatabaseDown"
    assert payload["to"] == ["oncall@musdpay.test"]
    assert payload["authUser"] == "alerts"
    assert "html body" in payload["html"]


def test_page_lists_what_was_received_and_clear_forgets_it(receivers: RunningReceivers) -> None:
    httpx.post(receivers.slack_url, json={"text": "<b>escaped</b>"})
    page = httpx.get(receivers.url + "/")
    assert page.status_code == 200
    assert "&lt;b&gt;escaped&lt;/b&gt;" in page.text
    receivers.clear()
    assert receivers.received() == []
    assert httpx.get(receivers.url + "/api/received", params={"kind": "fax"}).status_code == 400


def _alertmanager_payload(status: str = "firing") -> dict[str, Any]:
    """What Alertmanager 0.25's webhook sends (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)."""
    alert = {
        "status": status,
        "labels": {"alertname": "Watchdog", "severity": "none", "service": "monitoring"},
        "annotations": {"summary": "The alerting pipeline is alive (this alert always fires)"},
        "startsAt": "2026-01-01T00:00:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-01-01T00:10:00Z",
        "generatorURL": "http://prometheus.test/graph?g0.expr=vector%281%29",
        "fingerprint": "e2a2a7c3b9f0a1d4",
    }
    return {
        "receiver": "heartbeat",
        "status": status,
        "alerts": [alert],
        "groupLabels": {"alertname": "Watchdog"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager.test",
        "version": "4",
        "groupKey": '{}/{alertname="Watchdog"}:{alertname="Watchdog"}',
        "truncatedAlerts": 0,
    }


def test_heartbeat_counts_firing_watchdogs_refuses_other_payloads_and_keeps_them_apart(
    receivers: RunningReceivers,
) -> None:
    assert receivers.heartbeat()["count"] == 0
    ok = httpx.post(receivers.heartbeat_url, json=_alertmanager_payload())
    assert (ok.status_code, ok.json()) == (200, {"status": "ok", "heartbeat": True})
    resolved = httpx.post(receivers.heartbeat_url, json=_alertmanager_payload("resolved"))
    assert (resolved.status_code, resolved.json()["heartbeat"]) == (200, False)  # a resolve is no heartbeat
    bad = httpx.post(receivers.heartbeat_url, json={"version": "3", "status": "up", "alerts": []})
    assert bad.status_code == 400
    assert 'version must be "4"' in bad.json()["errors"]
    state = receivers.heartbeat()
    assert state["count"] == 1
    assert state["stale"] is False
    assert state["alertnames"] == ["Watchdog"]
    assert state["lastSeen"] is not None
    assert state["lastResolvedAt"] is not None
    assert state["rejected"] == 1
    assert receivers.received() == [], "heartbeats are not notifications"
    page = httpx.get(receivers.url + "/")
    assert "Heartbeat" in page.text
    assert "alive" in page.text


def test_heartbeat_goes_stale_when_none_arrives_within_the_window() -> None:
    with running_receivers(ReceiversConfig(heartbeat_stale_after=0.5)) as running:
        assert httpx.post(running.heartbeat_url, json=_alertmanager_payload()).status_code == 200
        assert running.heartbeat()["stale"] is False
        stale = wait_until(lambda: running.heartbeat()["stale"], timeout=5, interval=0.1, what="the heartbeat stale")
        assert stale is True
        assert "STALE" in httpx.get(running.url + "/").text
        httpx.post(running.heartbeat_url, json=_alertmanager_payload())
        state = running.heartbeat()
        assert (state["stale"], state["count"]) == (False, 2)


def test_alertmanager_webhook_validator_names_each_problem() -> None:
    assert validate_alertmanager_webhook(_alertmanager_payload()) == []
    assert validate_alertmanager_webhook(_alertmanager_payload("resolved")) == []
    payload = _alertmanager_payload()
    payload["alerts"][0] = {**payload["alerts"][0], "startsAt": "yesterday", "labels": {}}
    del payload["groupKey"]
    assert validate_alertmanager_webhook(payload) == [
        "groupKey must be a string",
        "alerts[0].labels must be an object with an alertname",
        "alerts[0].startsAt must be an RFC 3339 timestamp",
    ]
    assert validate_alertmanager_webhook({**_alertmanager_payload(), "alerts": []}) == [
        "alerts must be a non-empty list"
    ]
    assert validate_alertmanager_webhook([]) == ["the body must be a JSON object"]
