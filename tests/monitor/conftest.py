"""Fixtures of the monitor's tests: a local chain behind two fault proxies, and migrated databases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from payment.core import migrations
from payment.core.config import Settings
from payment.core.db import create_db_engine, make_session_factory
from sandbox.chain.local import LocalChain, running_chain
from sandbox.rpcproxy.server import running_proxy
from tests.sandbox.chain.support import foreground, require_anvil

# Spectrum-style: the key is a path segment of the URL (the monitor must never show it).
SPECTRUM_KEY = "Sk9vT3eXq7Lm2Rp4Wz8Yb6Nc"


class Proxy(Protocol):
    url: str

    def set_faults(self, **faults: Any) -> dict[str, Any]: ...

    def heal(self) -> dict[str, Any]: ...


@dataclass
class ProxyProcess:
    """`musdpay sandbox rpc-proxy` in its own process (no GIL shared with the monitor under test)."""

    url: str
    control_url: str

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        response = httpx.put(f"{self.control_url}/_proxy/faults", json=faults, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def heal(self) -> dict[str, Any]:
        return self.set_faults()


@dataclass
class Chain:
    chain: LocalChain
    spectrum: Proxy
    public: Proxy

    def settings(self) -> dict[str, Any]:
        """The payment settings of a stack using both proxies, Spectrum first."""
        return {
            "chain_id": self.chain.chain_id,
            "rpc_providers": f"spectrum={self.spectrum.url}/{SPECTRUM_KEY}/mezo/testnet/,public={self.public.url}",
            "musd_address": self.chain.musd_address,
        }


@pytest.fixture
def chain() -> Iterator[Chain]:
    require_anvil()
    with (
        running_chain() as local,
        running_proxy(local.rpc_url, name="spectrum") as spectrum,
        running_proxy(local.rpc_url, name="public") as public,
    ):
        yield Chain(local, spectrum, public)


@pytest.fixture
def chain_processes(tmp_path: Path) -> Iterator[Chain]:
    """The same rig with each proxy in its own process: for timing measurements."""
    require_anvil()
    with running_chain() as local, ExitStack() as stack:
        proxies = []
        for name in ("spectrum", "public"):
            folder = tmp_path / name
            folder.mkdir()
            started = stack.enter_context(
                foreground(folder, "sandbox", "rpc-proxy", "--upstream", local.rpc_url, "--name", name)
            )
            proxies.append(ProxyProcess(started.start["url"], started.start["controlUrl"]))
        yield Chain(local, proxies[0], proxies[1])


@dataclass
class Database:
    url: str
    factory: sessionmaker[Session]


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A migrated payment database, on SQLite and on PostgreSQL (the `database_url` fixture's backends)."""
    engine = create_db_engine(Settings(database_url=database_url))
    migrations.upgrade(engine)
    try:
        yield Database(database_url, make_session_factory(engine))
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'musdpay.sqlite'}"
    engine = create_db_engine(Settings(database_url=url))
    migrations.upgrade(engine)
    try:
        yield Database(url, make_session_factory(engine))
    finally:
        engine.dispose()
