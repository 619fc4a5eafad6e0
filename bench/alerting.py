"""Time to notify: how long after a hard outage of the primary RPC provider PagerDuty and Slack hear of it, and
how long after healing they hear it resolved, with the shipped intervals.

    .venv/bin/python bench/alerting.py [--runs N] [--quick] [--output docs/benchmarks.md]

Starts the stack of tests/alerts/livestack.py (anvil, RPC fault proxies, PostgreSQL, the API, `musdpay monitor`,
Prometheus with alerts/generated, Alertmanager with alerts/alertmanager.yml, the capture receivers) with what
ships: Prometheus scraping and evaluating every 15 s (prometheus.yml), the monitor probing RPC every 5 s
(monitor.yml), `RpcProviderDown` `for: 30s` (alerts/thresholds.yml), the critical route's group_wait 10 s and
group_interval 1 m (alerts/alertmanager.yml). Then, per run: the primary proxy goes down (connections refused),
and the clock runs until the capture receivers hold the PagerDuty trigger and the Slack message; then it heals,
and the clock runs until the PagerDuty resolve. `--quick` uses the tests' 1 s intervals (a smoke run).

Target: 90 s or less from the outage to the page. The budget: detection by a probe (<= 5 s) + the next scrape
(<= 15 s) + the next evaluation (<= 15 s) + `for` (30 s, counted in evaluations) + group_wait (10 s).
Writes its section between the `bench:alerting` markers of the output file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench`, `tests` and the packages importable
    sys.path.insert(0, str(ROOT))

from bench.api import code_version, exact_command, machine, write_section  # noqa: E402
from tests.alerts.livestack import LiveStack, running_live_stack  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

MARK_START = "<!-- bench:alerting:start -->"
MARK_END = "<!-- bench:alerting:end -->"
TARGET_SECONDS = 90.0


@dataclass
class Run:
    to_pagerduty: float
    to_slack: float
    to_resolve: float


def _arrived(live: LiveStack, kind: str, seen: set[int], needle: str) -> list[dict[str, Any]]:
    return [
        item
        for item in live.receivers.received(kind)
        if item["id"] not in seen and needle in str(item["payload"]) and "RpcProviderDown" in str(item["payload"])
    ]


def one_run(live: LiveStack, *, timeout: float) -> Run:
    # Start from a quiet state: spectrum probed up, nothing pending.
    wait_until(
        lambda: (
            live.prometheus.query('musdpay_monitor_rpc_up{provider="spectrum"} == 1')
            and not live.prometheus.query('ALERTS{alertname="RpcProviderDown"}')
        ),
        timeout=timeout,
        interval=0.5,
        what="spectrum up and no RpcProviderDown",
    )
    seen = {item["id"] for item in live.receivers.received()}
    live.spectrum.set_faults(down=True)
    start = time.monotonic()
    try:
        wait_until(lambda: _arrived(live, "pagerduty", seen, "'trigger'"), timeout=timeout, interval=0.1, what="page")
        to_pagerduty = time.monotonic() - start
        wait_until(lambda: _arrived(live, "slack", seen, "FIRING"), timeout=timeout, interval=0.1, what="Slack")
        to_slack = time.monotonic() - start
    finally:
        live.spectrum.heal()
    healed = time.monotonic()
    wait_until(lambda: _arrived(live, "pagerduty", seen, "'resolve'"), timeout=timeout, interval=0.1, what="resolve")
    return Run(to_pagerduty, to_slack, time.monotonic() - healed)


def render(runs: list[Run], *, quick: bool) -> str:
    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} s" + (
            f" ({min(values):.1f}-{max(values):.1f})" if len(values) > 1 else ""
        )

    pages = [run.to_pagerduty for run in runs]
    verdict = "meets" if max(pages) <= TARGET_SECONDS else "MISSES"
    intervals = (
        "the tests' 1 s intervals (smoke run, not the shipped ones)"
        if quick
        else "the shipped intervals: scrape and evaluation 15 s, RPC probe 5 s, `for: 30s`, group_wait 10 s, "
        "group_interval 1 m"
    )
    return "\n".join(
        [
            MARK_START,
            "## Time to notify",
            "",
            f"A hard outage of the primary RPC provider (its proxy refuses connections) to the capture receivers, "
            f"{len(runs)} run(s), with {intervals}. Median (min-max).",
            "",
            "| from the outage to | time |",
            "|---|---|",
            f"| the PagerDuty trigger (critical) | {cell(pages)} |",
            f"| the Slack message | {cell([run.to_slack for run in runs])} |",
            f"| from healing to the PagerDuty resolve | {cell([run.to_resolve for run in runs])} |",
            "",
            f"Target: the page within {TARGET_SECONDS:.0f} s: **{verdict}** (worst {max(pages):.1f} s).",
            "",
            f"Command: `{exact_command()}`; {machine()}; code {code_version()}; "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
            MARK_END,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="the tests' 1 s intervals instead of the shipped ones")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    shipped: dict[str, Any] = {
        "scrape_interval": "15s",
        "evaluation_interval": "15s",
        "fast_alertmanager": False,
        "rpc_interval": 5.0,
    }
    settings: dict[str, Any] = {} if args.quick else shipped
    timeout = 60.0 if args.quick else 240.0
    with (
        tempfile.TemporaryDirectory(prefix="musdpay-bench-alerting-") as scratch,
        running_live_stack(Path(scratch), real_run=False, **settings) as live,
    ):
        runs = [one_run(live, timeout=timeout) for _ in range(args.runs)]
    section = render(runs, quick=args.quick)
    write_section(args.output, section, MARK_START, MARK_END)
    print(section)
    return 0 if max(run.to_pagerduty for run in runs) <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
