"""bench/monitor.py runs end to end (briefly) and writes its section, other sections untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.monitor import BLACKBOX, MARK_END, MARK_START
from tests.sandbox.chain.support import require_anvil
from tests.support.services import binary, require

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    require_anvil()
    require(binary(BLACKBOX) is not None, f"{BLACKBOX} not installed (bash scripts/ensure-tools.sh)")
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\n<!-- bench:api:start -->\napi\n<!-- bench:api:end -->\n")
    args = ["--targets", "4", "--interval", "0.5", "--duration", "2", "--output", str(output)]
    completed = subprocess.run(
        [sys.executable, "bench/monitor.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    text = output.read_text()
    assert text.startswith("# Benchmarks\n\n<!-- bench:api:start -->\napi\n<!-- bench:api:end -->\n")
    section = text[text.index(MARK_START) : text.index(MARK_END)]
    assert "| prometheus-blackbox-exporter |" in section
    assert "| musdpay monitor (same POST) |" in section
    assert "| musdpay monitor (default) |" in section
    assert "CPU per probe, monitor (same POST) / blackbox exporter" in section
    assert "bench/monitor.py --targets 4 --interval 0.5 --duration 2" in section
