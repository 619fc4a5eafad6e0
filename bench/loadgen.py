"""A small closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending pre-built requests.

The requests are complete HTTP/1.1 messages built before the clock starts, so the generator spends its CPU on
sockets, not on serialising or signing. Each request is sent at most once (the count bound); sending stops when
the requests run out or the duration is over, whichever comes first. Requests started during the warm-up are
sent but not measured.

`run_in_process` runs the load in a child process (spawned, so it shares nothing with the caller) and returns
its `LoadResult`; on a 2-core machine this keeps the client off the event loop of the server being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

__all__ = [
    "LoadResult",
    "LoadSpec",
    "percentile",
    "run_alternating",
    "run_alternating_in_process",
    "run_in_process",
    "run_load",
]

_MAX_ERROR_SAMPLES = 5


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    requests: list[bytes]  # complete HTTP/1.1 messages, each sent once, in order
    concurrency: int
    duration: float  # measured seconds, after the warm-up
    warmup: float
    timeout: float = 30.0  # of one request


@dataclass
class LoadResult:
    measured: int = 0  # requests started after the warm-up and answered (any status)
    elapsed: float = 0.0  # from the end of the warm-up to the last measured answer
    latencies: list[float] = field(default_factory=list)  # seconds, one per measured request
    statuses: Counter[int] = field(default_factory=Counter)  # measured requests by status; 0 = transport error
    warmup_requests: int = 0
    exhausted: bool = False  # stopped because every pre-built request was sent
    error_samples: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300)

    @property
    def throughput(self) -> float:
        return self.measured / self.elapsed if self.elapsed > 0 else 0.0


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values) - 1e-9)))
    return sorted_values[rank - 1]


class _ProtocolError(Exception):
    pass


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep_alive) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise _ProtocolError(f"bad status line {lines[0]!r}")
    status = int(parts[1])
    length: int | None = None
    chunked = False
    keep_alive = parts[0] == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            keep_alive = token == b"keep-alive" or (keep_alive and token != b"close")
    if chunked:
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                return status, bytes(body), keep_alive
            body += (await reader.readexactly(size + 2))[:-2]
    if length is not None:
        return status, await reader.readexactly(length), keep_alive
    if status in (204, 304) or 100 <= status < 200:
        return status, b"", keep_alive
    return status, await reader.read(), False  # delimited by close


async def _load(spec: LoadSpec) -> LoadResult:
    result = LoadResult()
    total = len(spec.requests)
    next_index = 0
    start = time.perf_counter()
    measure_from = start + spec.warmup
    stop_at = measure_from + spec.duration
    last_answer = measure_from

    def note_error(message: str) -> None:
        if len(result.error_samples) < _MAX_ERROR_SAMPLES:
            result.error_samples.append(message)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(spec.host, spec.port)

    async def worker() -> None:
        nonlocal next_index, last_answer
        reader, writer = await connect()
        try:
            while True:
                sent_at = time.perf_counter()
                if sent_at >= stop_at:
                    return
                if next_index >= total:
                    result.exhausted = True
                    return
                message = spec.requests[next_index]
                next_index += 1
                measured = sent_at >= measure_from
                try:
                    async with asyncio.timeout(spec.timeout):
                        writer.write(message)
                        status, body, keep_alive = await _read_response(reader)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, _ProtocolError, ValueError) as exc:
                    status, body, keep_alive = 0, repr(exc).encode(), False
                answered_at = time.perf_counter()
                if measured:
                    result.measured += 1
                    result.latencies.append(answered_at - sent_at)
                    result.statuses[status] += 1
                    last_answer = max(last_answer, answered_at)
                    if not 200 <= status < 300:
                        note_error(f"{status}: {body[:300].decode(errors='replace')}")
                else:
                    result.warmup_requests += 1
                if not keep_alive:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
                    reader, writer = await connect()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    result.elapsed = last_answer - measure_from
    return result


async def _alternate(specs: list[LoadSpec]) -> list[LoadResult]:
    """One connection per target, one request at a time, taking turns (A B B A ...): every target sees the
    machine in the same state, so their latencies can be compared on a noisy machine. Timing from specs[0]."""
    results = [LoadResult() for _ in specs]
    first = specs[0]
    start = time.perf_counter()
    measure_from = start + first.warmup
    stop_at = measure_from + first.duration
    connections = [await asyncio.open_connection(spec.host, spec.port) for spec in specs]
    indexes = [0] * len(specs)
    try:
        step = 0
        while time.perf_counter() < stop_at:
            order = range(len(specs)) if step % 2 == 0 else range(len(specs) - 1, -1, -1)
            step += 1
            for target in order:
                spec, result = specs[target], results[target]
                if indexes[target] >= len(spec.requests):
                    result.exhausted = True
                    return results
                reader, writer = connections[target]
                sent_at = time.perf_counter()
                writer.write(spec.requests[indexes[target]])
                indexes[target] += 1
                async with asyncio.timeout(spec.timeout):
                    status, body, keep_alive = await _read_response(reader)
                answered_at = time.perf_counter()
                if not keep_alive:
                    raise _ProtocolError(f"{spec.host}:{spec.port} closed the connection")
                if sent_at < measure_from:
                    result.warmup_requests += 1
                    continue
                result.measured += 1
                result.latencies.append(answered_at - sent_at)
                result.statuses[status] += 1
                result.elapsed = answered_at - measure_from
                if not 200 <= status < 300 and len(result.error_samples) < _MAX_ERROR_SAMPLES:
                    result.error_samples.append(f"{status}: {body[:300].decode(errors='replace')}")
    finally:
        for _, writer in connections:
            writer.close()
    return results


def run_load(spec: LoadSpec) -> LoadResult:
    """Run the load in this process (on uvloop when it is installed, like the servers)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(_load(spec))
    return uvloop.run(_load(spec))


