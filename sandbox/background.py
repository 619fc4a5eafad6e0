"""Running a sandbox server: in a background thread (tests, in-process use), or in the foreground of its own
command until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

__all__ = ["AsyncServer", "serve_until_signalled", "serving_in_thread"]


class AsyncServer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@contextmanager
def serving_in_thread(
    server: AsyncServer, *, name: str, loop: asyncio.AbstractEventLoop | None = None, timeout: float = 10.0
) -> Iterator[None]:
    """Start `server` on its own loop in a daemon thread; stop it and the loop when the block ends."""
    loop = loop or asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True, name=name)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout)
        yield
    finally:
        try:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()


async def serve_until_signalled(server: AsyncServer, describe: Callable[[], dict[str, Any]]) -> None:
    """Start `server`, print `describe()` (its URLs) as one JSON line, serve until SIGINT or SIGTERM, stop it."""
    await server.start()
    try:
        sys.stdout.write(json.dumps(describe()) + "\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await server.stop()
