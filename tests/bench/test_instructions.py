"""bench/instructions.py counts every app's instructions under callgrind and writes its section."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.instructions import MARK_END, MARK_START
from tests.support.services import require

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_instruction_counts_of_every_app_are_written(tmp_path: Path) -> None:
    require(
        shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None,
        "valgrind (scripts/ensure-tools.sh installs it)",
    )
    output = tmp_path / "benchmarks.md"
    completed = subprocess.run(
        [sys.executable, "bench/instructions.py", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    text = output.read_text()
    assert MARK_START in text
    assert MARK_END in text
    rows = re.findall(r"^\| (webhook-ingest|session-create) \| (\S+) \| (\d+) \| ([\d,]+) \|", text, re.MULTILINE)
    assert {(scenario, app) for scenario, app, _, _ in rows} == {
        (scenario, app)
        for scenario in ("webhook-ingest", "session-create")
        for app in ("musdpay", "telemetry-off", "baseline")
    }
    for _, _, _, per_request in rows:
        # A request through FastAPI and SQLite is hundreds of thousands of instructions: a count of zero or a
        # few thousand would mean the measured window missed the requests.
        assert int(per_request.replace(",", "")) > 100_000
