"""A tree of child processes run as one: started in order, each ready before the next, their output prefixed with
their name, and all stopped together (on SIGINT or SIGTERM, or when one of them dies).

    supervisor = Supervisor(env, out=sys.stdout)
    chain = supervisor.start("chain", [...], announces=True)       # waits for its JSON start line; returns it
    supervisor.start("api", [...], ready_url="http://127.0.0.1:3001/healthz")
    sys.exit(supervisor.wait())                                    # 0 when stopped by a signal, 1 if a child died

Each child runs in its own process group, so a terminal's Ctrl-C reaches only the supervisor, which stops the
children in reverse order of start (the API before the chain it uses) and their own children with them: SIGTERM
to the whole group, then SIGKILL after the grace period. A closed terminal (SIGHUP) stops it the same way. Should
the supervisor itself be killed outright, each child still gets SIGTERM from the kernel (Linux's parent-death
signal, set by util-linux's `setpriv --pdeathsig` when it is installed). Nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, Any, TextIO

import httpx

__all__ = ["Child", "StartError", "Stopped", "Supervisor"]

_COLOURS = (36, 33, 35, 32, 34, 91, 96, 93, 95, 92, 94)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _orphan_guard() -> list[str]:
    """A prefix making the kernel send the child SIGTERM when the supervisor dies (empty where unavailable).

    Set in the child between fork and exec by setpriv, not by a `preexec_fn` (Python code in a forked child of
    a threaded process can deadlock); the death signal survives the exec of the command itself."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv and os.uname().sysname == "Linux" else []


class StartError(RuntimeError):
    """A child exited, or did not become ready in time, while the tree was starting."""


class Stopped(RuntimeError):
    """A signal asked the tree to stop while it was starting."""


@dataclass
class Child:
    name: str
    args: list[str]
    popen: subprocess.Popen[bytes]
    announced: dict[str, Any] | None = None
    _announcement: threading.Event = field(default_factory=threading.Event)
    _pumps: list[threading.Thread] = field(default_factory=list)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
            os.killpg(self.popen.pid, signum)


class Supervisor:
    def __init__(
        self,
        env: Mapping[str, str],
        *,
        out: TextIO,
        colour: bool = False,
        start_timeout: float = 60.0,
        stop_grace: float = 20.0,
        cwd: str | None = None,
    ) -> None:
        self.env = dict(env)
        self.children: list[Child] = []
        self._out = out
        self._colour = colour
        self._start_timeout = start_timeout
        self._stop_grace = stop_grace
        self._cwd = cwd
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._width = 12  # "alertmanager"
        self._guard = _orphan_guard()
        self.stop_reason: str | None = None

    # --- output ----------------------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """A line of the supervisor's own, between the children's."""
        with self._lock:
            self._out.write(text if text.endswith("\n") else text + "\n")
            self._out.flush()

    def _prefix(self, name: str, index: int) -> str:
        label = f"{name:<{self._width}} |"
        if self._colour:
            return f"\033[{_COLOURS[index % len(_COLOURS)]}m{label}\033[0m "
        return f"{label} "

    def _pump(self, child: Child, stream: IO[bytes], index: int, *, announces: bool) -> None:
        prefix = self._prefix(child.name, index)
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if announces and child.announced is None and line.startswith("{"):
                try:
                    announced = json.loads(line)
                except ValueError:
                    announced = None
                if isinstance(announced, dict):
                    child.announced = announced
                    child._announcement.set()
                    continue
            with self._lock:
                self._out.write(prefix + line + "\n")
                self._out.flush()
        stream.close()

    # --- starting ---------------------------------------------------------------------------------------------

    def start(
        self,
        name: str,
        args: Sequence[str],
        *,
        announces: bool = False,
        ready_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Child:
        """Start a child and wait until it is ready: its JSON start line (`announces`), or `ready_url` answering
        200. Raises StartError if it exits or is not ready within the start timeout, Stopped on a signal."""
        if self._stop.is_set():
            raise Stopped(self.stop_reason or "stopping")
        popen = subprocess.Popen(
            [*self._guard, *args],
            env={**self.env, **(env or {})},
            cwd=self._cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: stopped as a whole, deaf to the terminal's Ctrl-C
        )
        child = Child(name=name, args=list(args), popen=popen)
        self.children.append(child)
        index = len(self.children) - 1
        assert popen.stdout is not None
        assert popen.stderr is not None
        for stream, announcing in ((popen.stdout, announces), (popen.stderr, False)):
            pump = threading.Thread(
                target=self._pump, args=(child, stream, index), kwargs={"announces": announcing}, daemon=True
            )
            pump.start()
            child._pumps.append(pump)
        self._wait_ready(child, announces=announces, ready_url=ready_url)
        return child

    def _wait_ready(self, child: Child, *, announces: bool, ready_url: str | None) -> None:
        deadline = time.monotonic() + self._start_timeout
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while True:
                if self._stop.is_set():
                    raise Stopped(self.stop_reason or "stopping")
                if announces and child._announcement.is_set():
                    return
                if ready_url is not None and _answers(client, ready_url):
                    return
                if not announces and ready_url is None:
                    return
                if not child.alive():
                    for pump in child._pumps:  # its last words first, then the verdict
                        pump.join(2)
                    raise StartError(f"{child.name} exited with code {child.popen.returncode} while starting")
                if time.monotonic() > deadline:
                    raise StartError(f"{child.name} was not ready within {self._start_timeout:.0f} s")
                child._announcement.wait(0.1)

    # --- stopping ---------------------------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            self.request_stop(signal.Signals(signum).name)

        for signum in STOP_SIGNALS:
            signal.signal(signum, handle)

    def stop(self) -> None:
        """SIGTERM every child's group, the last started first; SIGKILL what is left after the grace period."""
        for child in reversed(self.children):
            if child.alive():
                child.signal_group(signal.SIGTERM)
                try:
                    child.popen.wait(timeout=self._stop_grace)
                except subprocess.TimeoutExpired:
                    self.say(f"{child.name} did not stop within {self._stop_grace:.0f} s: killed")
            # Its own children (anvil under the chain command) are in its group: none may outlive it.
            child.signal_group(signal.SIGKILL)
            if child.alive():
                child.popen.wait(timeout=10)
        for child in self.children:
            for pump in child._pumps:
                pump.join(2)

    def wait(self) -> int:
        """Run until a signal (exit 0) or until a child exits by itself (exit 1); every child is stopped."""
        died: Child | None = None
        try:
            while not self._stop.wait(0.2):
                died = next((child for child in self.children if not child.alive()), None)
                if died is not None:
                    self.say(f"{died.name} exited with code {died.popen.returncode}: stopping everything")
                    break
        finally:
            self.stop()
        return 1 if died is not None else 0


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False
