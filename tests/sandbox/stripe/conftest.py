"""Fixtures of the Stripe emulator tests: a fresh emulator and a fresh webhook receiver per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sandbox.stripe.support import Sandbox, WebhookReceiver, sandbox, webhook_receiver


@pytest.fixture
def emu() -> Iterator[Sandbox]:
    with sandbox() as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as running:
        yield running
