"""Fixtures of the edge security tests: an application on SQLite with test routes, and a real Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from payment.api import create_app
from payment.auth.rbac import public_route
from payment.core.config import Settings
from payment.core.metrics import PaymentMetrics
from payment.core.problems import Problem
from payment.core.telemetry import Telemetry
from payment.security.throttle import enforce_principal_limit
from tests.payment.conftest import make_settings
from tests.support.redis import REDIS_URL, redis_prefix

__all__ = ["GOOD_KEY", "JWT_KEYS", "REDIS_URL", "add_test_routes"]

GOOD_KEY = "mpk_test_good_key_0123456789"
JWT_KEYS = "edge:0123456789abcdef0123456789abcdef"
PUBLIC = Depends(public_route)  # test routes are public; authentication's deny-by-default guard passes them


@pytest.fixture(name="redis_prefix")
def redis_prefix_fixture() -> Iterator[str]:
    """A key prefix of this test alone in the real Redis (required with CI=true); its keys are deleted after."""
    with redis_prefix() as prefix:
        yield prefix


class _Principal:
    def __init__(self, subject: str) -> None:
        self.kind = "api_key"
        self.subject = subject


def add_test_routes(app: FastAPI) -> None:
    """`/api/v1/test/ping` (default rule) and `/api/v1/test/protected`: 401 unless `X-API-Key` is GOOD_KEY, then
    the per-principal limit, as authentication does."""
    calls: list[str] = []
    app.state.test_calls = calls

    @app.get("/api/v1/test/ping", dependencies=[PUBLIC])
    async def ping() -> dict[str, bool]:
        calls.append("ping")
        return {"ok": True}

    @app.get("/api/v1/test/protected", dependencies=[PUBLIC])
    async def protected(request: Request) -> dict[str, bool]:
        calls.append("protected")
        if request.headers.get("x-api-key") != GOOD_KEY:
            # As authentication answers a bad credential (it is built elsewhere; any 401 counts the same).
            raise Problem(status=401, slug="invalid-api-key", detail="The API key is unknown.")
        await enforce_principal_limit(request, _Principal("key_1"))
        return {"ok": True}

    @app.post("/api/v1/test/echo", dependencies=[PUBLIC])
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        return {"size": len(body)}


@pytest.fixture
def edge_settings(tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "auto_migrate": True,
            "jwt_keys": JWT_KEYS,
            "delivery_worker_enabled": False,
            **overrides,
        }
        return make_settings(f"sqlite:///{tmp_path / 'edge.sqlite'}", **values)

    return build


@pytest.fixture
def edge_client(edge_settings: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    """Builds an app from settings overrides, with the test routes, served by a TestClient from `client_ip`."""
    opened: list[TestClient] = []

    def build(client_ip: str = "203.0.113.7", base_url: str = "http://testserver", **overrides: Any) -> TestClient:
        settings = edge_settings(**overrides)
        app = create_app(settings, telemetry=Telemetry(metrics=PaymentMetrics(process_collectors=False)))
        add_test_routes(app)
        client = TestClient(app, base_url=base_url, raise_server_exceptions=False, client=(client_ip, 50000))
        client.__enter__()
        opened.append(client)
        return client

    yield build
    for client in opened:
        client.__exit__(None, None, None)
