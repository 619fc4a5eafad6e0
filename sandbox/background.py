"""Running a sandbox server's event loop in a background thread, for tests and in-process use."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = ["AsyncServer", "serving_in_thread"]


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
