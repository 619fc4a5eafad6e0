"""Helpers of the chain and RPC proxy tests: real anvil and node or a skip (a failure with CI=true), and
foreground `musdpay sandbox ...` processes whose first stdout line is their JSON start line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.chain.anvil import AnvilNotFoundError, find_anvil
from tests.support.services import ROOT, musdpay_command, require
from tests.support.waiting import wait_until

__all__ = ["Foreground", "foreground", "require_anvil", "require_node"]


def require_anvil() -> Path:
    try:
        return find_anvil()
    except AnvilNotFoundError as exc:
        require(False, str(exc))
        raise  # require() skipped or failed; this keeps the type checker informed


def require_node() -> str:
    node = shutil.which("node")
    require(node is not None, "node is not installed")
    require(
        (ROOT / "node_modules" / "solc").is_dir(), "solc missing from node_modules: run `make node_modules/.installed`"
    )
    assert node is not None
    return node


@dataclass
class Foreground:
    popen: subprocess.Popen[bytes]
    start: dict[str, Any]  # the JSON start line
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextmanager
def foreground(tmp_path: Path, *args: str, timeout: float = 30.0) -> Iterator[Foreground]:
    """`musdpay <args>` in its own process group; yields once its JSON start line is out. Killed at the end."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        popen = subprocess.Popen(musdpay_command(*args), stdout=stdout, stderr=stderr, cwd=ROOT, start_new_session=True)
    try:

        def started() -> dict[str, Any]:
            if popen.poll() is not None:
                raise AssertionError(f"exited with {popen.returncode}:\n{err.read_text(errors='replace')}")
            text = out.read_text()
            line: dict[str, Any] = json.loads(text.splitlines()[0]) if "\n" in text else {}
            return line

        yield Foreground(popen, wait_until(started, timeout=timeout, what=f"the start line of {args}"), out, err)
    finally:
        if popen.poll() is None:  # the test did not stop it: the whole group goes, anvil included
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(10)
