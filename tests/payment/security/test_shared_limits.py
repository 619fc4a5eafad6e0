"""Two API processes pointed at one Redis share their rate limits: the limit is global, not per instance."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.payment.security.conftest import JWT_KEYS, REDIS_URL
from tests.support.services import free_port
from tests.support.stack import api_environment, running_api

pytestmark = pytest.mark.integration


def test_two_instances_share_one_limit_through_redis(tmp_path: Path, redis_prefix: str) -> None:
    common = {
        "redis_url": REDIS_URL,
        "rate_limit_redis_prefix": redis_prefix,
        "rate_limits": "default=8/60,auth_failure=3/300",
        "jwt_keys": JWT_KEYS,
        "delivery_worker_enabled": "false",
    }
    unused_stripe = f"http://127.0.0.1:{free_port()}"
    env_a = api_environment(f"sqlite:///{tmp_path / 'a.sqlite'}", unused_stripe, **common)
    env_b = api_environment(f"sqlite:///{tmp_path / 'b.sqlite'}", unused_stripe, **common)
    with running_api(tmp_path, free_port(), env_a) as a, running_api(tmp_path, free_port(), env_b) as b:
        apis = [a, b]
        # Bad API keys on one instance (each a 401) lock the client's credentials out of the other too.
        bad = {"X-API-Key": "mpk_wrong_key_guess"}
        guesses = [httpx.get(f"{a.url}/api/v1/onramp/sessions", headers=bad, timeout=10) for _ in range(3)]
        assert [g.status_code for g in guesses] == [401] * 3
        locked = httpx.get(f"{b.url}/api/v1/onramp/sessions", headers=bad, timeout=10)
        assert locked.status_code == 429
        assert locked.json()["type"] == "/problems/too-many-auth-failures"
        # A public, database-free route under the default rule, alternately on each instance: 3 of the 8 tokens
        # went to the guesses above, 5 are left for both instances together.
        statuses = [httpx.get(f"{apis[i % 2].url}/problems/not-found", timeout=10).status_code for i in range(7)]
        assert statuses == [200] * 5 + [429] * 2
        for api in apis:
            refused = httpx.get(f"{api.url}/problems/not-found", timeout=10)
            assert refused.status_code == 429
            assert refused.json()["type"] == "/problems/rate-limited"
            assert 1 <= int(refused.headers["Retry-After"]) <= 8
        assert httpx.get(f"{b.url}/readyz", timeout=10).status_code != 429  # exempt routes stay open
        scrape = httpx.get(f"{a.url}/metrics", timeout=10).text
        assert 'musdpay_rate_limited_total{rule="default"}' in scrape
        assert "musdpay_rate_limit_backend_errors_total 0.0" in scrape
    for api in apis:
        assert "Redis unavailable" not in api.process.log()
