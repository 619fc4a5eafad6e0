"""bench/alerting.py runs end to end (with the tests' short intervals) and writes its section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.alerting import MARK_END, MARK_START
from tests.alerts.support import alertmanager_binary, prometheus_binary
from tests.sandbox.chain.support import require_anvil

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    require_anvil()
    prometheus_binary()
    alertmanager_binary()
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\n<!-- bench:api:start -->\napi\n<!-- bench:api:end -->\n")
    completed = subprocess.run(
        [sys.executable, "bench/alerting.py", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    text = output.read_text()
    assert text.startswith("# Benchmarks\n\n<!-- bench:api:start -->\napi\n<!-- bench:api:end -->\n")
    section = text[text.index(MARK_START) : text.index(MARK_END)]
    assert "| the PagerDuty trigger (critical) |" in section
    assert "**meets**" in section
