"""bench/rpc_pool.py: its markdown section is replaced in place, and the benchmark runs end to end (briefly)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.rpc_pool import MARK_END, MARK_START, write_section
from tests.sandbox.chain.support import require_anvil

ROOT = Path(__file__).resolve().parents[2]


def test_section_is_appended_then_replaced_keeping_other_sections(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\n<!-- bench:api:start -->\napi\n<!-- bench:api:end -->\n\n## By hand\n\nnotes\n")

    write_section(path, f"{MARK_START}\nfirst\n{MARK_END}\n")
    text = path.read_text()
    assert text.endswith(f"notes\n\n{MARK_START}\nfirst\n{MARK_END}\n")

    write_section(path, f"{MARK_START}\nsecond\n{MARK_END}\n")
    text = path.read_text()
    assert "second" in text
    assert "first" not in text
    assert text.count(MARK_START) == 1
    assert "<!-- bench:api:start -->\napi\n<!-- bench:api:end -->\n\n## By hand\n\nnotes\n" in text


@pytest.mark.integration
def test_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    require_anvil()
    output = tmp_path / "benchmarks.md"
    args = ["--calls", "30", "--rounds", "1", "--warmup", "5", "--loop", "asyncio", "--output", str(output)]
    completed = subprocess.run(
        [sys.executable, "bench/rpc_pool.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    text = output.read_text()
    for needle in (
        MARK_START,
        MARK_END,
        "**baseline**",
        "**pool**",
        "pool p50 - baseline p50",
        "bench/rpc_pool.py --calls 30",
    ):
        assert needle in text
