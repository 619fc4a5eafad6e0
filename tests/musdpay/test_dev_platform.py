"""`musdpay dev` (what `make run` starts) as a new user meets it: one command, the whole platform, on free ports.

One platform for the module, with the shipped rules, routing, templates and intervals (prometheus.yml's 15 s,
alertmanager.yml's group timings, monitor.yml's 5 s probes): every scrape target is up and every rule group
loaded; the README's purchase runs; a fault at the spectrum proxy pages PagerDuty and posts to Slack with the
runbook link within the shipped 90 s, `musdpay status` shows it (exit 2), then nothing critical once healed (exit
0); `musdpay report` over the run gives what Prometheus gives; Ctrl-C stops every child and exits 0. Tests run in
file order.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from web3 import Web3

from alerts.local import PROMETHEUS_RETENTION
from musdpay.devstack import DEV_STRIPE_KEY, PORT_FLAGS, DevPorts, PortInUse, check_ports
from sandbox.chain.artifact import musd_artifact
from sandbox.chain.musd import to_units
from tests.alerts.support import alertmanager_binary, prometheus_binary
from tests.sandbox.chain.support import require_anvil
from tests.support.processes import ProcessId, alive, descendants
from tests.support.services import ROOT, ChildProcess, free_port, musdpay_command, start_process
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"
SESSIONS = "/api/v1/onramp/sessions"


@dataclass
class Platform:
    process: ChildProcess
    state: Path
    urls: dict[str, Any]
    operator_key: str
    children: list[ProcessId]

    @property
    def api(self) -> str:
        return str(self.urls["api"])

    @property
    def prometheus(self) -> str:
        return str(self.urls["prometheus"])

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_key}"}

    def received(self, kind: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.urls['receivers']['url']}/api/received", params={"kind": kind}, timeout=10)
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def free_dev_ports() -> tuple[dict[str, int], list[str]]:
    """A distinct free port for each of `musdpay dev`'s ports, and the flags that give them."""
    ports = dict(zip(PORT_FLAGS, distinct_free_ports(len(PORT_FLAGS)), strict=True))
    return ports, [arg for name, port in ports.items() for arg in (PORT_FLAGS[name][0], str(port))]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    require_anvil()
    prometheus_binary(), alertmanager_binary()  # fail (CI) or skip when missing, before starting anything
    tmp = tmp_path_factory.mktemp("dev")
    state = tmp / "state"
    _, args = free_dev_ports()
    process = start_process(musdpay_command("dev", *args, "--state-dir", str(state)), env={}, log_path=tmp / "dev.log")
    try:

        def started() -> re.Match[str] | None:
            if not process.alive():
                raise AssertionError(f"musdpay dev exited:\n{process.log()}")
            return re.search(r"Development operator API key \(Authorization: Bearer \.\.\.\): (mpk_\S+)", process.log())

        key = wait_until(started, timeout=120, what="musdpay dev to print its start table").group(1)
        urls = json.loads((state / "dev.json").read_text())
        yield Platform(process, state, urls, key, descendants(process.popen.pid))
    finally:
        if process.alive():
            process.stop(timeout=60)  # SIGTERM first: the supervisor stops its children (SIGKILL only after)


def test_every_scrape_target_is_up_and_every_rule_group_loaded(platform: Platform) -> None:
    prometheus = platform.prometheus
    jobs = {"musdpay-api", "musdpay-monitor", "prometheus", "alertmanager"}

    def all_up() -> dict[str, str] | None:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        health = {target["labels"]["job"]: target["health"] for target in targets}
        return health if set(health) == jobs and set(health.values()) == {"up"} else None

    wait_until(all_up, timeout=60, what="every scrape target up (one shipped 15 s scrape interval)")
    shipped = set()
    for path in sorted((ROOT / "alerts" / "generated").glob("*.yml")):
        shipped |= {group["name"] for group in yaml.safe_load(path.read_text())["groups"]}
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert {group["name"] for group in groups} == shipped
    broken = [(group["name"], rule["name"], rule.get("lastError")) for group in groups for rule in group["rules"]
              if rule.get("health") == "err"]  # fmt: skip
    assert broken == []
    # It keeps what the SLO period needs (tests/deploy/test_retention.py derives the minimum).
    flags = httpx.get(f"{prometheus}/api/v1/status/flags", timeout=10).json()["data"]
    assert flags["storage.tsdb.retention.time"] == PROMETHEUS_RETENTION
    # Alertmanager runs the shipped routing, with the capture receivers as Slack, Discord, PagerDuty and email.
    status = httpx.get(f"{platform.urls['alertmanager']}/api/v2/status", timeout=10).json()
    config = yaml.safe_load(status["config"]["original"])
    assert {receiver["name"] for receiver in config["receivers"]} >= {"critical", "warning", "info"}
    assert config["global"]["pagerduty_url"] == platform.urls["receivers"]["pagerdutyUrl"]
    # All state under the state directory; the dev secrets are the owner's only.
    assert (platform.state / "dev.sqlite").is_file()
    assert (platform.state / "prometheus" / "data").is_dir()
    assert (platform.state / "alertmanager" / "data").is_dir()
    secrets = platform.state / "alertmanager" / "secrets"
    assert {path.name for path in secrets.iterdir()} >= {"pagerduty_routing_key", "slack_webhook_url"}
    assert all(path.stat().st_mode & 0o077 == 0 for path in [secrets, *secrets.iterdir()])


