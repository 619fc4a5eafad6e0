"""`musdpay dev` (what `make run` starts): the whole platform on one machine, as one supervised process tree.

    local chain (anvil, :8545) <- RPC fault proxies "spectrum" (:8546, primary) and "public" (:8547) <- the API
    Stripe emulator (:12111) -> signed webhooks -> the API (:3001); in onramp mode it pays buyers on the chain
    the monitor (:9101) probes the proxies, the emulator and the database
    Prometheus (:9090: prometheus.yml, alerts/generated/) scrapes the API, the monitor, itself and Alertmanager
      -> Alertmanager (:9093: alerts/alertmanager.yml) -> capture receivers (:9300 Slack, Discord, PagerDuty;
         SMTP :2525), which show what was notified on their page

Every piece of state lives under the state directory (`./.musdpay/` by default): the SQLite database, the
Prometheus TSDB, Alertmanager's data, and the generated development secrets (never committed). The chain, the
proxies, the emulator, the receivers and the monitor print one JSON line when ready; the next process is
configured from it. Explicit `MUSDPAY_*` variables in the environment win over what is wired here.
"""

from __future__ import annotations

import io
import json
import secrets
import shutil
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from alerts.local import (
    PROMETHEUS_RETENTION,
    CaptureReceivers,
    capture_alertmanager_config,
    dump,
    new_routing_key,
    prometheus_config,
    write_capture_secrets,
)
from musdpay.supervisor import StartError, Stopped, Supervisor
from payment.core.logs import redact

__all__ = ["DEV_STRIPE_KEY", "DEV_WEBHOOK_SECRET", "DevOptions", "DevPorts", "PortInUse", "check_ports", "run_dev"]

# Development-only credentials of the local stack; the emulator accepts them, nothing real does.
DEV_STRIPE_KEY = "sk_test_musdpay_local_development"
DEV_WEBHOOK_SECRET = "whsec_musdpay_local_development"  # noqa: S105 - local emulator only
DEV_KEY_NAME = "musdpay dev"
SMTP_USER = "alerts@musdpay.localhost"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class DevPorts:
    api: int = 3001
    stripe: int = 12111
    chain: int = 8545
    spectrum: int = 8546
    public: int = 8547
    monitor: int = 9101
    receivers: int = 9300
    smtp: int = 2525
    prometheus: int = 9090
    alertmanager: int = 9093


# What each port is and the flag of `musdpay dev` that moves it (the error for a taken port names both).
PORT_FLAGS: Mapping[str, tuple[str, str]] = {
    "api": ("--port", "the payment API"),
    "stripe": ("--stripe-port", "the Stripe emulator"),
    "chain": ("--chain-port", "the local chain"),
    "spectrum": ("--spectrum-port", 'the "spectrum" RPC proxy'),
    "public": ("--public-port", 'the "public" RPC proxy'),
    "monitor": ("--monitor-port", "the monitor"),
    "receivers": ("--receivers-port", "the capture receivers"),
    "smtp": ("--smtp-port", "the capture SMTP server"),
    "prometheus": ("--prometheus-port", "Prometheus"),
    "alertmanager": ("--alertmanager-port", "Alertmanager"),
}


@dataclass(frozen=True)
class DevOptions:
    ports: DevPorts
    state_dir: Path
    log_format: str  # "text" or "json", for every child that logs through payment.core.logs
    colour: bool = False
    auto_advance: str | None = None
    scrape_interval: str | None = None  # None: prometheus.yml's
    evaluation_interval: str | None = None
    monitor_config: Path | None = None


class PortInUse(RuntimeError):
    """A port the platform needs is taken (or given twice)."""


def check_ports(ports: DevPorts, host: str = HOST) -> None:
    """Fail before starting anything when a port is taken, naming it and the flag that moves it."""
    seen: dict[int, str] = {}
    for item in fields(ports):
        port = getattr(ports, item.name)
        flag, what = PORT_FLAGS[item.name]
        if port in seen:
            raise PortInUse(f"port {port} is given to both {PORT_FLAGS[seen[port]][1]} and {what}: move one ({flag})")
        seen[port] = item.name
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers bind: SO_REUSEADDR, so a port in TIME_WAIT after the last run is not "in use".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                raise PortInUse(
                    f"port {port} ({what}) is already in use: stop what holds it, or move {what} with {flag} PORT"
                ) from None


@dataclass(frozen=True)
class Tools:
    prometheus: str | None
    alertmanager: str | None


