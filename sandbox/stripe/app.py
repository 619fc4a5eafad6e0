"""The emulator as an ASGI application.

A plain Starlette app rather than FastAPI: there are no schemas to validate or document (Stripe's form
encoding is parsed by hand), and skipping FastAPI's per-request dependency and validation machinery keeps
a session create well under a millisecond of CPU.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from sandbox.stripe.api import api_routes
from sandbox.stripe.config import EmulatorConfig
from sandbox.stripe.control import control_routes
from sandbox.stripe.emulator import Emulator
from sandbox.stripe.fulfillment import Fulfiller

__all__ = ["create_app"]


def create_app(config: EmulatorConfig, *, fulfiller: Fulfiller | None = None) -> Starlette:
    """Build the emulator app; `app.state.emulator` is its state (webhook secret, collections, faults)."""
    emulator = Emulator(config, fulfiller=fulfiller)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        del app
        await emulator.start()  # the webhook delivery worker lives as long as the server
        try:
            yield
        finally:
            await emulator.stop()

    app = Starlette(routes=[*control_routes(emulator), *api_routes(emulator)], lifespan=lifespan)
    app.state.emulator = emulator
    return app
