"""`musdpay status` against a real Prometheus with the shipped rules, scraping two exposition servers that stand in
for the API (`musdpay-api`) and the monitor (`musdpay-monitor`) with values the test sets: the primary RPC down,
a public provider at 90% availability, known latency buckets, paid sessions not delivered.

Each figure is checked against the same PromQL asked of Prometheus and against what the fixture implies
(computed here from the fixture's numbers, not by the code under test); then RpcProviderDown fires (its `for` as
shipped: 30s) and `musdpay status` exits 2 showing it with its runbook, and exits 0 once the provider is healed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from alerts.build import load_thresholds
from operate.prometheus import PrometheusClient
from operate.status import DEFAULT_JOBS, SCHEMA, Status, collect_status, render, to_json, to_jsonable
from tests.alerts.support import Prometheus, running_prometheus
from tests.support.exposition import Exposition, Growing, serving_exposition
from tests.support.services import ROOT, free_port, musdpay_command, start_process
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

T0 = time.time()
LAST_WEBHOOK = round(T0 - 120.0, 3)
# Cumulative per-second rates of the public provider's latency histogram: 1.8 probes/s, all under 100 ms.
PUBLIC_BUCKETS = {"0.025": 0.6, "0.05": 1.2, "0.1": 1.8, "0.25": 1.8, "+Inf": 1.8}
API_CALLS_PER_SECOND = 0.5  # the API's eth_call to spectrum, 2 credits each
SPECTRUM_PROJECTED = 1234567.0
SPECTRUM_QUOTA = 10_000_000.0
WINDOWS = ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]  # alerts/slo.yml's windows and its 30d period


def _monitor_series(*, spectrum_up: bool) -> dict[str, float | Growing]:
    series: dict[str, float | Growing] = {
        'musdpay_monitor_rpc_up{provider="spectrum"}': 1 if spectrum_up else 0,
        'musdpay_monitor_rpc_up{provider="public"}': 1,
        'musdpay_monitor_rpc_sla_target_ratio{provider="spectrum"}': 0.999,
        'musdpay_monitor_rpc_sla_target_ratio{provider="public"}': 0.95,
        # Spectrum: every probe fails while down (success frozen), every probe succeeds once healed.
        'musdpay_monitor_rpc_probes_total{provider="spectrum",outcome="success"}': Growing(
            2.0 if spectrum_up else 0, 500
        ),
        'musdpay_monitor_rpc_probes_total{provider="spectrum",outcome="failure"}': Growing(
            0 if spectrum_up else 2.0, 3
        ),
        'musdpay_monitor_rpc_probes_total{provider="public",outcome="success"}': Growing(1.8),
        'musdpay_monitor_rpc_probes_total{provider="public",outcome="failure"}': Growing(0.2),
        'musdpay_monitor_rpc_latency_seconds_sum{provider="public"}': Growing(0.07),
        'musdpay_monitor_rpc_latency_seconds_count{provider="public"}': Growing(1.8),
        # Spectrum's histogram exists but sees no observation while down: its quantiles have no data.
        'musdpay_monitor_rpc_latency_seconds_bucket{provider="spectrum",le="0.05"}': 40,
        'musdpay_monitor_rpc_latency_seconds_bucket{provider="spectrum",le="+Inf"}': 40,
        'musdpay_monitor_rpc_latency_seconds_count{provider="spectrum"}': 40,
        'musdpay_monitor_rpc_month_credits_projected{provider="spectrum"}': SPECTRUM_PROJECTED,
        'musdpay_monitor_rpc_month_credit_quota{provider="spectrum"}': SPECTRUM_QUOTA,
        'musdpay_monitor_rpc_month_credits_projected{provider="public"}': 4321,
        'musdpay_monitor_rpc_credit_cost{provider="spectrum",method="eth_call"}': 2,
        'musdpay_monitor_pipeline_undelivered_sessions{status="pending"}': 2,
        'musdpay_monitor_pipeline_undelivered_sessions{status="missing"}': 1,
        'musdpay_monitor_pipeline_undelivered_sessions{status="failed"}': 0,
        'musdpay_monitor_pipeline_undelivered_amount{currency="usd"}': 150.25,
        'musdpay_monitor_pipeline_undelivered_amount{currency="musd"}': 149.5,
        "musdpay_monitor_pipeline_undelivered_oldest_age_seconds": 7200,
        "musdpay_monitor_pipeline_stuck_sessions": 0,
        "musdpay_monitor_pipeline_open_sessions": 4,
        "musdpay_monitor_pipeline_last_webhook_timestamp_seconds": LAST_WEBHOOK,
        "musdpay_monitor_pipeline_webhook_silence_seconds": 0,
        'musdpay_monitor_onramp_sessions{window="1h",outcome="fulfilled"}': 5,
        'musdpay_monitor_onramp_sessions{window="1h",outcome="rejected"}': 1,
        'musdpay_monitor_onramp_sessions{window="1h",outcome="abandoned"}': 0,
        'musdpay_monitor_onramp_sessions{window="1h",outcome="pending"}': 2,
        "musdpay_monitor_stripe_up": 1,
        'musdpay_monitor_probe_last_success_timestamp_seconds{probe="stripe",target="stripe"}': round(T0 - 3, 3),
    }
    for le, rate in PUBLIC_BUCKETS.items():
        series[f'musdpay_monitor_rpc_latency_seconds_bucket{{provider="public",le="{le}"}}'] = Growing(rate)
    return series


API_SERIES: dict[str, float | Growing] = {
    'musdpay_rpc_provider_state{provider="spectrum",state="unreachable"}': 1,
    'musdpay_rpc_provider_state{provider="spectrum",state="healthy"}': 0,
    'musdpay_rpc_provider_state{provider="public",state="healthy"}': 1,
    'musdpay_rpc_provider_state{provider="public",state="unreachable"}': 0,
    'musdpay_rpc_provider_selected{provider="spectrum"}': 0,
    'musdpay_rpc_provider_selected{provider="public"}': 1,
    'musdpay_rpc_request_duration_seconds_count{provider="spectrum",method="eth_call",outcome="success"}': Growing(
        API_CALLS_PER_SECOND
    ),
    'musdpay_onramp_status_transitions_total{from_status="creating",to_status="initialized",source="api"}': Growing(
        0.5
    ),
    'musdpay_onramp_status_transitions_total{from_status="requires_payment",to_status="fulfillment_complete",'
    'source="webhook"}': Growing(0.25),
    'musdpay_onramp_status_transitions_total{from_status="requires_payment",to_status="rejected",source="webhook"}': 7,
}


@dataclass
class Platform:
    prometheus: Prometheus
    api: Exposition
    monitor: Exposition
    home: Path

    def client(self) -> PrometheusClient:
        return PrometheusClient(self.prometheus.url)

    def value(self, expr: str, at: float) -> float | None:
        result = self.prometheus.query(expr, at=at)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("status")
    with serving_exposition() as api, serving_exposition() as monitor:
        api.set(API_SERIES)
        monitor.set(_monitor_series(spectrum_up=False))
        targets = {DEFAULT_JOBS.api: api.address, DEFAULT_JOBS.monitor: monitor.address}
        with running_prometheus(home, targets, None) as prometheus:
            yield Platform(prometheus, api, monitor, home)


def _shipped_alert(name: str, severity: str) -> dict[str, Any]:
    for path in sorted((ROOT / "alerts" / "generated").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == name and rule["labels"]["severity"] == severity:
                    return dict(rule)
    raise AssertionError(f"{name} ({severity}) is not in alerts/generated")


def _slo_objectives() -> dict[str, float]:
    slos = yaml.safe_load((ROOT / "alerts" / "slo.yml").read_text(encoding="utf-8"))["slos"]
    return {slo["name"]: float(slo["objective"]) / 100 for slo in slos}


def _quantile(q: float, cumulative: dict[str, float]) -> float:
    """histogram_quantile's linear interpolation, by hand, over the fixture's bucket rates."""
    bounds = sorted((float(le), count) for le, count in cumulative.items())
    rank = q * bounds[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in bounds:
        if count >= rank:
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    raise AssertionError("rank beyond the last bucket")


def _run_status(platform_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        musdpay_command("status", "--prometheus", platform_url, *args),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "240"},
    )


def _alert_states(platform: Platform, name: str) -> set[str]:
    return {a["metric"]["alertstate"] for a in platform.prometheus.query(f'ALERTS{{alertname="{name}"}}')}


def _data_ready(platform: Platform) -> bool:
    """Every series the figures come from, 2.5 s ago (the test reads 2 s back), and the alert."""
    now = time.time() - 2.5
    needed = [
        *(
            f'slo:sli_error:ratio_rate{window}{{slo="rpc-availability-{provider}"}}'
            for window in WINDOWS
            for provider in ("spectrum", "public")
        ),
        "histogram_quantile(0.5, sum by (le) "
        '(rate(musdpay_monitor_rpc_latency_seconds_bucket{provider="public"}[5m])))',
        "provider:musdpay_rpc_api_credits:rate1h",
    ]
    return all(platform.prometheus.query(expr, at=now) for expr in needed) and bool(
        _alert_states(platform, "RpcProviderDown")
    )


# --- the JSON document's shape ----------------------------------------------------------------------------------

NUM = (int, float)
OPT_NUM = (int, float, type(None))
OPT_STR = (str, type(None))
OPT_BOOL = (bool, type(None))
OPT_DICT = (dict, type(None))
SHAPE: dict[str, Any] = {
    "schema": str,
    "prometheus": str,
    "at": str,
    "exit_code": int,
    "critical_firing": list,
    "watchdog_firing": OPT_BOOL,
    "alerts": [
        {
            "name": str,
            "state": str,
            "severity": OPT_STR,
            "summary": OPT_STR,
            "runbook_url": OPT_STR,
            "active_since": OPT_STR,
            "value": OPT_NUM,
            "labels": dict,
        }
    ],
    "slos": [
        {
            "name": str,
            "service": OPT_STR,
            "objective": OPT_NUM,
            "error_budget_remaining": OPT_NUM,
            "burn_rates": dict,
            "fastest_burn": OPT_DICT,
        }
    ],
    "rpc": {
        "availability_window": str,
        "latency_window": str,
        "providers": [
            {
                "name": str,
                "up": OPT_BOOL,
                "api_state": OPT_STR,
                "api_selected": OPT_BOOL,
                "latency_p50_seconds": OPT_NUM,
                "latency_p99_seconds": OPT_NUM,
                "availability": OPT_NUM,
                "probes": OPT_NUM,
                "sla_target": OPT_NUM,
                "meets_sla": OPT_BOOL,
                "credits_projected": OPT_NUM,
                "credits_projected_with_api": OPT_NUM,
                "credit_quota": OPT_NUM,
                "credit_quota_ratio": OPT_NUM,
            }
        ],
    },
    "pipeline": {
        "window": str,
        "transitions": OPT_DICT,
        "sessions": OPT_DICT,
        "paid_not_delivered": (int, type(None)),
        "paid_not_delivered_by_status": OPT_DICT,
        "amount_at_risk": OPT_DICT,
        "oldest_undelivered_age_seconds": OPT_NUM,
        "stuck_sessions": (int, type(None)),
        "open_sessions": (int, type(None)),
        "webhooks": {
            "last_processed_at": OPT_STR,
            "age_seconds": OPT_NUM,
            "never": OPT_BOOL,
            "silence_seconds": OPT_NUM,
            "lag_p99_seconds": OPT_NUM,
        },
    },
    "stripe": {"up": OPT_BOOL, "last_success_age_seconds": OPT_NUM, "latency_p99_seconds": OPT_NUM},
    "targets": [{"job": str, "instance": str, "health": str, "last_error": OPT_STR}],
}


def _check_shape(value: Any, shape: Any, where: str = "$") -> None:
    if isinstance(shape, dict):
        assert isinstance(value, dict), where
        assert set(value) == set(shape), f"{where}: keys {sorted(value)} != {sorted(shape)}"
        for key, inner in shape.items():
            _check_shape(value[key], inner, f"{where}.{key}")
    elif isinstance(shape, list):
        assert isinstance(value, list), where
        for index, item in enumerate(value):
            _check_shape(item, shape[0], f"{where}[{index}]")
    else:
        assert isinstance(value, shape), f"{where}: {value!r} is not {shape}"
        if shape in (NUM, OPT_NUM) or shape is int:
            assert not isinstance(value, bool), where


# --- tests ---------------------------------------------------------------------------------------------------


def test_default_jobs_are_the_rules_selectors() -> None:
    values = load_thresholds().values
    assert (DEFAULT_JOBS.api, DEFAULT_JOBS.monitor) == (values["api_job"], values["monitor_job"])


def test_unreachable_prometheus_exits_1_with_one_clear_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for args in ((), ("--json",), ("--watch", "1")):
        result = _run_status(url, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert url in lines[0]
        assert "make run" in lines[0]
        assert "cannot be reached" in lines[0]


def test_figures_equal_promql_and_the_fixture(platform: Platform) -> None:
    wait_until(lambda: _data_ready(platform), timeout=30, interval=0.25, what="recorded SLIs and a pending alert")
    # Two seconds back: every scrape and rule evaluation up to then is stored, so both readers see the same data.
    now = datetime.now(UTC) - timedelta(seconds=2)
    at = now.timestamp()
    with platform.client() as client:
        status = collect_status(client, now)

    # SLOs: every one of slo.yml, with its objective; burn rates per recorded window and the fastest.
    objectives = _slo_objectives()
    slos = {s.name: s for s in status.slos}
    assert set(slos) == set(objectives)
    for name, objective in objectives.items():
        assert slos[name].objective == pytest.approx(objective, rel=1e-12)
    for name, error_ratio in (("rpc-availability-public", 0.1), ("rpc-availability-spectrum", 1.0)):
        slo = slos[name]
        budget = 1 - objectives[name]
        assert [b.window for b in slo.burn_rates] == WINDOWS
        for burn in slo.burn_rates:
            same = platform.value(
                f'slo:sli_error:ratio_rate{burn.window}{{slo="{name}"}}'
                f' / scalar(1 - slo:objective:ratio{{slo="{name}"}})',
                at,
            )
            assert burn.rate == pytest.approx(same, rel=1e-12), (name, burn)
            assert burn.rate == pytest.approx(error_ratio / budget, rel=1e-6), (name, burn)
        fastest = slo.fastest_burn
        assert fastest is not None
        assert fastest.rate == pytest.approx(max(b.rate for b in slo.burn_rates if b.rate is not None), rel=1e-9)
        assert fastest.window == "5m"  # every window burns alike here: a tie goes to the shortest
        remaining = platform.value(f'slo:error_budget_remaining:ratio{{slo="{name}"}}', at)
        assert slo.error_budget_remaining == pytest.approx(remaining, rel=1e-12)
        assert slo.error_budget_remaining == pytest.approx(1 - error_ratio / budget, rel=1e-6)
    # The API's SLOs have no requests behind them: no data, not a full budget.
    api = slos["api-availability"]
    assert api.error_budget_remaining is None
    assert api.fastest_burn is None
    assert all(b.rate is None for b in api.burn_rates)

    # RPC providers.
    providers = {p.name: p for p in status.providers}
    assert [p.name for p in status.providers] == ["spectrum", "public"]
    public, spectrum = providers["public"], providers["spectrum"]
    for q, attribute in ((0.5, "latency_p50_seconds"), (0.99, "latency_p99_seconds")):
        same = platform.value(
            f"histogram_quantile({q}, sum by (le) "
            f'(rate(musdpay_monitor_rpc_latency_seconds_bucket{{provider="public"}}[5m])))',
            at,
        )
        assert getattr(public, attribute) == pytest.approx(same, rel=1e-12)
        assert getattr(public, attribute) == pytest.approx(_quantile(q, PUBLIC_BUCKETS), rel=1e-6)
        assert getattr(spectrum, attribute) is None  # no observation in the window: no data, not 0
    same_availability = platform.value(
        'sum(increase(musdpay_monitor_rpc_probes_total{provider="public",outcome="success"}[30d]))'
        ' / sum(increase(musdpay_monitor_rpc_probes_total{provider="public"}[30d]))',
        at,
    )
    assert public.availability == pytest.approx(same_availability, rel=1e-12)
    assert public.availability == pytest.approx(1.8 / 2.0, rel=1e-6)
    assert public.sla_target == 0.95
    assert public.meets_sla is False
    assert spectrum.availability == 0.0
    assert spectrum.sla_target == 0.999
    assert spectrum.meets_sla is False
    assert (spectrum.up, public.up) == (False, True)
    assert (spectrum.api_state, public.api_state) == ("unreachable", "healthy")
    assert (spectrum.api_selected, public.api_selected) == (False, True)
    assert spectrum.credits_projected == SPECTRUM_PROJECTED
    assert spectrum.credit_quota == SPECTRUM_QUOTA
    with_api = platform.value('provider:musdpay_rpc_credits:month_projected{provider="spectrum"}', at)
    assert spectrum.credits_projected_with_api == pytest.approx(with_api, rel=1e-12)
    # rate(...[1h]) over the few seconds Prometheus holds is not the fixture's rate, but the API's calls add.
    assert spectrum.credits_projected_with_api > SPECTRUM_PROJECTED
    assert spectrum.credit_quota_ratio == pytest.approx(spectrum.credits_projected_with_api / SPECTRUM_QUOTA)
    assert public.credit_quota is None
    assert public.credit_quota_ratio is None

    # The pipeline.
    p = status.pipeline
    assert p.paid_not_delivered == 3 == platform.value("sum(musdpay_monitor_pipeline_undelivered_sessions)", at)
    assert p.paid_not_delivered_by_status == {"pending": 2, "missing": 1, "failed": 0}
    assert p.amount_at_risk == {"usd": Decimal("150.25"), "musd": Decimal("149.5")}
    assert p.oldest_undelivered_age_seconds == 7200
    assert p.stuck_sessions == 0
    assert p.open_sessions == 4
    assert p.sessions == {"fulfilled": 5, "rejected": 1, "abandoned": 0, "pending": 2}
    transitions = {
        r["metric"]["to_status"]: float(r["value"][1])
        for r in platform.prometheus.query(
            "sum by (to_status) (increase(musdpay_onramp_status_transitions_total[1h]))", at=at
        )
    }
    assert p.transitions == pytest.approx(transitions, rel=1e-12)
    assert set(transitions) == {"initialized", "fulfillment_complete", "rejected"}
    assert transitions["rejected"] == 0
    assert transitions["initialized"] == pytest.approx(2 * transitions["fulfillment_complete"], rel=1e-6)
    webhooks = p.webhooks
    assert webhooks.never is False
    assert webhooks.silence_seconds == 0
    assert webhooks.last_processed_at is not None
    assert webhooks.last_processed_at.timestamp() == pytest.approx(LAST_WEBHOOK, abs=1e-3)
    assert webhooks.age_seconds == pytest.approx(at - LAST_WEBHOOK, abs=1e-3)
    assert webhooks.lag_p99_seconds is None  # the API observed no webhook lag

    # Stripe: reachable, its last good read 3 s before the fixture started; no latency histogram.
    assert status.stripe.up is True
    assert status.stripe.last_success_age_seconds == pytest.approx(at - round(T0 - 3, 3), abs=1e-3)
    assert status.stripe.latency_p99_seconds is None

    # Alerts: the shipped RpcProviderDown (critical, primary) is pending or firing, with its runbook.
    down = [a for a in status.alerts if a.name == "RpcProviderDown"]
    shipped = _shipped_alert("RpcProviderDown", "critical")
    assert len(down) == 1
    assert down[0].severity == "critical"
    assert down[0].labels["provider"] == "spectrum"
    assert down[0].runbook_url == shipped["annotations"]["runbook_url"]
    assert {t.job: t.health for t in status.targets} == {"musdpay-api": "up", "musdpay-monitor": "up"}

    # What no data looks like on screen and in JSON: said, never 0 or healthy.
    console = Console(width=240, record=True, file=open("/dev/null", "w"))  # noqa: SIM115 - closed with console
    console.print(render(status))
    screen = console.export_text()
    console.file.close()
    spectrum_row = next(line for line in screen.splitlines() if line.strip("│ ").startswith("spectrum"))
    assert spectrum_row.count("no data") == 2, spectrum_row  # p50 and p99
    api_row = next(line for line in screen.splitlines() if "api-availability" in line)
    assert "no data" in api_row
    assert "%" in api_row
    lag_row = next(line for line in screen.splitlines() if "webhook lag p99" in line)
    assert "no data" in lag_row
    assert "150.25 USD" in screen
    assert "149.5 MUSD" in screen
    document = to_jsonable(status)
    _check_shape(document, SHAPE)
    json_spectrum = next(r for r in document["rpc"]["providers"] if r["name"] == "spectrum")
    assert json_spectrum["latency_p50_seconds"] is None
    assert json_spectrum["latency_p99_seconds"] is None
    assert document["pipeline"]["amount_at_risk"] == {"musd": "149.5", "usd": "150.25"}


def test_critical_alert_exits_2_with_its_runbook_then_0_when_healed(platform: Platform) -> None:
    shipped = _shipped_alert("RpcProviderDown", "critical")
    assert shipped["for"] == "30s"  # what this test waits for; a longer `for` would need a pending-state test
    wait_until(lambda: "firing" in _alert_states(platform, "RpcProviderDown"), timeout=60, interval=0.5,
               what="RpcProviderDown firing")  # fmt: skip

    shown = _run_status(platform.prometheus.url)
    assert shown.returncode == 2, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "RpcProviderDown" in line and "│" in line)
    assert "firing" in row
    assert "critical" in row
    assert shipped["annotations"]["runbook_url"] in shown.stdout.replace("\n", "")
    assert "CRITICAL: RpcProviderDown" in shown.stdout

    as_json = _run_status(platform.prometheus.url, "--json")
    assert as_json.returncode == 2, as_json.stderr
    document = json.loads(as_json.stdout)
    _check_shape(document, SHAPE)
    assert document["schema"] == SCHEMA
    assert document["exit_code"] == 2
    assert document["critical_firing"] == ["RpcProviderDown"]
    down = next(a for a in document["alerts"] if a["name"] == "RpcProviderDown")
    assert down["state"] == "firing"
    assert down["severity"] == "critical"
    assert down["runbook_url"] == shipped["annotations"]["runbook_url"]
    assert datetime.fromisoformat(down["active_since"].replace("Z", "+00:00")) < datetime.now(UTC)
    # The always-firing Watchdog proves the rules run: it is a flag of the view, not an alert of the on-call.
    assert document["watchdog_firing"] is True
    assert "Watchdog" not in {a["name"] for a in document["alerts"]}
    assert "Watchdog firing: rules evaluated" in shown.stdout

    platform.monitor.set(_monitor_series(spectrum_up=True))
    wait_until(lambda: "firing" not in _alert_states(platform, "RpcProviderDown"), timeout=20, interval=0.25,
               what="RpcProviderDown resolved")  # fmt: skip
    healed = _run_status(platform.prometheus.url, "--json")
    assert healed.returncode == 0, healed.stdout
    document = json.loads(healed.stdout)
    assert document["critical_firing"] == []
    assert document["exit_code"] == 0
    assert next(r for r in document["rpc"]["providers"] if r["name"] == "spectrum")["up"] is True
    assert _run_status(platform.prometheus.url).returncode == 0


@pytest.mark.parametrize("as_json", [False, True], ids=["tables", "json"])
def test_watch_refreshes_until_sigint_and_exits_0(platform: Platform, as_json: bool) -> None:
    log = platform.home / f"watch-{as_json}.log"
    args = ["status", "--prometheus", platform.prometheus.url, "--watch", "0.3", *(["--json"] if as_json else [])]
    process = start_process(musdpay_command(*args), env={"COLUMNS": "200"}, log_path=log)
    try:
        if as_json:

            def refreshes() -> list[dict[str, Any]]:
                lines = [line for line in process.log().splitlines() if line.startswith("{")]
                complete = [json.loads(line) for line in lines[:-1]]  # the last line may be half-written
                return complete if len(complete) >= 2 else []

            documents = wait_until(refreshes, timeout=30, interval=0.1, what="two JSON refreshes")
            for document in documents:
                _check_shape(document, SHAPE)
            assert len({d["at"] for d in documents}) == len(documents)  # each refresh is a new reading
        else:
            wait_until(lambda: process.log().count("musdpay status  ") >= 2, timeout=30, interval=0.1,
                       what="two refreshes")  # fmt: skip
        assert process.alive(), process.log()
        process.signal(signal.SIGINT)
        assert process.popen.wait(timeout=15) == 0, process.log()
        assert "Traceback" not in process.log()
    finally:
        process.kill()


def test_to_json_is_one_line_without_nan(platform: Platform) -> None:
    with platform.client() as client:
        status: Status = collect_status(client, datetime.now(UTC))
    text = to_json(status)
    assert "\n" not in text
    assert "NaN" not in text
    assert json.loads(text)["prometheus"] == platform.prometheus.url
