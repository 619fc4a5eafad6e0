"""Finding and running the anvil binary that `npm ci` put in node_modules.

`@foundry-rs/anvil` ships the real binary in a per-platform optional package
(`@foundry-rs/anvil-<os>-<arch>/bin/anvil`); its `node_modules/.bin/anvil` is a node wrapper around that
binary. We run the binary directly: one process less to signal, and no node start-up on every chain. Should
the platform package be missing, the wrapper's postinstall downloads the binary next to itself
(`@foundry-rs/anvil/anvil`), so that place is tried too.

Anvil prints `Listening on HOST:PORT` once its socket is bound, which is how port 0 learns its real port.
Its stdout is drained by a thread for as long as it runs: anvil logs every RPC method it serves, and an
undrained pipe would block it.
"""

from __future__ import annotations

import collections
import os
import platform
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ROOT", "Anvil", "AnvilError", "AnvilNotFoundError", "anvil_arguments", "find_anvil", "start_anvil"]

ROOT = Path(__file__).resolve().parents[2]

_PLATFORMS = {"linux": "linux", "darwin": "darwin", "win32": "win32"}
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_LISTENING = re.compile(r"Listening on (\S+):(\d+)")
_LOG_LINES = 200  # the tail kept for error messages


class AnvilError(RuntimeError):
    """Anvil could not be started or stopped."""


class AnvilNotFoundError(AnvilError):
    """No anvil binary in node_modules: run `make node_modules/.installed` (npm ci)."""


def _platform_package() -> str | None:
    os_name = _PLATFORMS.get(sys.platform)
    arch = _ARCHES.get(platform.machine().lower())
    return f"anvil-{os_name}-{arch}" if os_name and arch else None


def find_anvil(root: Path = ROOT) -> Path:
    """The anvil binary installed by the project's package.json; AnvilNotFoundError when absent."""
    exe = "anvil.exe" if sys.platform == "win32" else "anvil"
    scope = root / "node_modules" / "@foundry-rs"
    candidates = []
    package = _platform_package()
    if package:
        candidates.append(scope / package / "bin" / exe)
    candidates.append(scope / "anvil" / exe)  # where the postinstall fallback downloads it
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise AnvilNotFoundError(f"anvil not found (tried {tried}); install it with `make node_modules/.installed`")


def anvil_arguments(*, host: str, port: int, chain_id: int, automine: bool, block_time: float | None) -> list[str]:
    """Anvil's flags for a mining mode: automine and/or a block every `block_time` seconds, or neither."""
    args = ["--host", host, "--port", str(port), "--chain-id", str(chain_id)]
    if block_time is not None:
        if not 0.001 <= block_time <= 86_400:
            raise ValueError(f"block_time must be between 0.001 and 86400 seconds, not {block_time}")
        args += ["--block-time", f"{block_time:.3f}".rstrip("0").rstrip(".")]
        if automine:
            args.append("--mixed-mining")  # a block per transaction and an empty one every block_time
    elif not automine:
        args.append("--no-mining")  # blocks only on evm_mine/anvil_mine
    return args


@dataclass
class Anvil:
    """A running anvil process."""

    popen: subprocess.Popen[str]
    url: str = ""
    _tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=_LOG_LINES))
    _listening: threading.Event = field(default_factory=threading.Event)
    _drain: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """The last lines anvil printed."""
        return "".join(self._tail)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        if self._drain is not None:
            self._drain.join(timeout)
        return self.popen.returncode

    def _read(self) -> None:
        stream = self.popen.stdout
        assert stream is not None
        for line in stream:
            self._tail.append(line)
            if not self._listening.is_set():
                match = _LISTENING.search(line)
                if match:
                    host, port = match.groups()
                    host = f"[{host}]" if ":" in host else host
                    self.url = f"http://{host}:{port}"
                    self._listening.set()
        stream.close()
        self._listening.set()  # exited before listening: wake the waiter, which sees the process gone


def start_anvil(args: Sequence[str], *, binary: Path | None = None, timeout: float = 20.0) -> Anvil:
    """Start anvil with `args` and return once it listens (AnvilError if it exits or takes too long)."""
    path = binary or find_anvil()
    popen = subprocess.Popen(
        [str(path), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        # Deliberately in our process group: whatever kills the group (Ctrl-C, a test harness's killpg) kills
        # anvil too, instead of leaving it running on its port.
    )
    anvil = Anvil(popen)
    anvil._drain = threading.Thread(target=anvil._read, daemon=True, name=f"anvil-{popen.pid}-stdout")
    anvil._drain.start()
    if not anvil._listening.wait(timeout) or not anvil.url:
        anvil.stop()
        raise AnvilError(f"anvil did not start listening within {timeout}s:\n{anvil.output()}")
    return anvil
