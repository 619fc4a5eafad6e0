"""A fresh local chain and a proxy in front of it per test, and a JSON-RPC client without retries."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sandbox.chain.local import LocalChain, running_chain
from sandbox.rpcproxy.server import RunningProxy, running_proxy
from tests.sandbox.chain.support import require_anvil


@pytest.fixture
def chain() -> Iterator[LocalChain]:
    require_anvil()
    with running_chain() as running:
        yield running


@pytest.fixture
def proxy(chain: LocalChain) -> Iterator[RunningProxy]:
    with running_proxy(chain.rpc_url, name="spectrum") as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, trust_env=False) as http:
        yield http
