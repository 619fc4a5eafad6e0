"""alerts/alertmanager.yml: renders with the environment and secret files, `amtool check-config` accepts it, each
severity routes to its receivers (`amtool config routes test`), and a real Alertmanager delivers to the capture
receivers, with the inhibitions of the config, and `musdpay alerts test` reaches each receiver alone."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.alertmanager import ALERTMANAGER_SOURCE, RenderError, render
from sandbox.receivers.server import ReceiversConfig, RunningReceivers, running_receivers
from tests.alerts.support import (
    PAGERDUTY_KEY,
    SMTP_LOGIN,
    Alertmanager,
    amtool,
    render_for,
    running_alertmanager,
    write_secrets,
)
from tests.support.services import musdpay_command
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def receivers() -> Iterator[RunningReceivers]:
    with running_receivers(ReceiversConfig(smtp_credentials=SMTP_LOGIN)) as running:
        yield running


@pytest.fixture
def rendered(tmp_path: Path, receivers: RunningReceivers) -> Path:
    config = render_for(receivers, write_secrets(tmp_path / "secrets", receivers), fast=False)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def test_amtool_check_config(rendered: Path) -> None:
    result = subprocess.run([amtool(), "check-config", str(rendered)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=RpcProviderDown", "provider=spectrum"], "critical"),
        (["severity=warning", "alertname=RpcProviderHeadLag"], "warning"),
        (["severity=info", "alertname=Something"], "info"),
        (["alertname=NoSeverity"], "warning"),
        (["severity=critical", "test_receiver=pagerduty"], "test-pagerduty"),
        (["severity=info", "test_receiver=slack"], "test-slack"),
        # The Watchdog goes to the heartbeat alone, whatever else it carries; nothing else goes there.
        (["alertname=Watchdog", "severity=none", "service=monitoring"], "heartbeat"),
        (["alertname=Watchdog", "severity=critical"], "heartbeat"),
        (["alertname=WatchdogLike", "severity=none"], "warning"),
        (["alertname=MonitorMetricAbsent", "severity=warning", "metric=up"], "warning"),
    ],
)
def test_routes_per_severity(rendered: Path, labels: list[str], receiver: str) -> None:
    result = subprocess.run(
        [amtool(), "config", "routes", "test", f"--config.file={rendered}", *labels],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


def test_critical_goes_to_pagerduty_and_slack_warning_to_slack_and_discord_info_to_email(rendered: Path) -> None:
    config = yaml.safe_load(rendered.read_text(encoding="utf-8"))
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    assert set(receivers["critical"]) == {"name", "pagerduty_configs", "slack_configs"}
    assert set(receivers["warning"]) == {"name", "slack_configs", "discord_configs"}
    assert set(receivers["info"]) == {"name", "email_configs"}
    # The heartbeat: a webhook to the dead man's switch, firing notifications only, every minute.
    assert set(receivers["heartbeat"]) == {"name", "webhook_configs"}
    (webhook,) = receivers["heartbeat"]["webhook_configs"]
    assert webhook["url"].endswith("/heartbeat")
    assert webhook["send_resolved"] is False
    (watchdog,) = [route for route in config["route"]["routes"] if route.get("receiver") == "heartbeat"]
    assert watchdog["matchers"] == ['alertname="Watchdog"']
    assert (watchdog["group_interval"], watchdog["repeat_interval"]) == ("1m", "1m")
    assert not watchdog.get("continue")
    assert config["route"]["group_by"] == ["alertname", "service", "provider"]
    # Secrets stay in files Alertmanager reads; only Discord's URL (no *_file field in 0.25) is rendered in.
    assert receivers["critical"]["pagerduty_configs"][0]["routing_key_file"].endswith("/pagerduty_routing_key")
    assert "routing_key" not in receivers["critical"]["pagerduty_configs"][0]
    assert config["global"]["slack_api_url_file"].endswith("/slack_webhook_url")
    assert config["global"]["smtp_auth_password_file"].endswith("/smtp_password")
    assert config["global"]["smtp_require_tls"] is False


def test_render_refuses_a_missing_secret_or_variable(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="discord_webhook_url"):
        render("url: ${secret:discord_webhook_url}", {"MUSDPAY_ALERT_SECRETS_DIR": str(tmp_path)})
    with pytest.raises(RenderError, match="UNSET_VARIABLE"):
        render("url: ${UNSET_VARIABLE}", {})
    assert render("a: ${X:-fallback}\nb: ${Y:-true}", {}) == {"a": "fallback", "b": True}
    # The heartbeat URL has a default (the local capture receivers) and comes from the environment.
    env = {"MUSDPAY_ALERT_SECRETS_DIR": str(tmp_path)}
    (tmp_path / "discord_webhook_url").write_text("https://discord.test/x", encoding="utf-8")
    shipped = ALERTMANAGER_SOURCE.read_text(encoding="utf-8")

    def heartbeat_url(config: dict[str, Any]) -> str:
        receiver = next(r for r in config["receivers"] if r["name"] == "heartbeat")
        return str(receiver["webhook_configs"][0]["url"])

    assert heartbeat_url(render(shipped, env)) == "http://127.0.0.1:9300/heartbeat"
    ping = "https://hc-ping.com/0f2c3c1e-6a57-4c1e-9b5e-3a1f2d4c5b6a"
    assert heartbeat_url(render(shipped, {**env, "MUSDPAY_ALERT_HEARTBEAT_URL": ping})) == ping
    # A value can never change the document's structure.
    assert render("a: ${X}", {"X": "b: c\nd: [e]"}) == {"a": "b: c\nd: [e]"}


def _alert(alertname: str, severity: str, **labels: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": alertname, "severity": severity, **labels},
        "annotations": {
            "summary": f"{alertname} summary",
            "description": f"{alertname} description with value 42",
            "runbook_url": f"https://example.com/docs/runbooks/{alertname}.md",
            "dashboard_url": "http://localhost:3000/d/musdpay-rpc",
        },
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
        "generatorURL": "http://prometheus.test/graph",
    }


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory, receivers: RunningReceivers) -> Iterator[Alertmanager]:
    with running_alertmanager(tmp_path_factory.mktemp("am"), receivers, fast=True) as manager:
        yield manager


def _state(manager: Alertmanager, alertname: str, **labels: str) -> dict[str, Any]:
    for alert in manager.alerts():
        if alert["labels"]["alertname"] == alertname and all(alert["labels"].get(k) == v for k, v in labels.items()):
            status: dict[str, Any] = alert["status"]
            return status
    raise AssertionError(f"{alertname} {labels} not in Alertmanager")


def test_inhibitions(alertmanager: Alertmanager) -> None:
    alertmanager.post(
        [
            _alert("PaymentApiDown", "critical", service="payment-api", instance="a"),
            _alert("PaymentApiHighLatency", "warning", service="payment-api", route="/x"),
            _alert("RpcProviderDown", "critical", service="rpc", provider="spectrum", target="spectrum"),
            _alert("RpcProviderHeadLag", "warning", service="rpc", provider="spectrum"),
            _alert("RpcProviderHeadLag", "warning", service="rpc", provider="public"),
            _alert("MonitorProbeFailing", "warning", service="monitoring", probe="rpc", target="spectrum"),
            _alert("PaymentApiAvailabilityBudgetBurn", "critical", service="x", slo="api-availability", burn="page"),
            _alert("PaymentApiAvailabilityBudgetBurn", "warning", service="x", slo="api-availability", burn="ticket"),
            _alert("PaymentApiLatencyBudgetBurn", "warning", service="x", slo="api-latency", burn="ticket"),
        ]
    )

    def settled() -> bool:
        return len(alertmanager.alerts()) == 9

    wait_until(settled, timeout=10, what="Alertmanager to hold the alerts")
    suppressed = {
        ("PaymentApiHighLatency", ()): True,  # the API is down: its symptoms are muted
        ("PaymentApiDown", ()): False,
        ("RpcProviderHeadLag", (("provider", "spectrum"),)): True,  # its provider is down
        ("RpcProviderHeadLag", (("provider", "public"),)): False,
        ("MonitorProbeFailing", ()): True,  # the probed target is down
        ("PaymentApiAvailabilityBudgetBurn", (("burn", "ticket"),)): True,  # the page mutes the ticket
        ("PaymentApiAvailabilityBudgetBurn", (("burn", "page"),)): False,
        ("PaymentApiLatencyBudgetBurn", ()): False,  # another SLO
    }
    for (name, labels), muted in suppressed.items():
        status = _state(alertmanager, name, **dict(labels))
        assert (status["state"] == "suppressed") is muted, (name, labels, status)
        assert bool(status["inhibitedBy"]) is muted


@pytest.mark.parametrize("receiver", ["slack", "discord", "pagerduty", "email"])
def test_musdpay_alerts_test_reaches_each_receiver(
    alertmanager: Alertmanager, receivers: RunningReceivers, receiver: str
) -> None:
    before = {item["id"] for item in receivers.received()}
    result = subprocess.run(
        [*musdpay_command("alerts", "test", "--receiver", receiver, "--alertmanager-url", alertmanager.url)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    test_id = result.stdout.split("test_id ")[1].split(")")[0]

    def arrived() -> list[dict[str, Any]]:
        return [item for item in receivers.received() if item["id"] not in before and test_id in str(item["payload"])]

    items = wait_until(arrived, timeout=20, what=f"the test notification at {receiver}")
    assert {item["kind"] for item in items} == {receiver}, "the test route reaches that receiver alone"
    item = items[0]
    assert item["valid"], item["errors"]
    text = str(item["payload"])
    assert "Test notification to" in text
    assert "docs/alerts.md" in text  # the runbook link
    if receiver == "pagerduty":
        assert item["payload"]["routing_key"] == PAGERDUTY_KEY
        assert item["payload"]["payload"]["severity"] == "info"
        assert [link["text"] for link in item["payload"]["links"]] == ["Runbook", "Dashboard"]
    if receiver == "email":
        assert item["payload"]["authUser"] == SMTP_LOGIN[0]
        assert item["payload"]["subject"].startswith("[FIRING:1] AlertingTestNotification")