def find_tools(path: str | None = None) -> Tools:
    """Prometheus and Alertmanager on the PATH (Debian names the latter prometheus-alertmanager)."""

    def which(*names: str) -> str | None:
        return next((found for name in names if (found := shutil.which(name, path=path))), None)

    return Tools(prometheus=which("prometheus"), alertmanager=which("prometheus-alertmanager", "alertmanager"))


def _musdpay(*args: str) -> list[str]:
    return [sys.executable, "-m", "musdpay", *args]


def dev_operator_key(database_url: str, environment: str) -> str:
    """A fresh operator key for the local stack (earlier ones of `musdpay dev` are revoked)."""
    from payment.auth import apikeys
    from payment.auth.audit import Actor
    from payment.auth.principal import Role
    from payment.core import migrations
    from payment.core.config import Settings
    from payment.core.db import create_db_engine, make_session_factory

    actor = Actor(name="cli:musdpay-dev", role="admin", origin="cli")
    engine = create_db_engine(Settings(environment=environment, database_url=database_url))
    try:
        factory = make_session_factory(engine)
        migrations.upgrade(engine)
        for info in apikeys.list_keys(factory=factory):
            if info.name == DEV_KEY_NAME and info.revoked_at is None:
                apikeys.revoke_key(factory=factory, key_id=info.id, actor=actor)
        issued = apikeys.create_key(factory=factory, name=DEV_KEY_NAME, role=Role.operator, actor=actor)
    finally:
        engine.dispose()
    return issued.key


