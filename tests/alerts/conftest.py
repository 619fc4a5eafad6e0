"""The live stack, shared with tests/dashboards for the whole test session (see livestack.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.alerts.livestack import LiveStack, shared_stack


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    with shared_stack(tmp_path_factory.mktemp("live")) as live:
        yield live
