"""bench/delivery.py runs end to end (briefly) and writes its section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.delivery import MARK_END, MARK_START
from tests.sandbox.chain.support import require_anvil

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    require_anvil()
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\n<!-- bench:api:start -->\napi\n<!-- bench:api:end -->\n")
    args = ["--deliveries", "5", "--verifications", "5", "--output", str(output)]
    completed = subprocess.run(
        [sys.executable, "bench/delivery.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    text = output.read_text()
    assert text.startswith("# Benchmarks\n\n<!-- bench:api:start -->\napi\n<!-- bench:api:end -->\n")
    section = text[text.index(MARK_START) : text.index(MARK_END)]
    assert "### Treasury deliveries (5 paid sessions, one worker)" in section
    assert "**musdpay / baseline**" in section
    assert "bench/delivery.py --deliveries 5 --verifications 5" in section
