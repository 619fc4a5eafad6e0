"""A `/metrics` endpoint of its own, served from a thread so a busy event loop never delays a scrape (the monitor
and the standalone delivery worker; the API serves it as a route)."""

from __future__ import annotations

from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

__all__ = ["MetricsServer", "serve_metrics"]


@dataclass
class MetricsServer:
    url: str  # http://host:port/metrics
    _server: WSGIServer
    _thread: Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serve `registry` on host:port (0: a free port, in `url`)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return MetricsServer(f"http://{shown}:{bound_port}/metrics", server, thread)