class DevPlatform:
    """The wiring: which child gets which port, URL and setting."""

    def __init__(self, options: DevOptions, env: Mapping[str, str], out: TextIO) -> None:
        self.options = options
        self.ports = options.ports
        self.state = options.state_dir.resolve()
        self.out = out
        child_env = dict(env)
        child_env.setdefault("MUSDPAY_ENVIRONMENT", "development")
        child_env.setdefault("MUSDPAY_DATABASE_URL", f"sqlite:///{self.state / 'dev.sqlite'}")
        child_env.setdefault("MUSDPAY_STRIPE_API_BASE", f"http://{HOST}:{self.ports.stripe}")
        child_env.setdefault("MUSDPAY_STRIPE_SECRET_KEY", DEV_STRIPE_KEY)
        child_env.setdefault("MUSDPAY_STRIPE_WEBHOOK_SECRETS", DEV_WEBHOOK_SECRET)
        child_env["MUSDPAY_LOG_FORMAT"] = options.log_format
        child_env.setdefault("PYTHONUNBUFFERED", "1")  # children's lines reach the terminal as they are written
        self.supervisor = Supervisor(child_env, out=out, colour=options.colour)
        self.urls: dict[str, Any] = {}

    @property
    def env(self) -> dict[str, str]:
        return self.supervisor.env

    def run(self) -> int:
        supervisor = self.supervisor
        supervisor.install_signal_handlers()
        self.state.mkdir(parents=True, exist_ok=True)
        tools = find_tools()
        try:
            self._chain()
            manager = self._alerting(tools)
            operator_key = dev_operator_key(self.env["MUSDPAY_DATABASE_URL"], self.env["MUSDPAY_ENVIRONMENT"])
            self._payments()
            if tools.prometheus:
                self._prometheus(tools.prometheus, manager)
            self._write_urls()
            supervisor.say(self._table(operator_key, tools))
        except Stopped:
            supervisor.stop()
            return 0
        except (StartError, OSError) as exc:
            supervisor.say(f"musdpay dev: {exc}; stopping")
            supervisor.stop()
            return 1
        except Exception as exc:  # the database refused, a bug: the children (own sessions) must not outlive us
            supervisor.say(f"musdpay dev: {type(exc).__name__}: {redact(str(exc))}; stopping")
            supervisor.stop()
            return 1
        except BaseException:
            supervisor.stop()
            raise
        if not (tools.prometheus and tools.alertmanager):
            supervisor.say(
                "Prometheus or Alertmanager is not installed, so no rule is evaluated and no alert is routed: "
                "sudo apt-get install prometheus prometheus-alertmanager (`make run` does it when it can); "
                "everything else runs."
            )
        try:
            return supervisor.wait()
        finally:
            (self.state / "dev.json").unlink(missing_ok=True)

    # --- the children, in order --------------------------------------------------------------------------------

    def _chain(self) -> None:
        ports, start = self.ports, self.supervisor.start
        chain = start("chain", _musdpay("sandbox", "chain", "--port", str(ports.chain)), announces=True).announced
        assert chain is not None
        proxies: dict[str, dict[str, Any]] = {}
        for name, port in (("spectrum", ports.spectrum), ("public", ports.public)):
            args = _musdpay("sandbox", "rpc-proxy", "--upstream", chain["rpcUrl"], "--name", name, "--port", str(port))
            announced = start(name, args, announces=True).announced
            assert announced is not None
            proxies[name] = announced
        env = self.env
        env.setdefault("MUSDPAY_CHAIN_ID", str(chain["chainId"]))
        env.setdefault(
            "MUSDPAY_RPC_PROVIDERS", f"spectrum={proxies['spectrum']['url']},public={proxies['public']['url']}"
        )
        env.setdefault("MUSDPAY_MUSD_ADDRESS", chain["musdAddress"])
        # The local treasury's published anvil key: worthless anywhere but on this chain.
        env.setdefault("MUSDPAY_TREASURY_KEY", chain["treasuryPrivateKey"])
        self.urls.update(chain=chain, spectrum=proxies["spectrum"], public=proxies["public"])

    def _alerting(self, tools: Tools) -> str | None:
        """The capture receivers, and Alertmanager routing to them; returns Alertmanager's URL (None without it)."""
        ports = self.ports
        smtp_login = (SMTP_USER, secrets.token_urlsafe(18))
        args = _musdpay("sandbox", "receivers", "--port", str(ports.receivers), "--smtp-port", str(ports.smtp))
        args += ["--smtp-user", smtp_login[0]]
        # The capture server's password reaches it through its environment, not its command line (ps shows that).
        receivers = self.supervisor.start(
            "receivers", args, announces=True, env={"MUSDPAY_RECEIVERS_SMTP_PASSWORD": smtp_login[1]}
        ).announced
        assert receivers is not None
        self.urls["receivers"] = receivers
        if tools.alertmanager is None:
            return None
        home = self.state / "alertmanager"
        home.mkdir(exist_ok=True)
        capture = CaptureReceivers.from_announcement(
            receivers, smtp_login=smtp_login, pagerduty_routing_key=new_routing_key()
        )
        secrets_dir = write_capture_secrets(home / "secrets", capture)
        config = dump(capture_alertmanager_config(capture, secrets_dir), home / "alertmanager.yml")
        url = f"http://{HOST}:{ports.alertmanager}"
        self.supervisor.start(
            "alertmanager",
            [
                tools.alertmanager,
                f"--config.file={config}",
                f"--storage.path={home / 'data'}",
                f"--web.listen-address={HOST}:{ports.alertmanager}",
                f"--web.external-url={url}",
                "--cluster.listen-address=",  # one instance: no gossip port
                "--log.level=warn",
            ],
            ready_url=f"{url}/-/ready",
        )
        self.urls["alertmanager"] = url
        return url

    def _payments(self) -> None:
        ports, start, env = self.ports, self.supervisor.start, self.env
        api = f"http://{HOST}:{ports.api}"
        secret = env["MUSDPAY_STRIPE_WEBHOOK_SECRETS"].split(",")[0].strip()
        emulator = _musdpay(
            "sandbox", "stripe",
            "--port", str(ports.stripe),
            "--webhook-url", f"{api}/api/v1/webhooks/stripe",
            "--webhook-secret", secret,
        )  # fmt: skip
        if self.options.auto_advance:
            emulator += ["--auto-advance", self.options.auto_advance]
        # Onramp mode: the emulator pays buyers on the chain, as Stripe would. Treasury mode: we do.
        if env.get("MUSDPAY_DELIVERY_MODE", "onramp") == "onramp":
            emulator += ["--chain", json.dumps(self.urls["chain"])]
        self.urls["stripe"] = start("stripe", emulator, announces=True).announced
        start("api", _musdpay("serve", "--port", str(ports.api)), ready_url=f"{api}/healthz")
        self.urls["api"] = api
        monitor = _musdpay("monitor", "--port", str(ports.monitor))
        config = self.options.monitor_config
        if config is not None:
            monitor += ["--config", str(config)]
        self.urls["monitor"] = start("monitor", monitor, announces=True).announced

    def _prometheus(self, binary: str, alertmanager: str | None) -> None:
        ports = self.ports
        home = self.state / "prometheus"
        home.mkdir(exist_ok=True)
        targets = {
            "musdpay-api": f"{HOST}:{ports.api}",
            "musdpay-monitor": f"{HOST}:{ports.monitor}",
            "prometheus": f"{HOST}:{ports.prometheus}",
        }
        if alertmanager is not None:
            targets["alertmanager"] = f"{HOST}:{ports.alertmanager}"
        config = prometheus_config(
            targets,
            alertmanager,
            scrape_interval=self.options.scrape_interval,
            evaluation_interval=self.options.evaluation_interval,
        )
        path = dump(config, home / "prometheus.yml")
        url = f"http://{HOST}:{ports.prometheus}"
        self.supervisor.start(
            "prometheus",
            [
                binary,
                f"--config.file={path}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address={HOST}:{ports.prometheus}",
                f"--web.external-url={url}",
                f"--storage.tsdb.retention.time={PROMETHEUS_RETENTION}",  # the SLO period, and a margin
                "--enable-feature=exemplar-storage",  # the API's latency exemplars link to traces
                "--log.level=warn",
            ],
            ready_url=f"{url}/-/ready",
        )
        self.urls["prometheus"] = url

    def _write_urls(self) -> None:
        """`<state>/dev.json`: every URL of this run, for scripts (no key: the chain's are left out)."""
        urls = {
            name: {key: value for key, value in value.items() if not key.endswith("PrivateKey")}
            if isinstance(value, dict)
            else value
            for name, value in self.urls.items()
        }
        (self.state / "dev.json").write_text(json.dumps(urls, indent=2) + "\n", encoding="utf-8")

    # --- the start table ------------------------------------------------------------------------------------------

    def _table(self, operator_key: str, tools: Tools) -> str:
        urls = self.urls
        table = Table(title="musdpay dev: the local platform", title_justify="left", show_lines=False)
        table.add_column("what", style="bold")
        table.add_column("where")
        table.add_column("for", overflow="fold")
        api, spectrum, public = urls["api"], urls["spectrum"], urls["public"]
        rows = [
            ("Payment API", api, f"docs {api}/docs, metrics {api}/metrics"),
            ("Stripe emulator", urls["stripe"]["url"], f"drive a session: POST {urls['stripe']['url']}"
             "/_sandbox/onramp_sessions/<cos_id>/advance; faults: PUT /_sandbox/faults"),
            ("Local Mezo chain", urls["chain"]["rpcUrl"], f"chain {urls['chain']['chainId']}, "
             f"MUSD {urls['chain']['musdAddress']}"),
            ("RPC spectrum", spectrum["url"], f"primary; faults {spectrum['controlUrl']}/_proxy/faults"),
            ("RPC public", public["url"], f"fallback; faults {public['controlUrl']}/_proxy/faults"),
            ("Monitor", urls["monitor"]["metricsUrl"], "the prober's metrics"),
        ]  # fmt: skip
        if "prometheus" in urls:
            prometheus = urls["prometheus"]
            rows.append(("Prometheus", f"{prometheus}/graph", f"alerts {prometheus}/alerts, "
                         f"targets {prometheus}/targets, rules {prometheus}/rules"))  # fmt: skip
        if "alertmanager" in urls:
            rows.append(("Alertmanager", urls["alertmanager"], "routing to the capture receivers"))
        receivers = urls["receivers"]
        rows.append(("Receivers", receivers["url"], f"what was notified (Slack, Discord, PagerDuty, email); "
                     f"SMTP {receivers['smtpSmarthost']}"))  # fmt: skip
        rows.append(("State", str(self.state), "database, TSDB, Alertmanager data, dev secrets"))
        for row in rows:
            table.add_row(*row)
        buffer = io.StringIO()
        console = Console(file=buffer, force_terminal=self.options.colour, width=160, soft_wrap=False)
        console.print(table)
        if "prometheus" in urls:
            console.print(f"On call: musdpay status --prometheus {urls['prometheus']}   "
                          f"Report: musdpay report --prometheus {urls['prometheus']} --since 1h")  # fmt: skip
        console.print(
            f"Break the primary RPC: curl -X PUT {urls['spectrum']['controlUrl']}/_proxy/faults "
            "-H 'Content-Type: application/json' -d '{\"down\": true}'   (heal: -d '{}')",
            markup=False,
        )
        lines = buffer.getvalue().rstrip("\n")
        # Its own line, plain, so that it can be copied (the README's curl uses it).
        return f"{lines}\nDevelopment operator API key (Authorization: Bearer ...): {operator_key}"


def run_dev(options: DevOptions, env: Mapping[str, str], out: TextIO | None = None) -> int:
    check_ports(options.ports)
    return DevPlatform(options, env, out or sys.stdout).run()
