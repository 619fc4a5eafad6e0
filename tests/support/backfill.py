"""A real Prometheus holding history the test chose: series written as OpenMetrics, turned into TSDB blocks by
`promtool tsdb create-blocks-from openmetrics`, and served by `prometheus` from that directory.

    history = OpenMetrics()
    history.add("musdpay_monitor_rpc_probes_total", {"provider": "spectrum", "outcome": "success"}, points)
    with backfilled_prometheus(tmp_path, history, scrape_interval="5m") as prometheus:
        prometheus.value('sum(increase(musdpay_monitor_rpc_probes_total[1d]))', at=end)

What promtool 2.42 needs: timestamps in seconds, each series' samples in time order, every sample of a metric
name together, and a final `# EOF`. Blocks are cut at `--max-block-duration` (a hidden flag; the default 2 h makes
one block per 2 h, 360 for 30 days, and takes 20 s). Prometheus serves them once its retention (counted back from
the newest block, not from the wall clock) covers them; the head stays empty, so nothing overlaps.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.alerts.support import promtool, serving_prometheus
from tests.support.services import ChildProcess, free_port

__all__ = ["BackfilledPrometheus", "OpenMetrics", "backfilled_prometheus", "label_value"]


def label_value(value: str) -> str:
    """A label value escaped for the exposition formats (backslash, double quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


@dataclass
class OpenMetrics:
    """Series to backfill, grouped by metric name in the order they were first added."""

    _families: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, labels: Mapping[str, str], points: Iterable[tuple[int, float]]) -> None:
        selector = ",".join(f'{key}="{label_value(value)}"' for key, value in sorted(labels.items()))
        series = f"{name}{{{selector}}}" if selector else name
        lines = self._families.setdefault(name, [])
        previous = None
        for timestamp, value in points:
            if previous is not None and timestamp <= previous:
                raise ValueError(f"{series}: timestamps must increase ({timestamp} after {previous})")
            lines.append(f"{series} {_number(value)} {int(timestamp)}")
            previous = timestamp

    def text(self) -> str:
        return "".join(line + "\n" for lines in self._families.values() for line in lines) + "# EOF\n"


@dataclass
class BackfilledPrometheus:
    url: str
    process: ChildProcess
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))  # one connection, reused

    def query(self, expr: str, *, at: float) -> list[dict[str, Any]]:
        response = self.client.get(f"{self.url}/api/v1/query", params={"query": expr, "time": at})
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str, *, at: float) -> float | None:
        """The value of a query giving at most one series (None when it gives none)."""
        result = self.query(expr, at=at)
        assert len(result) <= 1, f"{expr}: {len(result)} series"
        return float(result[0]["value"][1]) if result else None


def create_blocks(history: OpenMetrics, directory: Path, *, max_block_duration: str = "744h") -> None:
    """TSDB blocks of `history` in `directory` (created), through promtool."""
    directory.mkdir(parents=True, exist_ok=True)
    source = directory.parent / f"{directory.name}.om.txt"
    source.write_text(history.text(), encoding="utf-8")
    args = [
        promtool(),
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        f"--max-block-duration={max_block_duration}",
        "--quiet",
        str(source),
        str(directory),
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(f"promtool failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@contextmanager
def backfilled_prometheus(
    tmp_path: Path,
    history: OpenMetrics | None,
    *,
    scrape_interval: str = "5m",
    evaluation_interval: str = "5m",
    retention: str = "3650d",
) -> Iterator[BackfilledPrometheus]:
    """Prometheus serving `history` (None: an empty Prometheus), with no scrape target and no rule."""
    home = tmp_path / f"prometheus-{free_port()}"
    home.mkdir()
    data = home / "data"
    if history is not None:
        create_blocks(history, data)
    config = home / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {evaluation_interval}\n",
        encoding="utf-8",
    )
    with serving_prometheus(home, config, f"--storage.tsdb.retention.time={retention}") as (url, process):
        prometheus = BackfilledPrometheus(url=url, process=process)
        try:
            yield prometheus
        finally:
            prometheus.client.close()
