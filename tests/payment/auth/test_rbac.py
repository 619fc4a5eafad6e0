"""Every route has a policy, and the whole route x role matrix is what it says.

The matrix walks `app.routes`: a route added without a policy fails here (and is refused at run time to anyone
but operators and admins, by the route-policy guard).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from payment.api import create_app
from payment.auth.principal import Role
from payment.auth.rbac import DEFAULT_POLICY, Policy, RouteInfo, iter_routes
from payment.core.config import Settings
from tests.payment.auth.conftest import Credentials, assert_problem, no_contract
from tests.payment.conftest import WALLET, seed_session

CALLERS = ["anonymous", "owner", "other_wallet", "operator", "admin"]
ROLE_OF = {"owner": Role.wallet, "other_wallet": Role.wallet, "operator": Role.operator, "admin": Role.admin}

# What each protected route may answer an allowed caller here (bodies are deliberately minimal or invalid).
PATH_VALUES = {"slug": "validation-error", "key_id": "0" * 16, "event_id": "evt_unknown"}


@pytest.fixture
def app_client(settings: Settings, factory: sessionmaker[Session]) -> Iterator[TestClient]:
    app = create_app(settings)
    app.state.musdpay.auth.eth_call = no_contract
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def routes(client: TestClient) -> list[RouteInfo]:
    app: FastAPI = client.app  # type: ignore[assignment]
    return iter_routes(app)


def methods(route: RouteInfo) -> list[str]:
    return sorted(route.methods - {"HEAD"})


def test_every_route_has_a_policy(app_client: TestClient) -> None:
    missing = [f"{','.join(methods(route))} {route.path}" for route in routes(app_client) if route.policy is None]
    assert not missing, f"routes without an access policy (use payment.auth.rbac.require_roles): {missing}"


def test_the_route_role_matrix(
    app_client: TestClient, credentials: Credentials, factory: sessionmaker[Session]
) -> None:
    owned = seed_session(factory, wallet_address=WALLET)
    values = {**PATH_VALUES, "session_id": owned.id}
    checked = 0
    for route in routes(app_client):
        policy = route.policy
        assert policy is not None
        path = route.path.format(**values)
        for method in methods(route):
            for caller in CALLERS:
                response = app_client.request(method, path, json={} if method == "POST" else None,
                                              headers=credentials.of(caller))  # fmt: skip
                where = f"{method} {route.path} as {caller}: {response.status_code} {response.text[:200]}"
                check(policy, caller, response, where)
                checked += 1
    assert checked >= 5 * 15


def check(policy: Policy, caller: str, response: Any, where: str) -> None:
    assert response.status_code != 500, where
    if policy.kind in {"public", "signature"}:
        assert response.status_code not in {401, 403}, where
        return
    if caller == "anonymous":
        assert_problem(response, 401, "authentication-required")
        return
    if ROLE_OF[caller] not in policy.roles:
        assert_problem(response, 403, "forbidden")
        return
    assert response.status_code != 401, where
    if response.status_code == 403:
        assert response.json()["type"] != "/problems/forbidden", where


def test_the_expected_policies(app_client: TestClient) -> None:
    by_path: dict[tuple[str, str], Policy | None] = {}
    for route in routes(app_client):
        for method in methods(route):
            by_path[(method, route.path)] = route.policy
    every = frozenset(Role)
    admin_only = frozenset({Role.admin})
    assert by_path[("POST", "/api/v1/onramp/sessions")] == Policy("roles", every)
    assert by_path[("GET", "/api/v1/onramp/sessions/{session_id}")] == Policy("roles", every)
    assert by_path[("GET", "/api/v1/onramp/quotes")] == Policy("roles", every)  # like creating a session
    assert by_path[("GET", "/api/v1/admin/api-keys")] == Policy("roles", admin_only)
    assert by_path[("POST", "/api/v1/admin/api-keys/{key_id}/revoke")] == Policy("roles", admin_only)
    assert by_path[("POST", "/api/v1/webhooks/stripe")] == Policy("signature")
    for public in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/api/v1/auth/nonce"):
        method = "POST" if public.startswith("/api/v1/auth") else "GET"
        assert by_path[(method, public)] == Policy("public"), public


def test_wallets_see_only_their_own_sessions(
    app_client: TestClient, credentials: Credentials, factory: sessionmaker[Session]
) -> None:
    mine = seed_session(factory, wallet_address=WALLET)
    theirs = seed_session(factory, wallet_address="0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359")
    sessions = "/api/v1/onramp/sessions"
    own = app_client.get(f"{sessions}/{mine.id}", headers=credentials.owner)
    assert own.status_code == 200
    assert own.json()["clientSecret"] == mine.client_secret
    # Another wallet's session: 404 (as for an id that does not exist), never 403.
    assert_problem(app_client.get(f"{sessions}/{theirs.id}", headers=credentials.owner), 404, "not-found")
    listed = app_client.get(sessions, headers=credentials.owner).json()["data"]
    assert [item["id"] for item in listed] == [mine.id]
    # Filtering by someone else's address shows nothing rather than their sessions.
    other = app_client.get(sessions, params={"walletAddress": theirs.wallet_address}, headers=credentials.owner)
    assert other.json()["data"] == []
    # Operators and admins see every session, never a client secret they did not create.
    for staff in (credentials.operator, credentials.admin):
        everything = app_client.get(sessions, headers=staff).json()["data"]
        assert {item["id"] for item in everything} == {mine.id, theirs.id}
        assert all(item["clientSecret"] is None for item in everything)


def test_a_wallet_may_create_sessions_only_for_its_own_address(
    app_client: TestClient, credentials: Credentials
) -> None:
    body = {"walletAddress": "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359", "sourceAmount": "10.00"}
    response = app_client.post("/api/v1/onramp/sessions", json=body, headers=credentials.owner)
    assert_problem(response, 403, "wallet-mismatch")


def test_a_route_without_a_policy_is_for_staff_only(settings: Settings, credentials: Credentials) -> None:
    app = create_app(settings)
    extra = APIRouter()

    @extra.get("/api/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"ok": "yes"}

    app.include_router(extra)
    route = next(r for r in iter_routes(app) if r.path == "/api/v1/forgotten")
    assert route.policy is None  # test_every_route_has_a_policy would fail for it
    with TestClient(app, raise_server_exceptions=False) as client:
        assert_problem(client.get("/api/v1/forgotten"), 401, "authentication-required")
        assert_problem(client.get("/api/v1/forgotten", headers=credentials.owner), 403, "forbidden")
        for staff in (credentials.operator, credentials.admin):
            assert client.get("/api/v1/forgotten", headers=staff).status_code == 200
    assert DEFAULT_POLICY.roles == frozenset({Role.operator, Role.admin})
