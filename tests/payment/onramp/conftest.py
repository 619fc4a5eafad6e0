"""One Stripe emulator per test module of the onramp domain that needs no webhooks (quotes, shut-offs), and a
fixture that heals its faults around each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import Emulator, running_emulator


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with running_emulator(tmp_path_factory.mktemp("emulator"), webhook_port=None) as emulator:
        yield emulator


@pytest.fixture
def healthy(emulator: Emulator) -> Iterator[Emulator]:
    emulator.set_faults()
    yield emulator
    emulator.set_faults()  # the module's emulator is shared: leave it healed
