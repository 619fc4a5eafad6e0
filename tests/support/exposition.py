"""A scrape target whose metrics the test sets: a real HTTP server answering `GET /metrics` with the Prometheus
text format, so a real Prometheus (with the shipped rules) scrapes known values and every figure derived from
them can be asserted exactly.

    with serving_exposition() as monitor:
        monitor.set({'musdpay_monitor_rpc_up{provider="spectrum"}': 0,
                     'musdpay_monitor_rpc_probes_total{provider="spectrum",outcome="failure"}': Growing(2.0)})
        ... running_prometheus(tmp_path, {"musdpay-monitor": monitor.address}, None) ...

A `Growing(rate)` series is a counter that grows by `rate` per second of wall time (computed once per scrape, so
every series of one scrape is at the same instant and ratios of rates are exact). `set()` replaces the whole
exposition; a growing series present before and after keeps its value and continues at the new rate (a counter
never goes back), and a constant that replaces a growing series freezes it at its current value when given as
`Growing(0)`. Series left out disappear (Prometheus marks them stale).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Exposition", "Growing", "serving_exposition"]


@dataclass(frozen=True)
class Growing:
    """A counter: `start` (when the series is new), then `rate` more per second."""

    rate: float
    start: float = 0.0


@dataclass(frozen=True)
class _Line:
    base: float
    rate: float
    since: float

    def at(self, now: float) -> float:
        return self.base + self.rate * (now - self.since)


class Exposition:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: dict[str, _Line] = {}
        self.scrapes = 0
        self.address = ""

    def set(self, series: Mapping[str, float | Growing]) -> None:
        """Replace the exposition: series text (`name{labels}`) -> a constant or a `Growing` counter."""
        now = time.time()
        with self._lock:
            lines: dict[str, _Line] = {}
            for name, value in series.items():
                if isinstance(value, Growing):
                    before = self._lines.get(name)
                    base = before.at(now) if before is not None else value.start
                    lines[name] = _Line(base, value.rate, now)
                else:
                    lines[name] = _Line(float(value), 0.0, now)
            self._lines = lines

    def text(self) -> str:
        now = time.time()
        with self._lock:
            self.scrapes += 1
            return "".join(f"{name} {line.at(now)!r}\n" for name, line in self._lines.items())


@contextmanager
def serving_exposition(host: str = "127.0.0.1") -> Iterator[Exposition]:
    exposition = Exposition()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = exposition.text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    exposition.address = f"{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name=f"exposition-{exposition.address}", daemon=True)
    thread.start()
    try:
        yield exposition
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
