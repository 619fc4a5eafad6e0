"""Rate limits and the body size limit at the edge of the real application (TestClient, SQLite)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from payment.core.problems import PROBLEM_CONTENT_TYPE
from tests.payment.conftest import WALLET
from tests.payment.security.conftest import GOOD_KEY

Client = Callable[..., TestClient]


def _counter(client: TestClient, rule: str) -> float:
    metrics = client.app.state.musdpay.telemetry.metrics  # type: ignore[attr-defined]
    value = metrics.registry.get_sample_value("musdpay_rate_limited_total", {"rule": rule})
    return value or 0.0


def test_a_route_past_its_limit_answers_a_429_problem_with_retry_after(edge_client: Client) -> None:
    client = edge_client(rate_limits="default=3/60")
    answers = [client.get("/api/v1/test/ping") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a.headers["RateLimit-Limit"] == "3" for a in answers)
    refused = answers[3]
    assert refused.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert refused.headers["Retry-After"] == "20"  # 60 s / 3: integer seconds, rounded up
    assert int(refused.headers["RateLimit-Reset"]) == 60
    body = refused.json()
    assert body["type"] == "/problems/rate-limited"
    assert body["status"] == 429
    assert body["instance"] == "/api/v1/test/ping"
    assert client.app.state.test_calls == ["ping"] * 3  # type: ignore[attr-defined]  # refused before the route
    assert _counter(client, "default") == 1
    assert client.get("/problems/rate-limited").status_code == 429  # same IP, same default bucket
    other = edge_client(client_ip="203.0.113.8", rate_limits="default=3/60")
    assert other.get("/api/v1/test/ping").status_code == 200  # its own app; and per IP in any case


def test_refused_requests_are_measured_under_their_route_template(edge_client: Client) -> None:
    client = edge_client(rate_limits="default=1/60")
    client.get("/api/v1/onramp/sessions/8d1f3c1e-0000-4000-8000-000000000000")
    assert client.get("/api/v1/onramp/sessions/8d1f3c1e-0000-4000-8000-000000000001").status_code == 429
    metrics = client.app.state.musdpay.telemetry.metrics  # type: ignore[attr-defined]
    labels = {"method": "GET", "route": "/api/v1/onramp/sessions/{session_id}", "status_code": "429"}
    assert metrics.registry.get_sample_value("musdpay_http_request_duration_seconds_count", labels) == 1


def test_each_ip_has_its_own_bucket_behind_trusted_proxies(edge_client: Client) -> None:
    client = edge_client(client_ip="10.0.0.2", rate_limits="default=2/60", trusted_proxy_hops=1)
    for _ in range(2):
        assert client.get("/api/v1/test/ping", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    assert client.get("/api/v1/test/ping", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429
    # The client cannot pick its bucket: only the entry our proxy appended counts.
    spoofed = {"X-Forwarded-For": "1.2.3.4, 198.51.100.1"}
    assert client.get("/api/v1/test/ping", headers=spoofed).status_code == 429
    assert client.get("/api/v1/test/ping", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200


def test_session_creation_has_its_own_tighter_rule(edge_client: Client) -> None:
    client = edge_client(rate_limits="create_session=2/60")
    invalid = {"walletAddress": "nope", "sourceAmount": "1"}
    statuses = [client.post("/api/v1/onramp/sessions", json=invalid).status_code for _ in range(3)]
    assert statuses[:2] in ([422, 422], [401, 401])  # anonymous: refused by validation or authentication
    assert statuses[2] == 429  # counted before either: refused requests cost a token too
    assert client.get("/api/v1/test/ping").status_code == 200  # the default bucket is untouched
    assert _counter(client, "create_session") == 1


def test_health_and_metrics_are_never_limited(edge_client: Client) -> None:
    client = edge_client(rate_limits="default=1/60")
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
    assert "ratelimit-limit" not in client.get("/healthz").headers


def test_stripe_webhooks_have_a_separate_generous_bucket(edge_client: Client) -> None:
    client = edge_client(rate_limits="default=1/60")
    client.get("/api/v1/test/ping")
    assert client.get("/api/v1/test/ping").status_code == 429
    for _ in range(20):  # unsigned: 400, but never 429 while the default bucket is empty
        response = client.post("/api/v1/webhooks/stripe", content=b"{}")
        assert response.status_code == 400
        assert response.headers["RateLimit-Limit"] == "6000"


def test_a_brute_force_of_bad_api_keys_is_cut_off_with_429(edge_client: Client) -> None:
    client = edge_client(rate_limits="auth_failure=5/300")
    calls: list[str] = client.app.state.test_calls  # type: ignore[attr-defined]
    statuses = [
        client.get("/api/v1/test/protected", headers={"X-API-Key": f"mpk_guess_{i}"}).status_code for i in range(8)
    ]
    assert statuses == [401] * 5 + [429] * 3
    assert calls.count("protected") == 5  # refused before authentication ran
    refused = client.get("/api/v1/test/protected", headers={"X-API-Key": GOOD_KEY})
    assert refused.status_code == 429  # even the right key: the guesser cannot tell
    assert refused.json()["type"] == "/problems/too-many-auth-failures"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    bearer = client.get("/api/v1/test/ping", headers={"Authorization": "Bearer forged"})
    assert bearer.status_code == 429  # any request carrying credentials, on any route
    assert client.get("/api/v1/test/ping").status_code == 200  # without credentials: the default rule only
    assert _counter(client, "auth_failure") == 5


def test_failures_from_another_ip_do_not_lock_out_a_client(edge_client: Client) -> None:
    client = edge_client(client_ip="10.0.0.2", trusted_proxy_hops=1, rate_limits="auth_failure=2/300")
    attacker = {"X-Forwarded-For": "198.51.100.66"}
    for i in range(3):
        client.get("/api/v1/test/protected", headers={**attacker, "X-API-Key": f"bad{i}"})
    victim = {"X-Forwarded-For": "198.51.100.77", "X-API-Key": GOOD_KEY}
    assert client.get("/api/v1/test/protected", headers=victim).status_code == 200


def test_an_api_key_has_its_own_bucket_across_ips(edge_client: Client) -> None:
    client = edge_client(client_ip="10.0.0.2", trusted_proxy_hops=1, rate_limits="default=1/60,api_key=3/60")
    first = {"X-Forwarded-For": "198.51.100.1", "X-API-Key": GOOD_KEY}
    second = {"X-Forwarded-For": "198.51.100.2", "X-API-Key": GOOD_KEY}
    assert [client.get("/api/v1/test/protected", headers=first).status_code for _ in range(2)] == [200, 200]
    assert client.get("/api/v1/test/protected", headers=second).status_code == 200
    refused = client.get("/api/v1/test/protected", headers=second)  # 2nd for this IP, 4th for the key
    assert refused.status_code == 429
    assert refused.json()["type"] == "/problems/rate-limited"
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    # The key's requests never touched its IPs' buckets (default=1/60): an anonymous call from each still passes.
    for ip in ("198.51.100.1", "198.51.100.2"):
        assert client.get("/api/v1/test/ping", headers={"X-Forwarded-For": ip}).status_code == 200


def test_limits_can_be_switched_off(edge_client: Client) -> None:
    client = edge_client(rate_limits="default=1/60", rate_limit_enabled=False)
    assert {client.get("/api/v1/test/ping").status_code for _ in range(5)} == {200}


def test_a_declared_body_over_the_limit_is_refused_unread(edge_client: Client) -> None:
    client = edge_client(max_body_bytes=1024)
    response = client.post("/api/v1/test/echo", content=b"x" * 1025)
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.json()["type"] == "/problems/payload-too-large"
    assert client.post("/api/v1/test/echo", content=b"x" * 1024).json() == {"size": 1024}


def _chunks(total: int, size: int = 256) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


@pytest.mark.parametrize("path", ["/api/v1/test/echo", "/api/v1/onramp/sessions", "/api/v1/webhooks/stripe"])
def test_a_streamed_body_over_the_limit_is_refused(edge_client: Client, path: str) -> None:
    client = edge_client(max_body_bytes=1024)
    response = client.post(path, content=_chunks(5000), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers  # chunked: no size announced
    assert response.status_code == 413
    assert response.json()["type"] == "/problems/payload-too-large"
    small = json.dumps({"walletAddress": WALLET, "sourceAmount": "1"}).encode()
    assert client.post(path, content=iter([small])).status_code != 413
