"""Real Prometheus and Alertmanager (the Debian binaries) on free loopback ports, in temporary directories, with
the project's rules and routing; and the capture receivers they notify. Used by tests/alerts, tests/dashboards
and bench/alerting.py."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from alerts.local import CaptureReceivers, capture_alertmanager_config, prometheus_config, write_capture_secrets
from sandbox.receivers.server import RunningReceivers
from tests.support.services import ChildProcess, free_port, require, start_process
from tests.support.waiting import wait_until

__all__ = [
    "PAGERDUTY_KEY",
    "SMTP_LOGIN",
    "Alertmanager",
    "Prometheus",
    "alertmanager_binary",
    "amtool",
    "prometheus_binary",
    "promtool",
    "running_alertmanager",
    "running_prometheus",
    "serving_prometheus",
]

PAGERDUTY_KEY = "R0UT1NGK3Y0123456789ABCDEFabcdef"  # 32 characters, like an integration key
SMTP_LOGIN = ("alerts@musdpay.test", "smtp-password-for-tests")


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or next((p for p in (f"/usr/bin/{name}",) if os.access(p, os.X_OK)), None)
        if found:
            return found
    require(False, f"{' or '.join(names)} not installed (apt-get install prometheus prometheus-alertmanager)")
    raise AssertionError("unreachable")


def promtool() -> str:
    return _binary("promtool")


def amtool() -> str:
    return _binary("amtool")


def prometheus_binary() -> str:
    return _binary("prometheus")


def alertmanager_binary() -> str:
    return _binary("prometheus-alertmanager", "alertmanager")


def capture_receivers(receivers: RunningReceivers) -> CaptureReceivers:
    return CaptureReceivers(
        slack_url=receivers.slack_url,
        discord_url=receivers.discord_url,
        pagerduty_url=receivers.pagerduty_url,
        smtp_smarthost=receivers.smtp_smarthost,
        smtp_login=SMTP_LOGIN,
        pagerduty_routing_key=PAGERDUTY_KEY,
        heartbeat_url=receivers.heartbeat_url,
    )


def write_secrets(directory: Path, receivers: RunningReceivers) -> Path:
    """The secret files alertmanager.yml names, pointing at the capture receivers."""
    return write_capture_secrets(directory, capture_receivers(receivers))


def render_for(
    receivers: RunningReceivers, secrets_dir: Path, *, fast: bool, heartbeat_interval: str | None = None
) -> dict[str, Any]:
    """alerts/alertmanager.yml rendered for the capture receivers; `fast` shortens every group timing to 1s,
    `heartbeat_interval` the Watchdog's repeat (the shipped 1m otherwise)."""
    return capture_alertmanager_config(
        capture_receivers(receivers),
        secrets_dir,
        group_timings="1s" if fast else None,
        heartbeat_interval=heartbeat_interval,
    )


@dataclass
class Alertmanager:
    url: str
    process: ChildProcess
    config_path: Path

    def alerts(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v2/alerts", timeout=5)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def post(self, alerts: list[dict[str, Any]]) -> None:
        httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()


@contextmanager
def running_alertmanager(
    tmp_path: Path, receivers: RunningReceivers, *, fast: bool = True, heartbeat_interval: str | None = None
) -> Iterator[Alertmanager]:
    binary = alertmanager_binary()
    home = tmp_path / f"alertmanager-{free_port()}"
    home.mkdir()
    secrets_dir = write_secrets(home / "secrets", receivers)
    config = render_for(receivers, secrets_dir, fast=fast, heartbeat_interval=heartbeat_interval)
    config_path = home / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    port = free_port()
    args = [
        binary,
        f"--config.file={config_path}",
        f"--storage.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # one instance, no gossip port
        "--log.level=info",
    ]
    process = start_process(args, env={}, log_path=home / "alertmanager.log")
    manager = Alertmanager(url=f"http://127.0.0.1:{port}", process=process, config_path=config_path)
    try:
        _wait_ready(f"{manager.url}/-/ready", process)
        yield manager
    finally:
        process.stop()


@dataclass
class Prometheus:
    url: str
    process: ChildProcess

    def query(self, expr: str, *, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        response = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets_up(self) -> dict[str, bool]:
        data = httpx.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return {target["labels"]["job"]: target["health"] == "up" for target in data}

    def instances_up(self) -> dict[tuple[str, str], bool]:
        """(job, instance) of every active target -> whether its last scrape succeeded."""
        data = httpx.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return {(t["labels"]["job"], t["labels"]["instance"]): t["health"] == "up" for t in data}

    def rules(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = httpx.get(f"{self.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        return groups


@contextmanager
def serving_prometheus(home: Path, config_path: Path, *flags: str) -> Iterator[tuple[str, ChildProcess]]:
    """The prometheus binary on a free port with this config, its TSDB in `home/data`; yields (URL, process) once
    ready, and stops it at the end."""
    port = free_port()
    args = [
        prometheus_binary(),
        f"--config.file={config_path}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        *flags,
    ]
    process = start_process(args, env={}, log_path=home / "prometheus.log")
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(f"{url}/-/ready", process)
        yield url, process
    finally:
        process.stop()


@contextmanager
def running_prometheus(
    tmp_path: Path,
    targets: Mapping[str, str | Sequence[str]],
    alertmanager: str | None,
    *,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    flags: tuple[str, ...] = (),
) -> Iterator[Prometheus]:
    """Prometheus with the shipped rules scraping `targets`; `flags` are added to its command line."""
    home = tmp_path / f"prometheus-{free_port()}"
    home.mkdir()
    config = prometheus_config(
        targets, alertmanager, scrape_interval=scrape_interval, evaluation_interval=evaluation_interval
    )
    config_path = home / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    with serving_prometheus(home, config_path, "--enable-feature=exemplar-storage", *flags) as (url, process):
        yield Prometheus(url=url, process=process)


def _wait_ready(url: str, process: ChildProcess) -> None:
    def ready() -> bool:
        if not process.alive():
            raise AssertionError(f"{process.args[0]} exited early:\n{process.log()}")
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=30, interval=0.1, what=url)