def test_the_readme_purchase_runs_on_the_platform(platform: Platform) -> None:
    api, stripe = platform.api, platform.urls["stripe"]["url"]
    assert httpx.get(f"{api}/readyz", timeout=10).status_code == 200
    assert httpx.post(f"{api}{SESSIONS}", json={}, timeout=10).status_code == 401
    created = httpx.post(
        f"{api}{SESSIONS}",
        json={"walletAddress": WALLET, "sourceAmount": "100.00"},
        headers={"Idempotency-Key": str(uuid.uuid4()), **platform.auth()},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    session = created.json()
    advanced = httpx.post(
        f"{stripe}/_sandbox/onramp_sessions/{session['stripeSessionId']}/advance",
        json={"status": "fulfillment_complete"},
        timeout=30,
    )
    assert advanced.status_code == 200, advanced.text

    def verified() -> dict[str, Any] | None:
        body: dict[str, Any] = httpx.get(f"{api}{SESSIONS}/{session['id']}", headers=platform.auth()).json()
        return body if (body.get("delivery") or {}).get("status") == "verified" else None

    final = wait_until(verified, timeout=60, what="the MUSD delivery verified on the local chain")
    assert final["status"] == "fulfillment_complete"
    assert final["delivery"]["txHash"] == final["transactionDetails"]["transactionId"]
    chain = platform.urls["chain"]
    assert "treasuryPrivateKey" not in chain  # dev.json holds no key
    musd = Web3(Web3.HTTPProvider(chain["rpcUrl"])).eth.contract(address=chain["musdAddress"], abi=musd_artifact().abi)
    assert musd.functions.balanceOf(WALLET).call() == to_units(final["transactionDetails"]["destinationAmount"])
    # The three ledgers agree on it: Stripe's object, the platform's database and the transfer on chain.
    ledgers = subprocess.run(
        musdpay_command("reconcile", "--ledgers"),
        env={
            **os.environ,
            "MUSDPAY_ENVIRONMENT": "development",
            "MUSDPAY_DATABASE_URL": f"sqlite:///{platform.state / 'dev.sqlite'}",
            "MUSDPAY_STRIPE_SECRET_KEY": DEV_STRIPE_KEY,
            "MUSDPAY_STRIPE_API_BASE": stripe,
            "MUSDPAY_CHAIN_ID": str(chain["chainId"]),
            "MUSDPAY_RPC_PROVIDERS": f"local={chain['rpcUrl']}",
            "MUSDPAY_MUSD_ADDRESS": chain["musdAddress"],
        },
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert ledgers.returncode == 0, ledgers.stdout + ledgers.stderr
    assert "1 purchases checked, 1 agreeing, 0 disagreements" in ledgers.stdout
    # Prometheus sees the purchase (the counters start at 0, so the first one counts).
    wait_until(
        lambda: platform.query('sum(musdpay_onramp_payment_volume_total{status="fulfillment_complete"}) == 100'),
        timeout=45,
        what="Prometheus to scrape the fulfilled volume",
    )


def _status(platform: Platform, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        musdpay_command("status", "--prometheus", platform.prometheus, *extra),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def _new(items: list[dict[str, Any]], seen: set[int], text: str, action: str | None = None) -> list[dict[str, Any]]:
    return [
        item
        for item in items
        if item["id"] not in seen
        and text in json.dumps(item["payload"])
        and (action is None or item["payload"].get("event_action") == action)
    ]


def test_a_broken_provider_pages_within_the_shipped_90_s_and_status_shows_it(platform: Platform) -> None:
    before = _status(platform)
    assert before.returncode == 0, before.stdout + before.stderr
    seen = {item["id"] for item in platform.received("pagerduty") + platform.received("slack")}
    faults = f"{platform.urls['spectrum']['controlUrl']}/_proxy/faults"
    httpx.put(faults, json={"down": True}, timeout=10).raise_for_status()
    broken = time.monotonic()
    try:
        [page] = wait_until(
            lambda: _new(platform.received("pagerduty"), seen, "RpcProviderDown", "trigger"),
            timeout=120,
            interval=0.5,
            what="the PagerDuty page",
        )
        paged_after = time.monotonic() - broken
        [slack] = wait_until(
            lambda: _new(platform.received("slack"), seen, "RpcProviderDown"), timeout=30, what="the Slack message"
        )
        assert page["valid"], page["errors"]
        details = page["payload"]["payload"]["custom_details"]
        assert details["runbook_url"].endswith("/docs/runbooks/RpcProviderDown.md")
        assert page["payload"]["payload"]["severity"] == "critical"
        assert slack["valid"], slack["errors"]
        assert "/docs/runbooks/RpcProviderDown.md|Runbook>" in slack["payload"]["attachments"][0]["text"]
        assert paged_after < 90, f"paged {paged_after:.0f} s after the fault (shipped target: 90 s)"

        during = _status(platform)
        assert during.returncode == 2, during.stdout + during.stderr
        assert "RpcProviderDown" in during.stdout, during.stdout
        assert "docs/runbooks/RpcProviderDown.md" in during.stdout, during.stdout
        document = json.loads(_status(platform, "--json").stdout)
        assert "RpcProviderDown" in json.dumps(document)
    finally:
        httpx.put(faults, json={}, timeout=10).raise_for_status()
    wait_until(
        lambda: _new(platform.received("pagerduty"), seen, "RpcProviderDown", "resolve"),
        timeout=150,
        interval=0.5,
        what="the PagerDuty resolve",
    )
    wait_until(lambda: _status(platform).returncode == 0, timeout=60, what="status: nothing critical firing")


class _Figures(HTMLParser):
    """The report's figure cells: data-figure, data-value and the query in the title."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if "data-figure" in values:
            self.figures.append(values)


def test_the_report_over_the_run_gives_what_prometheus_gives(platform: Platform, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    until = int(time.time())
    result = subprocess.run(
        musdpay_command(
            "report", "--prometheus", platform.prometheus, "--since", "15m", "--until", str(until), "--out", str(out)
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    html = out.read_text()
    assert "RpcProviderDown" in html  # the alert of the outage above, with how long it fired
    assert not re.search(r"""(src|href)=["']https?://""", html)
    parser = _Figures()
    parser.feed(html)
    checked = 0
    for figure in parser.figures:
        found = re.fullmatch(r"(?s)(.+)  \(instant at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC\)", figure.get("title", ""))
        if not found:
            continue  # figures computed from others (cost) or from the monitor config
        at = datetime.strptime(found.group(2), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
        body = httpx.get(
            f"{platform.prometheus}/api/v1/query", params={"query": found.group(1), "time": at}, timeout=10
        ).json()
        # The series this cell shows: those whose label values (`by (provider)`, ...) are all in its key.
        parts = set(figure["data-figure"].split("/"))
        values = [
            float(item["value"][1])
            for item in body["data"]["result"]
            if set(item["metric"].values()) <= parts and not math.isnan(float(item["value"][1]))
        ]
        if figure["data-value"] == "":
            assert values == [], (figure, values)
        else:
            assert len(values) == 1, (figure, body["data"]["result"])
            assert math.isclose(float(figure["data-value"]), values[0], rel_tol=1e-9), (figure, values)
        checked += 1
    assert checked >= 10, parser.figures
    keys = " ".join(figure["data-figure"] for figure in parser.figures)
    assert "spectrum" in keys
    assert "public" in keys


def test_ctrl_c_stops_every_child_and_exits_0(platform: Platform) -> None:
    children = descendants(platform.process.popen.pid)
    names = " ".join(child.command for child in children)
    assert {"anvil", "prometheus", "alertmanager", "serve", "monitor", "receivers"} <= set(re.findall(r"[a-z]+", names))
    # A terminal's Ctrl-C: SIGINT to the foreground process, which alone is in that group.
    platform.process.popen.send_signal(signal.SIGINT)
    assert platform.process.popen.wait(timeout=90) == 0, platform.process.log()[-4000:]
    left = [child for child in children + platform.children if alive(child)]
    assert left == [], left
    assert not (platform.state / "dev.json").exists()


def test_a_taken_port_fails_at_once_naming_it_and_its_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            musdpay_command("dev", "--prometheus-port", str(port), "--state-dir", str(tmp_path / "state")),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
    assert result.returncode != 0
    assert f"port {port} (Prometheus) is already in use" in result.stderr
    assert "--prometheus-port" in result.stderr
    assert time.monotonic() - started < 30
    assert not (tmp_path / "state").exists()  # nothing started, nothing written


@pytest.mark.parametrize("name", [item.name for item in fields(DevPorts)])
def test_every_port_is_checked_and_named_with_its_flag(name: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = distinct_free_ports(len(PORT_FLAGS))
        ports = DevPorts(**{item: others[i] for i, item in enumerate(PORT_FLAGS) if item != name}, **{name: port})
        with pytest.raises(PortInUse, match=rf"port {port} \(.+\) is already in use.* {PORT_FLAGS[name][0]} PORT"):
            check_ports(ports)


def test_a_port_given_twice_is_refused() -> None:
    ports = dict(zip(PORT_FLAGS, distinct_free_ports(len(PORT_FLAGS)), strict=True))
    ports["prometheus"] = ports["api"]
    with pytest.raises(
        PortInUse, match=r"given to both the payment API and Prometheus: move one \(--prometheus-port\)"
    ):
        check_ports(DevPorts(**ports))


def test_without_prometheus_and_alertmanager_it_says_how_to_install_them_and_runs_the_rest(tmp_path: Path) -> None:
    require_anvil()
    ports, args = free_dev_ports()
    empty = tmp_path / "bin"
    empty.mkdir()
    process = start_process(
        musdpay_command("dev", *args, "--state-dir", str(tmp_path / "state")),
        env={"PATH": str(empty)},  # nothing to find: the interpreter and anvil are found by their own paths
        log_path=tmp_path / "dev.log",
    )
    try:
        wait_until(
            lambda: "Development operator API key" in process.log() or not process.alive(),
            timeout=120,
            what="musdpay dev to start",
        )
        assert process.alive(), process.log()
        log = process.log()
        assert "sudo apt-get install prometheus prometheus-alertmanager" in log
        assert "Prometheus" not in log.split("musdpay dev: the local platform")[1].split("Receivers")[0]
        assert httpx.get(f"http://127.0.0.1:{ports['api']}/readyz", timeout=10).status_code == 200
        urls = json.loads((tmp_path / "state" / "dev.json").read_text())
        assert "prometheus" not in urls
        assert "alertmanager" not in urls
        process.popen.send_signal(signal.SIGTERM)
        assert process.popen.wait(timeout=90) == 0, process.log()[-3000:]
    finally:
        process.stop(timeout=60)


def test_a_database_that_cannot_be_used_stops_everything_with_a_message(tmp_path: Path) -> None:
    require_anvil()
    _, args = free_dev_ports()
    closed = free_port()
    process = start_process(
        musdpay_command("dev", *args, "--state-dir", str(tmp_path / "state")),
        env={"MUSDPAY_DATABASE_URL": f"postgresql+psycopg://musdpay:hunter2secret@127.0.0.1:{closed}/nothing"},
        log_path=tmp_path / "dev.log",
    )
    children: list[ProcessId] = []

    def gone() -> bool:
        children.extend(child for child in descendants(process.popen.pid) if child not in children)
        return not process.alive()

    try:
        wait_until(gone, timeout=120, interval=0.2, what="musdpay dev to give up")
    finally:
        process.stop(timeout=60)
    assert process.popen.returncode == 1, process.log()
    assert "musdpay dev: OperationalError" in process.log()
    assert "hunter2secret" not in process.log()
    assert [child for child in children if alive(child)] == []