def run_alternating(specs: list[LoadSpec]) -> list[LoadResult]:
    """Latency of several targets taking turns, one request at a time (see _alternate)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(_alternate(specs))
    return uvloop.run(_alternate(specs))


def _child(function: Callable[[Any], Any], argument: Any, conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it kills this process
    try:
        conn.send(function(argument))
    except BaseException as exc:
        conn.send(exc)
        raise
    finally:
        conn.close()


def run_in_process(spec: LoadSpec) -> LoadResult:
    """Run the load in a spawned child process; the child is killed if anything goes wrong."""
    outcome = _in_child(run_load, spec, spec.warmup + spec.duration + spec.timeout + 60)
    if not isinstance(outcome, LoadResult):
        raise RuntimeError(f"load generator sent {type(outcome).__name__}")
    return outcome


def run_alternating_in_process(specs: list[LoadSpec]) -> list[LoadResult]:
    """run_alternating in a spawned child process."""
    seconds = specs[0].warmup + specs[0].duration + sum(spec.timeout for spec in specs) + 60
    outcome = _in_child(run_alternating, specs, seconds)
    if not isinstance(outcome, list) or not all(isinstance(result, LoadResult) for result in outcome):
        raise RuntimeError(f"load generator sent {type(outcome).__name__}")
    return outcome


def _in_child(function: Callable[[Any], Any], argument: Any, seconds: float) -> Any:
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(function, argument, sender), name="bench-loadgen", daemon=True)
    process.start()
    sender.close()
    try:
        deadline = time.monotonic() + seconds
        while not receiver.poll(0.2):
            if not process.is_alive():
                raise RuntimeError(f"load generator exited with code {process.exitcode}")
            if time.monotonic() > deadline:
                raise RuntimeError("load generator did not finish in time")
        outcome = receiver.recv()
        if isinstance(outcome, BaseException):
            raise RuntimeError("load generator failed") from outcome
        process.join(timeout=10)
        return outcome
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
            process.join(timeout=10)
