"""The GCRA limiters: in memory (with a fake clock) and in the real Redis, and their fallback."""

from __future__ import annotations

import asyncio
import math

import pytest
import redis.asyncio as aioredis

from payment.core.config import DEFAULT_RATE_LIMITS, RateRule, Settings
from payment.core.metrics import PaymentMetrics
from payment.security.ratelimit import (
    Decision,
    InMemoryRateLimiter,
    RedisRateLimiter,
    build_rate_limiter,
    client_key,
)
from payment.security.throttle import RouteTable
from tests.payment.security.conftest import REDIS_URL

RULES = {**DEFAULT_RATE_LIMITS, "tight": RateRule(limit=3, period=3.0)}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_limit_requests_passes_then_the_next_waits_one_interval() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(RULES, clock=clock)
    decisions = [limiter.check("ip:1", "tight") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[3].retry_after == pytest.approx(1.0)
    assert decisions[3].retry_after_seconds == 1
    assert decisions[3].limit == 3
    assert decisions[2].reset == pytest.approx(3.0)  # the whole quota is back after one period
    clock.now += 0.999
    assert not limiter.check("ip:1", "tight").allowed  # refused requests did not push the time further
    clock.now += 0.001
    assert limiter.check("ip:1", "tight").allowed
    assert limiter.check("ip:2", "tight").allowed  # another key, its own bucket


def test_peek_counts_nothing() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(RULES, clock=clock)
    for _ in range(5):
        assert limiter.check("k", "tight", record=False) == Decision(True, 0.0, 3, 3, 0.0)
    for _ in range(3):
        limiter.check("k", "tight")
    peeked = limiter.check("k", "tight", record=False)
    assert not peeked.allowed
    assert peeked.retry_after == pytest.approx(1.0)


def test_memory_stays_bounded_and_idle_keys_go_first() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(RULES, clock=clock, max_keys=100)
    for i in range(1000):
        limiter.check(f"ip:{i}", "tight")
    assert len(limiter) == 100
    clock.now += 10  # every bucket is full again: the same as no entry
    for i in range(50):
        limiter.check(f"new:{i}", "tight")
    assert len(limiter) <= 100
    busy = InMemoryRateLimiter(RULES, clock=clock, max_keys=100)
    for _ in range(3):
        busy.check("attacker", "tight")
    for i in range(20):  # idle keys are evicted, not the one in use
        busy.check(f"other:{i}", "tight")
    assert not busy.check("attacker", "tight").allowed


def test_an_unknown_rule_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        InMemoryRateLimiter(RULES).check("k", "no-such-rule")


def test_the_in_memory_check_costs_microseconds() -> None:
    limiter = InMemoryRateLimiter(RULES)
    import time

    started = time.perf_counter()
    for i in range(20_000):
        limiter.check(f"ip:{i % 500}", "default")
    per_check = (time.perf_counter() - started) / 20_000
    assert per_check < 50e-6, f"{per_check * 1e6:.1f} µs per check"


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("198.51.100.4", "ip:198.51.100.4"),
        ("2001:db8:1:2:3:4:5:6", "ip:2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "ip:2001:db8:1:2::/64"),  # one subscriber's /64 is one client
        ("::ffff:198.51.100.4", "ip:198.51.100.4"),
        (None, "ip:unknown"),
    ],
)
def test_client_keys(ip: str | None, key: str) -> None:
    assert client_key(ip) == key


def test_the_route_table_prefers_exact_then_method_then_longest() -> None:
    table = RouteTable(
        {
            "POST /api/v1/onramp/sessions": "create_session",
            "/api/v1/webhooks/stripe": "webhook",
            "/api/v1/auth/*": "auth",
            "GET /api/v1/onramp/sessions/{session_id}": "reads",
            "/healthz": "exempt",
        }
    )
    assert table.rule("POST", "/api/v1/onramp/sessions") == "create_session"
    assert table.rule("GET", "/api/v1/onramp/sessions") == "default"
    assert table.rule("POST", "/api/v1/webhooks/stripe") == "webhook"
    assert table.rule("POST", "/api/v1/auth/siwe/verify") == "auth"
    assert table.rule("GET", "/api/v1/onramp/sessions/abc") == "reads"
    assert table.rule("GET", "/api/v1/onramp/sessions/abc/more") == "default"
    assert table.rule("GET", "/healthz") == "exempt"
    assert table.rule("GET", "/anything") == "default"


