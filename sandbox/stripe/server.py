"""Serving the emulator: `run` for the CLI (blocking, foreground), `serve_in_thread` for tests.

`run` binds the socket itself before printing its start line, so the printed URL already accepts
connections (they wait in the listen backlog until the loop starts) and port 0 works: the line carries the
port the OS picked. Uvicorn handles SIGINT/SIGTERM with a graceful shutdown, then re-raises the signal to
the previous handler; `run` installs no-op handlers around it so that re-raise does not kill the process,
and returns normally.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from sandbox.stripe.app import create_app
from sandbox.stripe.config import EmulatorConfig
from sandbox.stripe.emulator import Emulator
from sandbox.stripe.fulfillment import Fulfiller

__all__ = ["RunningEmulator", "RunningServer", "bind", "run", "running_emulator", "serve_in_thread"]

_START_TIMEOUT = 10.0


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding it
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"  # noqa: S104
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_config(app: ASGIApp) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,  # no per-request logging: it would cost more than the request
        server_header=False,
        timeout_graceful_shutdown=5,
    )


def run(config: EmulatorConfig, *, fulfiller: Fulfiller | None = None) -> None:
    """Serve until SIGINT/SIGTERM. Prints one JSON line first: {"url": ..., "webhookSecret": ...}."""
    app = create_app(config, fulfiller=fulfiller)
    emulator: Emulator = app.state.emulator
    sock = bind(config.host, config.port)
    server = uvicorn.Server(_uvicorn_config(app))
    sys.stdout.write(json.dumps({"url": url_of(sock), "webhookSecret": emulator.webhook_secret}) + "\n")
    sys.stdout.flush()

    def ignore(signum: int, frame: FrameType | None) -> None:
        del signum, frame

    previous = {sig: signal.signal(sig, ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


@dataclass(frozen=True)
class RunningServer:
    url: str
    app: Any


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningServer]:
    """Serve any ASGI app on a background thread (port 0: a free one) until the block exits."""
    sock = bind(host, port)
    server = uvicorn.Server(_uvicorn_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
    thread.start()
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start (see stderr)")
            time.sleep(0.005)
        yield RunningServer(url_of(sock), app)
    finally:
        server.should_exit = True
        thread.join(_START_TIMEOUT)
        sock.close()


@dataclass(frozen=True)
class RunningEmulator:
    url: str
    emulator: Emulator

    @property
    def webhook_secret(self) -> str | None:
        return self.emulator.webhook_secret


@contextmanager
def running_emulator(config: EmulatorConfig, *, fulfiller: Fulfiller | None = None) -> Iterator[RunningEmulator]:
    """The emulator on a free loopback port in this process, e.g. for integration tests.

    `config.host`/`config.port` are honoured; pass port=0 for a free port.
    """
    app = create_app(config, fulfiller=fulfiller)
    with serve_in_thread(app, config.host, config.port) as server:
        yield RunningEmulator(server.url, app.state.emulator)
