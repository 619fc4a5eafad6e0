"""`musdpay report` against a real Prometheus holding 30 known days (backfilled with promtool): a spectrum outage
on one day breaks its 99.9% SLA, known payment volume and fees, alerts that fired, a provider whose name is hostile
HTML. The report runs as the real command; its figures are checked against the test's own PromQL on the same
Prometheus, and its page against what "self-contained" and "escaped" mean."""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from operate.report_period import Period, parse_duration, parse_time
from tests.support.backfill import BackfilledPrometheus, OpenMetrics, backfilled_prometheus
from tests.support.services import ROOT, free_port, musdpay_command

pytestmark = pytest.mark.integration

DAY = 86400
STEP = 300  # the history's resolution: one sample every 5 minutes
END = (int(time.time()) // DAY - 1) * DAY  # yesterday's midnight (UTC): 30 whole days before it
START = END - 30 * DAY
BROKEN = 17  # the day spectrum was down from 10:00 to 12:00
OUTAGE = (START + BROKEN * DAY + 10 * 3600, START + BROKEN * DAY + 12 * 3600)
EVIL = '"><script>alert(1)</script><img src="https://attacker.test/x.png">$x$ & <b>'
PRICE = Decimal("169")
QUOTA = 10_000_000


def _day(index: int) -> date:
    return datetime.fromtimestamp(START + index * DAY, tz=UTC).date()


def _history() -> OpenMetrics:
    """30 days at 5-minute resolution; each counter's increment is for the 5 minutes before its sample."""
    times = range(START, END + 1, STEP)
    om = OpenMetrics()

    def down(t: int) -> bool:
        return OUTAGE[0] < t <= OUTAGE[1]

    def counter(name: str, labels: dict[str, str], increment: object) -> None:
        total, points = 0.0, []
        for i, t in enumerate(times):
            if i:
                total += increment(t) if callable(increment) else float(increment)  # type: ignore[arg-type]
            points.append((t, total))
        om.add(name, labels, points)

    def gauge(name: str, labels: dict[str, str], value: float) -> None:
        om.add(name, labels, [(t, value) for t in times])

    probes = "musdpay_monitor_rpc_probes_total"
    counter(probes, {"provider": "spectrum", "outcome": "success"}, lambda t: 0.0 if down(t) else 60.0)
    counter(probes, {"provider": "spectrum", "outcome": "failure"}, lambda t: 60.0 if down(t) else 0.0)
    counter(probes, {"provider": "public", "outcome": "success"}, 59)  # 98.3%, above its 95%
    counter(probes, {"provider": "public", "outcome": "failure"}, 1)
    counter(probes, {"provider": EVIL, "outcome": "success"}, 60)
    counter(probes, {"provider": EVIL, "outcome": "failure"}, 0)
    for provider, target in (("spectrum", 0.999), ("public", 0.95), (EVIL, 0.99)):
        gauge("musdpay_monitor_rpc_sla_target_ratio", {"provider": provider}, target)
    buckets = {"0.05": 50, "0.1": 59, "0.25": 60, "0.5": 60, "+Inf": 60}  # cumulative, per 5 minutes
    for provider in ("spectrum", "public"):
        for le, n in buckets.items():
            counter(
                "musdpay_monitor_rpc_latency_seconds_bucket",
                {"provider": provider, "le": le},
                lambda t, n=n, p=provider: 0.0 if p == "spectrum" and down(t) else float(n),
            )
    for provider in ("spectrum", "public"):
        counter("musdpay_monitor_rpc_credits_used_total", {"provider": provider}, 120)
    gauge("musdpay_monitor_rpc_month_credit_quota", {"provider": "spectrum"}, QUOTA)
    gauge("musdpay_monitor_rpc_month_credits_projected", {"provider": "spectrum"}, 1_036_800)
    volume = "musdpay_onramp_payment_volume_total"
    counter(volume, {"currency": "usd", "status": "fulfillment_complete"}, 8.375)
    counter(volume, {"currency": "usd", "status": "rejected"}, 1.25)
    transitions = "musdpay_onramp_status_transitions_total"
    done = {"from_status": "fulfillment_processing", "to_status": "fulfillment_complete", "source": "webhook"}
    counter(transitions, done, 1)
    rejected = {"from_status": "requires_payment", "to_status": "rejected", "source": "webhook"}
    counter(transitions, rejected, lambda t: 1.0 if (t // STEP) % 4 == 0 else 0.0)
    # Transaction fees vary by day (0.25, 0.5, 0.75 per 5 minutes), network fees do not.
    day_of = lambda t: (t - 1 - START) // DAY  # noqa: E731 - the day an increment belongs to
    counter(
        "musdpay_onramp_fees_total", {"currency": "usd", "fee": "transaction"}, lambda t: 0.25 * (1 + day_of(t) % 3)
    )
    counter("musdpay_onramp_fees_total", {"currency": "usd", "fee": "network"}, 0.125)
    for window in ("1h", "24h"):
        gauge("musdpay_monitor_onramp_success_ratio", {"window": window}, 0.8)
        gauge("musdpay_monitor_stripe_refund_ratio", {"window": window}, 0.01)
        gauge("musdpay_monitor_stripe_dispute_ratio", {"window": window}, 0.002)
    firing = {"alertstate": "firing", "severity": "critical"}
    om.add(
        "ALERTS",
        {"alertname": "RpcProviderDown", "provider": "spectrum", **firing},
        [(t, 1.0) for t in times if OUTAGE[0] + STEP < t <= OUTAGE[1]],  # pending for its first 5 minutes
    )
    om.add(
        "ALERTS",
        {"alertname": "RpcProviderHeadLag", "provider": EVIL, **firing},
        [(t, 1.0) for t in range(START + 3 * DAY, START + 3 * DAY + 3600, STEP)],
    )
    om.add(  # pending only: it never fired
        "ALERTS",
        {"alertname": "RpcProviderStalled", "provider": "public", "alertstate": "pending", "severity": "warning"},
        [(t, 1.0) for t in range(START + 5 * DAY, START + 5 * DAY + 600, STEP)],
    )
    return om


@dataclass
class Page(HTMLParser):
    """The tags and text of a report: what a browser would fetch, and its figures by key."""

    tags: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    figures: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (data-value, text)
    breaches: dict[str, list[str]] = field(default_factory=dict)  # provider -> days
    durations: dict[str, int] = field(default_factory=dict)  # alertname -> seconds of its (last) episode
    text: list[str] = field(default_factory=list)
    _open: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    _row: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.tags.append((tag, found))
        self._open.append((tag, found))
        if tag == "tr":
            self._row = []
        if tag == "li" and "data-day" in found:
            provider = next((a["data-provider"] for t, a in reversed(self._open) if t == "ul"), "")
            self.breaches.setdefault(provider, []).append(found["data-day"])

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if not self._open:
            return
        tag, attrs = self._open[-1]
        if tag == "td":
            self._row.append(data)
            if "data-figure" in attrs:
                self.figures[attrs["data-figure"]] = (attrs["data-value"], data)
            if "data-seconds" in attrs and self._row:
                self.durations[self._row[0]] = int(attrs["data-seconds"])

    def value(self, key: str) -> float | None:
        raw = self.figures[key][0]
        return float(raw) if raw else None


def _run_report(prometheus_url: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        musdpay_command("report", "--prometheus", prometheus_url, "--out", str(out), *args),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


def _parse(path: Path) -> tuple[str, Page]:
    html = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(html)
    page.close()
    return html, page


@dataclass
class Generated:
    prometheus: BackfilledPrometheus
    html: str
    page: Page


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    tmp = tmp_path_factory.mktemp("report")
    config = tmp / "monitor.yml"
    config.write_text(
        "rpc:\n  providers:\n    spectrum:\n      sla_target_ratio: 0.999\n"
        f"      monthly_credit_quota: {QUOTA}\n"
        f'      plan: {{name: "Spectrum Business", monthly_price_usd: {PRICE}}}\n',
        encoding="utf-8",
    )
    with backfilled_prometheus(tmp, _history()) as prometheus:
        out = tmp / "report.html"
        until = datetime.fromtimestamp(END, tz=UTC).isoformat()
        done = _run_report(prometheus.url, out, "--since", "30d", "--until", until, "--monitor-config", str(config))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(out)
        html, page = _parse(out)
        yield Generated(prometheus, html, page)


def test_the_page_is_self_contained(generated: Generated) -> None:
    images = 0
    for tag, attrs in generated.page.tags:
        assert tag not in {"script", "link", "iframe", "object", "embed"}, (tag, attrs)
        for name in ("src", "href", "srcset", "data", "action"):
            value = attrs.get(name, "")
            assert not value.lower().startswith(("http:", "https:", "//")), (tag, attrs)
            if name == "href" and name in attrs:
                assert value.startswith("#"), (tag, attrs)  # only links within the page
        if tag == "img":
            prefix = "data:image/png;base64,"
            assert attrs["src"].startswith(prefix)
            assert base64.b64decode(attrs["src"][len(prefix) :], validate=True).startswith(b"\x89PNG\r\n\x1a\n")
            images += 1
    assert images >= 8  # availability x3, latency x2, credits x2, ratios x3, volume, fees, alerts
    assert "@import" not in generated.html
    assert "url(" not in generated.html


def test_the_broken_day_of_spectrum_is_named_and_no_healthy_day(generated: Generated) -> None:
    page = generated.page
    broken = _day(BROKEN).isoformat()
    assert page.breaches == {"spectrum": [broken]}  # public (98.3% > 95%) and the third provider met theirs
    for index in range(30):
        key = f"availability/spectrum/{_day(index).isoformat()}"
        assert page.value(key) == (pytest.approx(264 / 288) if index == BROKEN else 1.0)


def test_figures_equal_the_same_promql_on_the_same_prometheus(generated: Generated) -> None:
    prometheus, page = generated.prometheus, generated.page
    probes = "musdpay_monitor_rpc_probes_total"
    for index in range(30):
        day, at = _day(index).isoformat(), START + (index + 1) * DAY
        for provider in ("spectrum", "public"):
            expected = prometheus.value(
                f'sum(increase({probes}{{provider="{provider}",outcome="success"}}[1d]))'
                f' / sum(increase({probes}{{provider="{provider}"}}[1d]))',
                at=at,
            )
            assert page.value(f"availability/{provider}/{day}") == expected
        for fee in ("transaction", "network"):
            expected = prometheus.value(
                f'sum(increase(musdpay_onramp_fees_total{{currency="usd",fee="{fee}"}}[1d]))', at=at
            )
            assert page.value(f"fees/usd/{fee}/{day}") == expected
        # and the fees are the ones written: 288 five-minute increments a day
        assert page.value(f"fees/usd/transaction/{day}") == pytest.approx(288 * 0.25 * (1 + index % 3))
    period = prometheus.value(
        f'sum(increase({probes}{{provider="spectrum",outcome="success"}}[30d]))'
        f' / sum(increase({probes}{{provider="spectrum"}}[30d]))',
        at=END,
    )
    assert page.value("availability/spectrum/period") == period == pytest.approx(1 - 24 / (30 * 288))
    volume = prometheus.value(
        'sum(increase(musdpay_onramp_payment_volume_total{currency="usd",status="fulfillment_complete"}[30d]))',
        at=END,
    )
    assert page.value("volume/usd/fulfillment_complete") == volume == pytest.approx(30 * 288 * 8.375)
    success = prometheus.value(
        'sum(increase(musdpay_onramp_status_transitions_total{to_status="fulfillment_complete"}[30d]))'
        ' / sum(increase(musdpay_onramp_status_transitions_total{to_status=~"fulfillment_complete|rejected"}[30d]))',
        at=END,
    )
    assert page.value("success/period") == success == pytest.approx(0.8)
    p99 = prometheus.value(
        "histogram_quantile(0.99, sum by (le) "
        '(increase(musdpay_monitor_rpc_latency_seconds_bucket{provider="public"}[30d])))',
        at=END,
    )
    assert page.value("latency/0.99/public") == p99
    assert page.value("stripe_refund_ratio/worst/24h") == pytest.approx(0.01)


def test_cost_is_the_share_of_the_quota_times_the_plans_price(generated: Generated) -> None:
    prometheus, page = generated.prometheus, generated.page
    used = prometheus.value('sum(increase(musdpay_monitor_rpc_credits_used_total{provider="spectrum"}[30d]))', at=END)
    projected = prometheus.value(
        'last_over_time(musdpay_monitor_rpc_month_credits_projected{provider="spectrum"}[30d])', at=END
    )
    assert used is not None
    assert projected is not None
    assert page.value("credits/used/spectrum") == used == pytest.approx(120 * 288 * 30)
    for figure, credits in (("used", used), ("projected", projected)):
        expected = (Decimal(repr(credits)) / Decimal(QUOTA) * PRICE).quantize(Decimal("0.01"), ROUND_HALF_UP)
        assert Decimal(page.figures[f"cost/{figure}/spectrum"][0]) == expected
        assert page.figures[f"cost/{figure}/spectrum"][1] == f"${expected:,}"
    assert page.figures["cost/used/public"] == ("", "no plan")  # public has no plan in the config
    assert "Spectrum Business" in generated.html
    assert "Cost = credits / monthly credit quota" in generated.html


def test_alerts_that_fired_and_for_how_long(generated: Generated) -> None:
    page = generated.page
    step = 300  # max(range / 10000, the evaluation interval of 5 minutes)
    assert f"resolution of <strong>{step} s</strong>" in generated.html
    assert abs(page.durations["RpcProviderDown"] - (OUTAGE[1] - OUTAGE[0] - STEP)) <= step
    assert abs(page.durations["RpcProviderHeadLag"] - 3600) <= step
    assert "RpcProviderStalled" not in generated.html  # pending, never firing


def test_label_values_from_prometheus_are_escaped(generated: Generated) -> None:
    html, page = generated.html, generated.page
    for raw in ("<script>", 'attacker.test/x.png">', "<b>"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert EVIL in " ".join(page.text)  # shown as text, whole
    assert page.value(f"availability/{EVIL}/period") == 1.0
    assert "ALERTS{alertstate=&quot;firing&quot;}" in html  # the queries are named, escaped too


def test_an_empty_prometheus_gives_a_report_of_no_data(tmp_path: Path) -> None:
    with backfilled_prometheus(tmp_path, None, scrape_interval="15s", evaluation_interval="15s") as prometheus:
        out = tmp_path / "empty.html"
        done = _run_report(prometheus.url, out, "--since", "90m", "--monitor-config", str(tmp_path / "absent.yml"))
        assert done.returncode == 1  # a config named explicitly must exist
        assert "cannot read" in done.stderr
        done = _run_report(prometheus.url, out, "--since", "90m")  # ./monitor.yml: the repository's
        assert done.returncode == 0, done.stderr
        html, page = _parse(out)
    assert "no data" in html
    from_prometheus = {k: v for k, v in page.figures.items() if not v[1].endswith("(config)")}  # the quota
    assert from_prometheus
    assert all(value == "" for value, _ in from_prometheus.values()), from_prometheus
    assert "0.000%" not in html  # nor 100.000%
    assert "Spectrum Business" in html  # the plan of ./monitor.yml, with "no data" for its cost
    assert "No alert fired" in html


def test_an_unreachable_prometheus_is_one_line_and_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "never.html"
    done = _run_report(f"http://127.0.0.1:{free_port()}", out, "--since", "24h")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "cannot be reached" in lines[0]
    assert not out.exists()


def test_durations_times_days_and_steps() -> None:
    assert [parse_duration(d) for d in ("30d", "7d", "24h", "90m", "1h30m", "15s")] == [
        30 * DAY,
        7 * DAY,
        DAY,
        5400,
        5400,
        15,
    ]
    for bad in ("", "30", "d", "-1d", "1x", "0s", "1d garbage"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    assert parse_time("2026-05-01") == datetime(2026, 5, 1, tzinfo=UTC)
    assert parse_time("2026-05-01T02:00:00+02:00") == datetime(2026, 5, 1, tzinfo=UTC)
    assert parse_time("1777593600") == datetime.fromtimestamp(1777593600, tz=UTC)
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday")
    # A few minutes of a live run: one partial day, steps no finer than the scrape interval.
    live = Period.of(
        parse_time("2026-05-01T23:58:00Z"), parse_time("2026-05-02T00:03:00Z"), scrape_interval=1, evaluation_interval=1
    )
    assert [(d.day.isoformat(), d.seconds, d.full) for d in live.days()] == [
        ("2026-05-01", 120, False),
        ("2026-05-02", 180, False),
    ]
    assert (live.step, live.rate_window, live.alert_step) == (2, 4, 1)
    month = Period.of(parse_time("2026-05-01"), parse_time("2026-05-31"), scrape_interval=15, evaluation_interval=15)
    assert len(month.days()) == 30
    assert all(d.full for d in month.days())
    assert (month.step, month.rate_window, month.alert_step) == (12960, 12960, 260)
