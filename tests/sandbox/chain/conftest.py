"""A fresh local chain per test: anvil starts, deploys and funds in about 0.1 s, so nothing is shared."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.chain.local import LocalChain, running_chain
from tests.sandbox.chain.support import require_anvil


@pytest.fixture
def chain() -> Iterator[LocalChain]:
    require_anvil()
    with running_chain() as running:
        yield running
