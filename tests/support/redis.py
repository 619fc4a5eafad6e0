"""The machine's real Redis for tests (127.0.0.1:6379), each test under a key prefix of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from tests.support.services import require

__all__ = ["REDIS_URL", "redis_available", "redis_prefix"]

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_available() -> tuple[bool, str]:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1).ping()
        return True, ""
    except redis.RedisError as exc:
        return False, f"Redis at {REDIS_URL} unreachable: {exc}"


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test alone (Redis required with CI=true); its keys are deleted afterwards."""
    ok, reason = redis_available()
    require(ok, reason)
    prefix = f"musdpay-test:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