def test_settings_parse_rules_over_the_defaults_and_refuse_unknown_names() -> None:
    settings = Settings(rate_limits="create_session=5/10", rate_limit_routes="POST /api/v1/x=create_session")
    assert settings.rate_limits["create_session"] == RateRule(limit=5, period=10)
    assert settings.rate_limits["auth_failure"] == DEFAULT_RATE_LIMITS["auth_failure"]
    assert settings.rate_limit_routes["POST /api/v1/x"] == "create_session"
    assert settings.rate_limit_routes["/healthz"] == "exempt"
    with pytest.raises(ValueError, match="unknown rules: nope"):
        Settings(rate_limit_routes="/x=nope")
    with pytest.raises(ValueError, match="name=limit/seconds"):
        Settings(rate_limits="create_session=5")


async def _redis_limiter(prefix: str, **kwargs: object) -> RedisRateLimiter:
    return RedisRateLimiter.from_url(REDIS_URL, RULES, prefix=prefix, **kwargs)  # type: ignore[arg-type]


@pytest.mark.integration
def test_redis_gives_the_same_decisions_and_shares_them_between_limiters(redis_prefix: str) -> None:
    async def scenario() -> None:
        first, second = await _redis_limiter(redis_prefix), await _redis_limiter(redis_prefix)
        try:
            assert (await first.peek("ip:1", "tight")).remaining == 3
            results = [await (first if i % 2 else second).hit("ip:1", "tight") for i in range(4)]
            assert [d.allowed for d in results] == [True, True, True, False]
            assert [d.remaining for d in results] == [2, 1, 0, 0]
            assert 0.9 < results[3].retry_after <= 1.0
            assert results[3].retry_after_seconds == 1
            assert not (await first.peek("ip:1", "tight")).allowed
            assert (await second.hit("ip:2", "tight")).allowed
            assert first.fallback.check("ip:1", "tight").allowed  # the memory fallback was never used
        finally:
            await first.aclose()
            await second.aclose()

    asyncio.run(scenario())


@pytest.mark.integration
def test_redis_keys_expire_with_their_bucket(redis_prefix: str) -> None:
    async def scenario() -> None:
        limiter = await _redis_limiter(redis_prefix)
        try:
            await limiter.hit("ip:9", "tight")
            ttl = await limiter.client.pttl(f"{redis_prefix}tight:ip:9")
            assert 0 < ttl <= 3000
        finally:
            await limiter.aclose()

    asyncio.run(scenario())


def test_when_redis_is_down_limits_hold_per_instance_and_the_failure_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = PaymentMetrics(process_collectors=False)
    settings = Settings(redis_url="redis://:hunter2-redis-password@127.0.0.1:1/0", redis_timeout_seconds=0.2)

    async def scenario() -> list[Decision]:
        limiter = build_rate_limiter(settings, metrics)
        assert isinstance(limiter, RedisRateLimiter)
        try:
            return [await limiter.hit("ip:1", "auth_failure") for _ in range(11)]
        finally:
            await limiter.aclose()

    decisions = asyncio.run(scenario())
    assert [d.allowed for d in decisions] == [True] * 10 + [False]  # fell back to memory, did not fail open
    errors = metrics.registry.get_sample_value("musdpay_rate_limit_backend_errors_total")
    assert errors == 1  # then Redis is left alone for a while, not retried per request
    warnings = [r.getMessage() for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert "hunter2" not in caplog.text


def test_decision_headers() -> None:
    refused = Decision(False, 1.2, 0, 10, 30.4)
    assert dict(refused.headers()) == {
        b"ratelimit-limit": b"10",
        b"ratelimit-remaining": b"0",
        b"ratelimit-reset": b"31",
        b"retry-after": b"2",
    }
    assert b"retry-after" not in dict(Decision(True, 0, 3, 10, math.pi).headers())


def test_the_redis_client_is_the_asyncio_one() -> None:
    limiter = RedisRateLimiter.from_url(REDIS_URL, RULES)
    assert isinstance(limiter.client, aioredis.Redis)
    asyncio.run(limiter.aclose())
