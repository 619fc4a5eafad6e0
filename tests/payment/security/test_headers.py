"""CORS allow-list, security headers on every answer, and CSRF: no ambient credentials, so nothing to forge."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from payment.core.config import Settings
from payment.onramp.models import OnrampSession
from payment.security.headers import API_CSP, DOCS_CSP
from tests.payment.conftest import WALLET

Client = Callable[..., TestClient]
DAPP = "http://localhost:5175"
EVIL = "https://evil.example"


def _preflight(client: TestClient, origin: str) -> dict[str, str]:
    response = client.options(
        "/api/v1/onramp/sessions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        },
    )
    return {"status": str(response.status_code), **{k.lower(): v for k, v in response.headers.items()}}


def test_a_preflight_from_the_dapp_is_allowed(edge_client: Client) -> None:
    headers = _preflight(edge_client(environment="development"), DAPP)
    assert headers["status"] == "200"
    assert headers["access-control-allow-origin"] == DAPP
    assert "POST" in headers["access-control-allow-methods"]
    assert "authorization" in headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in headers  # no cookies, so never credentials mode
    assert headers["x-content-type-options"] == "nosniff"  # security headers on preflights too


def test_a_preflight_from_another_origin_is_refused(edge_client: Client) -> None:
    client = edge_client(environment="development")
    headers = _preflight(client, EVIL)
    assert headers["status"] == "400"
    assert "access-control-allow-origin" not in headers
    simple = client.get("/healthz", headers={"Origin": EVIL})
    assert "access-control-allow-origin" not in {k.lower() for k in simple.headers}


def test_the_allow_list_comes_from_settings_and_the_dev_origin_only_in_development(edge_client: Client) -> None:
    assert Settings(environment="test", cors_origins="https://app.example").allowed_cors_origins == [
        "https://app.example"
    ]
    assert Settings(environment="development").allowed_cors_origins == [DAPP]
    assert Settings(environment="test").allowed_cors_origins == [DAPP]
    assert Settings(environment="staging").allowed_cors_origins == []
    with pytest.raises(ValueError, match="may not be"):
        Settings(environment="production", cors_origins="*", stripe_secret_key="sk_live_x")
    staging = edge_client(environment="staging")  # deployed, no origins configured: nobody
    assert "access-control-allow-origin" not in _preflight(staging, DAPP)
    configured = edge_client(environment="staging", cors_origins="https://app.example")
    assert _preflight(configured, "https://app.example")["access-control-allow-origin"] == "https://app.example"


def test_a_refusal_is_readable_by_the_dapp(edge_client: Client) -> None:
    client = edge_client(environment="development", rate_limits="default=1/60")
    client.get("/api/v1/test/ping", headers={"Origin": DAPP})
    refused = client.get("/api/v1/test/ping", headers={"Origin": DAPP})
    assert refused.status_code == 429
    assert refused.headers["access-control-allow-origin"] == DAPP
    exposed = refused.headers["access-control-expose-headers"].lower()
    assert "retry-after" in exposed
    assert "ratelimit-remaining" in exposed


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/api/v1/test/ping", "/api/v1/onramp/sessions", "/nope", "/openapi.json"]
)
def test_every_api_answer_has_the_strict_headers(edge_client: Client, path: str) -> None:
    response = edge_client().get(path)
    assert response.headers["content-security-policy"] == API_CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in response.headers  # plain HTTP outside production


def test_the_docs_get_a_relaxed_policy_that_still_forbids_framing(edge_client: Client) -> None:
    response = edge_client().get("/docs")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert csp == DOCS_CSP
    assert "frame-ancestors 'none'" in csp
    assert "cdn.jsdelivr.net" in csp
    assert response.headers["x-frame-options"] == "DENY"


def test_hsts_over_tls_and_always_in_production(edge_client: Client) -> None:
    over_tls = edge_client(client_ip="10.0.0.2", trusted_proxy_hops=1)
    https = over_tls.get("/healthz", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.1"})
    assert https.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    direct = edge_client()  # no trusted proxy: a client's X-Forwarded-Proto means nothing
    assert "strict-transport-security" not in direct.get("/healthz", headers={"X-Forwarded-Proto": "https"}).headers
    tls = edge_client(base_url="https://testserver")
    assert "strict-transport-security" in tls.get("/healthz").headers
    production = edge_client(environment="production", stripe_secret_key="sk_live_edge_tests")
    assert "max-age=63072000" in production.get("/healthz").headers["strict-transport-security"]
    disabled = edge_client(environment="production", stripe_secret_key="sk_live_edge_tests", hsts_max_age_seconds=0)
    assert "strict-transport-security" not in disabled.get("/healthz").headers


def test_a_cross_site_form_post_with_a_cookie_gets_nothing(edge_client: Client) -> None:
    """What a forged form on another site can send: a simple request (text/plain or urlencoded), the victim's
    cookies, another Origin. Credentials are only ever read from headers a form cannot set, and JSON bodies only
    from JSON content types, so nothing is created and nothing is readable."""
    client = edge_client(environment="development")
    body = json.dumps({"walletAddress": WALLET, "sourceAmount": "100.00"})
    for content_type, content in [
        ("text/plain", body),
        ("application/x-www-form-urlencoded", f"walletAddress={WALLET}&sourceAmount=100.00"),
    ]:
        response = client.post(
            "/api/v1/onramp/sessions",
            content=content,
            headers={"Content-Type": content_type, "Origin": EVIL, "Cookie": "session=victim; musdpay=1"},
        )
        assert 400 <= response.status_code < 500, response.text
        assert "access-control-allow-origin" not in {k.lower() for k in response.headers}
    factory = client.app.state.musdpay.factory  # type: ignore[attr-defined]
    with factory() as db:
        assert db.scalar(select(func.count()).select_from(OnrampSession)) == 0


def test_no_route_sets_a_cookie(edge_client: Client) -> None:
    client = edge_client(environment="development")
    schema = client.get("/openapi.json").json()
    answers = [client.get("/docs"), client.get("/redoc"), client.get("/problems/not-found")]
    for path, operations in schema["paths"].items():
        concrete = path.replace("{", "").replace("}", "")
        for method in operations:
            answers.append(client.request(method.upper(), concrete, headers={"Origin": DAPP}, json={}))
    assert len(answers) > 8
    for response in answers:
        assert "set-cookie" not in {k.lower() for k in response.headers}, response.request.url
