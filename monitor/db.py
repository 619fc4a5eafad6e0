"""Database engines of the monitor: read-only, short timeouts, and work kept off the event loop.

The monitor reads the payment database (and a replica, if configured) with its own engines rather than the
API's: PostgreSQL sessions are read-only by default (`default_transaction_read_only`) with a statement timeout,
and SQLite transactions are deferred (the API's engine begins with `BEGIN IMMEDIATE`, which would take the
write lock for a read). Every query runs on a small thread pool of its own, so a database that hangs holds
threads, never the loop that runs the other probes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

__all__ = ["DbRunner", "is_sqlite", "read_engine"]

T = TypeVar("T")
APPLICATION_NAME = "musdpay-monitor"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def read_engine(url: str, *, timeout: float, pooled: bool = True) -> Engine:
    """An engine for the monitor's reads; `pooled=False` opens a new connection every time (connect latency)."""
    parsed = make_url(url)
    pool: dict[str, Any] = {"poolclass": NullPool} if not pooled else {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            # Read-only: a monitor pointed at a missing file reports it instead of creating an empty database.
            parsed = parsed.set(database=f"file:{parsed.database}?mode=ro").update_query_dict({"uri": "true"})
        return create_engine(parsed, connect_args={"check_same_thread": False, "timeout": timeout}, **pool)
    connect_args: dict[str, Any] = {
        "application_name": APPLICATION_NAME,
        "options": f"-c statement_timeout={max(int(timeout * 1000), 1)} -c default_transaction_read_only=on",
    }
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = max(2, math.ceil(timeout))  # libpq's minimum is 2 s
    if pooled:
        pool.update(pool_size=2, max_overflow=2, pool_pre_ping=True, pool_timeout=timeout, pool_recycle=300)
    return create_engine(parsed, connect_args=connect_args, **pool)


class DbRunner:
    """Runs blocking database work on the monitor's own threads."""

    def __init__(self, max_workers: int = 4) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="monitor-db")

    async def run(self, function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    def close(self) -> None:
        # Threads stuck in a driver call are not waited for: their sockets time out on their own.
        self._executor.shutdown(wait=False, cancel_futures=True)
