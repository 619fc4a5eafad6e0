"""The terminal side of `musdpay status`: one view (tables or JSON), or one per `--watch` interval until Ctrl-C.

On a terminal the watch redraws in place with rich's Live; into a pipe or file it prints one view after another
(one JSON document per line with `--json`), so a script or a log reads every refresh. Exit codes: 0 when nothing
critical fires, 2 when a critical alert fires, 1 when Prometheus cannot be reached at the start; a watch stopped
with Ctrl-C exits 0, and a watch that loses Prometheus says so in place and keeps trying.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from rich.console import Console, RenderableType
from rich.live import Live
from rich.rule import Rule
from rich.text import Text

from operate.prometheus import PrometheusClient, PrometheusUnavailable
from operate.status import SCHEMA, Status, collect_status, render, to_json

__all__ = ["EXIT_UNREACHABLE", "run_status", "unreachable_message"]

EXIT_UNREACHABLE = 1


def unreachable_message(url: str, error: Exception) -> str:
    return (
        f"musdpay status: Prometheus at {url} cannot be reached ({error.__cause__ or error}); "
        "start the local stack with `make run` (it runs Prometheus on :9090) or pass --prometheus URL"
    )


def _unreachable_view(url: str, error: Exception) -> RenderableType:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    return Text(f"{stamp}  {unreachable_message(url, error)}; retrying", style="bold red")


def run_status(
    url: str,
    *,
    as_json: bool = False,
    watch: float | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Show the status once (or every `watch` seconds) and return the exit code."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    # Into a pipe or a log, rich would assume 80 columns and fold the runbook links: give them room.
    width = None if out.isatty() else 160
    console = Console(file=out, highlight=False, soft_wrap=False, width=width)
    with PrometheusClient(url) as client:
        try:
            status = collect_status(client, clock())
        except PrometheusUnavailable as exc:
            print(unreachable_message(url, exc), file=err, flush=True)
            return EXIT_UNREACHABLE
        if watch is None:
            _show(console, out, status, as_json=as_json)
            return status.exit_code
        with contextlib.suppress(KeyboardInterrupt):
            _watch(client, console, out, status, as_json=as_json, interval=watch, clock=clock)
        return 0


def _show(console: Console, out: TextIO, status: Status, *, as_json: bool) -> None:
    if as_json:
        out.write(to_json(status) + "\n")
        out.flush()
    else:
        console.print(render(status))


def _watch(
    client: PrometheusClient,
    console: Console,
    out: TextIO,
    first: Status,
    *,
    as_json: bool,
    interval: float,
    clock: Callable[[], datetime],
) -> None:
    def collect() -> Status | PrometheusUnavailable:
        try:
            return collect_status(client, clock())
        except PrometheusUnavailable as exc:
            return exc

    def view(result: Status | PrometheusUnavailable) -> RenderableType:
        return _unreachable_view(client.url, result) if isinstance(result, Exception) else render(result)

    result: Status | PrometheusUnavailable = first
    if as_json or not console.is_terminal:
        while True:
            if as_json:
                if isinstance(result, Exception):
                    document = {
                        "schema": SCHEMA,
                        "prometheus": client.url,
                        "error": unreachable_message(client.url, result),
                    }
                    out.write(json.dumps(document) + "\n")
                else:
                    out.write(to_json(result) + "\n")
                out.flush()
            else:
                console.print(Rule(f"refresh every {interval:g} s (Ctrl-C stops)"))
                console.print(view(result))
                out.flush()
            time.sleep(interval)
            result = collect()
    with Live(view(result), console=console, auto_refresh=False, screen=False) as live:
        while True:
            time.sleep(interval)
            result = collect()
            live.update(view(result), refresh=True)
