"""bench/api.py: its markdown section is replaced in place, and the whole benchmark runs end to end (briefly)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.api import MARK_END, MARK_START, write_section

ROOT = Path(__file__).resolve().parents[2]


def test_section_is_created_then_replaced_keeping_other_sections(tmp_path: Path) -> None:
    path = tmp_path / "docs" / "benchmarks.md"
    write_section(path, f"{MARK_START}\nfirst\n{MARK_END}\n")
    assert path.read_text().startswith("# Benchmarks")
    path.write_text(path.read_text() + "\n<!-- bench:other:start -->\nother\n<!-- bench:other:end -->\n")

    write_section(path, f"{MARK_START}\nsecond\n{MARK_END}\n")

    text = path.read_text()
    assert "second" in text
    assert "first" not in text
    assert text.count(MARK_START) == 1
    assert "<!-- bench:other:start -->\nother\n<!-- bench:other:end -->" in text


@pytest.mark.integration
def test_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    args = ["--duration", "0.5", "--warmup", "0.2", "--rounds", "1", "--max-requests", "2000", "--output", str(output)]
    completed = subprocess.run(
        [sys.executable, "bench/api.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    text = output.read_text()
    for needle in (MARK_START, MARK_END, "### session-create", "### webhook-ingest", "bench/api.py --duration 0.5"):
        assert needle in text
    assert "had errors" not in text, text


@pytest.mark.integration
def test_telemetry_cost_runs_against_musdpay_with_telemetry_off(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    args = ["--duration", "0.5", "--warmup", "0.2", "--rounds", "1", "--max-requests", "2000"]
    args += ["--against", "telemetry-off", "--scenario", "webhook-ingest", "--output", str(output)]
    completed = subprocess.run(
        [sys.executable, "bench/api.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    text = output.read_text()
    assert MARK_START not in text  # its own section, next to the baseline comparison's
    for needle in ("<!-- bench:telemetry:start -->", "<!-- bench:telemetry:end -->", "### webhook-ingest"):
        assert needle in text
    assert "| **telemetry on / telemetry off** |" in text
    assert "p99 added < 1 ms (median of the rounds, one request at a time)" in text
    # The added latency is measured unsaturated, one connection per app, every round listed.
    assert re.search(r"^\| 1 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [+-][\d.]+ \|$", text, re.MULTILINE), text
    assert "had errors" not in text, text
