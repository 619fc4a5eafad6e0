"""The load generator against a small keep-alive HTTP server: counts, statuses, warm-up and the count bound."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.loadgen import LoadSpec, percentile, run_in_process, run_load


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status = 503 if self.path == "/fail" else 201
        body = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def server_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _requests(port: int, path: str, count: int) -> list[bytes]:
    body = b"{}"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n\r\n"
    return [head.encode() + body] * count


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) == 0.0


def test_count_bound_stops_the_run_and_every_request_is_counted(server_port: int) -> None:
    result = run_load(LoadSpec("127.0.0.1", server_port, _requests(server_port, "/ok", 200), 4, 30.0, 0.0))
    assert result.exhausted
    assert result.measured == 200
    assert result.statuses == {201: 200}
    assert result.errors == 0
    assert len(result.latencies) == 200
    assert result.throughput > 0


def test_non_2xx_are_errors_with_samples(server_port: int) -> None:
    result = run_load(LoadSpec("127.0.0.1", server_port, _requests(server_port, "/fail", 20), 2, 30.0, 0.0))
    assert result.errors == 20
    assert result.error_samples
    assert result.error_samples[0].startswith("503")


def test_chunked_responses_are_read(server_port: int) -> None:
    result = run_load(LoadSpec("127.0.0.1", server_port, _requests(server_port, "/chunked", 10), 1, 30.0, 0.0))
    assert result.statuses == {201: 10}


def test_an_unreachable_server_fails_the_run() -> None:
    with pytest.raises(ConnectionRefusedError):
        run_load(LoadSpec("127.0.0.1", 1, [b"x"], 1, 1.0, 0.0))


def test_duration_bound_and_warmup_in_a_child_process(server_port: int) -> None:
    spec = LoadSpec("127.0.0.1", server_port, _requests(server_port, "/ok", 1_000_000), 2, 0.5, 0.3)
    result = run_in_process(spec)
    assert not result.exhausted
    assert result.warmup_requests > 0
    assert result.measured > 0
    assert result.measured + result.warmup_requests < 1_000_000
    assert 0.4 < result.elapsed < 5.0
