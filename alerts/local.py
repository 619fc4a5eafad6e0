"""Prometheus and Alertmanager configured for one machine: this repository's rules, routing and templates, wired
to local scrape targets and to the capture receivers (`musdpay sandbox receivers`) instead of Slack, Discord,
PagerDuty and a mail server. `musdpay dev` runs the platform with them; the tests start their own with them.

    prometheus_config(targets={"musdpay-api": "127.0.0.1:3001", ...}, alertmanager="127.0.0.1:9093")
    write_capture_secrets(secrets_dir, CaptureReceivers(...))      # the secret files alertmanager.yml reads
    capture_alertmanager_config(receivers, secrets_dir)             # alertmanager.yml rendered for them

Both configs are returned as dicts; `dump` writes them as YAML.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alerts.alertmanager import ALERTMANAGER_SOURCE, TEMPLATES_DIR, render
from alerts.build import ALERTS_DIR

__all__ = [
    "GENERATED_RULES",
    "PROMETHEUS_RETENTION",
    "PROMETHEUS_SOURCE",
    "CaptureReceivers",
    "capture_alertmanager_config",
    "dump",
    "new_routing_key",
    "prometheus_config",
    "shipped_intervals",
    "write_capture_secrets",
]

PROMETHEUS_SOURCE = ALERTS_DIR.parent / "prometheus.yml"
GENERATED_RULES = ALERTS_DIR / "generated" / "*.yml"
# How long every Prometheus the project ships keeps its samples (`make run`, docker-compose.yml, the Prometheus
# Operator's object): the SLO period of alerts/slo.yml (30 days, Prometheus's default is 15) and a margin, so a
# "30-day" error budget or SLA figure covers 30 days. tests/deploy/test_retention.py derives the minimum.
PROMETHEUS_RETENTION = "40d"


@dataclass(frozen=True)
class CaptureReceivers:
    """Where the capture receivers listen (the JSON line `musdpay sandbox receivers` prints), and the SMTP login
    they require."""

    slack_url: str
    discord_url: str
    pagerduty_url: str
    smtp_smarthost: str
    smtp_login: tuple[str, str]
    pagerduty_routing_key: str
    heartbeat_url: str  # where Alertmanager posts the Watchdog (the dead man's switch)

    @classmethod
    def from_announcement(
        cls, urls: Mapping[str, str], *, smtp_login: tuple[str, str], pagerduty_routing_key: str
    ) -> CaptureReceivers:
        return cls(
            slack_url=urls["slackUrl"],
            discord_url=urls["discordUrl"],
            pagerduty_url=urls["pagerdutyUrl"],
            smtp_smarthost=urls["smtpSmarthost"],
            smtp_login=smtp_login,
            pagerduty_routing_key=pagerduty_routing_key,
            heartbeat_url=urls["heartbeatUrl"],
        )


def _source() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_SOURCE.read_text(encoding="utf-8"))
    return config


def shipped_intervals() -> tuple[str, str]:
    """prometheus.yml's scrape and evaluation intervals (what production runs with)."""
    config = _source()["global"]
    return str(config["scrape_interval"]), str(config["evaluation_interval"])


def prometheus_config(
    targets: Mapping[str, str | Sequence[str]],
    alertmanager: str | None,
    *,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
) -> dict[str, Any]:
    """prometheus.yml of the repository with these scrape targets (job -> host:port, or several: one instance
    each), its generated rules by absolute path, and this Alertmanager (host:port or URL; None: no alerting).
    Intervals default to the file's."""
    config = _source()
    if scrape_interval is not None:
        config["global"]["scrape_interval"] = scrape_interval
    if evaluation_interval is not None:
        config["global"]["evaluation_interval"] = evaluation_interval
    config["rule_files"] = [str(GENERATED_RULES)]
    manager = alertmanager.removeprefix("http://") if alertmanager else None
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [manager] if manager else []
    config["scrape_configs"] = [
        {"job_name": job, "static_configs": [{"targets": [target] if isinstance(target, str) else list(target)}]}
        for job, target in targets.items()
    ]
    return config


def write_capture_secrets(directory: Path, receivers: CaptureReceivers) -> Path:
    """The secret files alertmanager.yml names, pointing at the capture receivers (owner-only permissions)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    values = {
        "pagerduty_routing_key": receivers.pagerduty_routing_key,
        "slack_webhook_url": receivers.slack_url,
        "discord_webhook_url": receivers.discord_url,
        "smtp_password": receivers.smtp_login[1],
    }
    for name, value in values.items():
        path = directory / name
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        # No trailing newline: Alertmanager 0.25 uses smtp_password as read (it trims the URL and key files).
        path.write_text(value, encoding="utf-8")
    return directory


def capture_alertmanager_config(
    receivers: CaptureReceivers,
    secrets_dir: Path,
    *,
    group_timings: str | None = None,
    heartbeat_interval: str | None = None,
) -> dict[str, Any]:
    """alerts/alertmanager.yml rendered for the capture receivers, with the shipped routing and templates.

    `group_timings` (e.g. "1s") replaces every group_wait and group_interval, for tests that cannot wait for the
    shipped ones; None keeps them. `heartbeat_interval` replaces the Watchdog route's group_interval and
    repeat_interval (how often a heartbeat leaves); None keeps them."""
    env = {
        "MUSDPAY_ALERT_SECRETS_DIR": str(secrets_dir),
        "MUSDPAY_ALERT_TEMPLATES_DIR": str(TEMPLATES_DIR),
        "MUSDPAY_ALERT_PAGERDUTY_URL": receivers.pagerduty_url,
        "MUSDPAY_ALERT_SMTP_SMARTHOST": receivers.smtp_smarthost,
        "MUSDPAY_ALERT_SMTP_USERNAME": receivers.smtp_login[0],
        "MUSDPAY_ALERT_SMTP_REQUIRE_TLS": "false",
        "MUSDPAY_ALERT_HEARTBEAT_URL": receivers.heartbeat_url,
    }
    config = render(ALERTMANAGER_SOURCE.read_text(encoding="utf-8"), env)
    if group_timings is not None:

        def shorten(route: dict[str, Any]) -> None:
            for key in ("group_wait", "group_interval"):
                if key in route or route is config["route"]:
                    route[key] = group_timings
            for child in route.get("routes", []):
                shorten(child)

        shorten(config["route"])
    if heartbeat_interval is not None:
        for route in config["route"]["routes"]:
            if route.get("receiver") == "heartbeat":
                route["group_interval"] = route["repeat_interval"] = heartbeat_interval
    return config


def new_routing_key() -> str:
    """A PagerDuty-shaped integration key (32 characters) for a local run."""
    return secrets.token_hex(16)


def dump(config: Mapping[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False, width=10_000), encoding="utf-8")
    return path
