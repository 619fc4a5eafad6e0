"""Rate limits: named rules (`limit` requests per `period` seconds), checked with GCRA, in memory or in Redis.

GCRA (the generic cell rate algorithm) keeps one number per key, the "theoretical arrival time" (TAT): each
request pushes it `period / limit` seconds further, and a request is refused when that would put it more than
`period` ahead of now. It allows bursts of up to `limit` requests and then a steady `limit / period` rate, with
an exact `retry_after`, in O(1) time and memory per key.

Two implementations of one `RateLimiter` protocol:

- `InMemoryRateLimiter`: per process, microseconds per check, bounded memory (idle keys are evicted first,
  then the least recently used when `max_keys` is reached).
- `RedisRateLimiter`: shared by every instance pointed at the same Redis; one round trip per check (a Lua
  script, atomic, on Redis's clock). When Redis is unreachable it falls back to its own in-memory limiter for
  a few seconds (limits stay enforced, per instance) and counts the failure: neither failing open (a brute
  force of credentials would be unlimited during an outage) nor closed (an outage of a cache would become an
  outage of payments). See docs/security.md.

`hit` records a request and says whether it is allowed; `peek` says whether one would be, recording nothing
(the middleware peeks at the `auth_failure` bucket before authentication, and hits it on each 401).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from payment.core.config import RateRule, Settings
from payment.core.metrics import PaymentMetrics

__all__ = [
    "Decision",
    "InMemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "build_rate_limiter",
    "client_key",
]

log = logging.getLogger(__name__)

_EPSILON = 1e-6  # float slack: a request exactly on the boundary is allowed


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one check: `retry_after` and `reset` are in seconds (0 when allowed / full)."""

    allowed: bool
    retry_after: float
    remaining: int
    limit: int
    reset: float = 0.0  # seconds until the whole quota is available again

    def headers(self) -> list[tuple[bytes, bytes]]:
        """`RateLimit-*` headers (IETF draft "RateLimit header fields for HTTP"), plus `Retry-After` if refused."""
        headers = [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(math.ceil(self.reset)).encode()),
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(self.retry_after_seconds).encode()))
        return headers

    @property
    def retry_after_seconds(self) -> int:
        """`Retry-After` as HTTP wants it: whole seconds, rounded up, at least 1 when refused."""
        return max(1, math.ceil(self.retry_after - _EPSILON)) if not self.allowed else 0


class RateLimiter(Protocol):
    rules: Mapping[str, RateRule]

    async def hit(self, key: str, rule: str) -> Decision:
        """Count one request of `key` against `rule`; refused requests are not counted."""
        ...

    async def peek(self, key: str, rule: str) -> Decision:
        """Whether one request of `key` would be allowed by `rule` now, counting nothing."""
        ...

    async def aclose(self) -> None: ...


def _gcra(tat: float, now: float, rule: RateRule, *, record: bool) -> tuple[Decision, float | None]:
    """The decision for a key whose TAT is `tat`, and its new TAT (None: unchanged)."""
    interval = rule.period / rule.limit
    tat = max(tat, now)
    new_tat = tat + interval
    allow_at = new_tat - rule.period
    if now < allow_at - _EPSILON:
        return Decision(False, allow_at - now, 0, rule.limit, tat - now), None
    remaining = int((now - allow_at) / interval + _EPSILON)
    if not record:
        return Decision(True, 0.0, remaining + 1, rule.limit, tat - now), None
    return Decision(True, 0.0, remaining, rule.limit, new_tat - now), new_tat


class InMemoryRateLimiter:
    """GCRA in a dict of TATs, kept in least-recently-used order (a key is moved to the end on each hit).

    Memory is bounded: each new key first evicts up to two expired keys from the front (a key whose TAT has
    passed is a full bucket, the same as no entry), and past `max_keys` the least recently used key is
    dropped (that client starts afresh: under a flood of distinct keys, memory wins over precision).
    """

    def __init__(
        self,
        rules: Mapping[str, RateRule],
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = rules
        self.max_keys = max_keys
        self._clock = clock
        self._tats: dict[tuple[str, str], float] = {}

    def __len__(self) -> int:
        return len(self._tats)

    async def hit(self, key: str, rule: str) -> Decision:
        return self.check(key, rule, record=True)

    async def peek(self, key: str, rule: str) -> Decision:
        return self.check(key, rule, record=False)

    async def aclose(self) -> None:
        self._tats.clear()

    def check(self, key: str, rule: str, *, record: bool = True) -> Decision:
        """The synchronous check behind `hit` and `peek` (no awaits: nothing to wait for in memory)."""
        spec = self.rules[rule]
        now = self._clock()
        tats = self._tats
        slot = (rule, key)
        tat = tats.pop(slot, None) if record else tats.get(slot)
        decision, new_tat = _gcra(tat if tat is not None else now, now, spec, record=record)
        if not record:
            return decision
        if new_tat is None:  # refused: put the unchanged TAT back (at the end: it is in use)
            new_tat = tat
        if new_tat is not None:
            if tat is None:
                self._make_room(now)
            tats[slot] = new_tat
        return decision

    def _make_room(self, now: float) -> None:
        tats = self._tats
        for _ in range(2):
            oldest = next(iter(tats), None)
            if oldest is None or tats[oldest] > now:
                break
            del tats[oldest]
        while len(tats) >= self.max_keys:
            del tats[next(iter(tats))]


# KEYS[1]: the bucket; ARGV: period (s), limit, record (0/1). Returns {allowed, retry_after, remaining, reset}
# with the floats as strings (Redis turns Lua numbers into integers). Redis's own clock keeps every instance on
# one time line.
_GCRA_SCRIPT = """
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local record = tonumber(ARGV[3])
local interval = period / limit
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at - 0.000001 then
  return {0, string.format('%.6f', allow_at - now), 0, string.format('%.6f', tat - now)}
end
local remaining = math.floor((now - allow_at) / interval + 0.000001)
if record == 0 then
  return {1, '0', remaining + 1, string.format('%.6f', tat - now)}
end
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, '0', remaining, string.format('%.6f', new_tat - now)}
"""


class RedisRateLimiter:
    """GCRA in Redis, shared by every API instance using the same Redis and key prefix.

    On a Redis error (down, timeout, wrong password) the check is answered by `fallback` (in memory, per
    instance), Redis is left alone for `retry_backend_after` seconds (no timeout paid per request during an
    outage), `on_backend_error` is called (a metric) and a warning is logged at most every 30 seconds.
    """

    def __init__(
        self,
        rules: Mapping[str, RateRule],
        client: Any,  # redis.asyncio.Redis
        *,
        prefix: str = "musdpay:ratelimit:",
        fallback: InMemoryRateLimiter | None = None,
        on_backend_error: Callable[[], None] | None = None,
        retry_backend_after: float = 5.0,
    ) -> None:
        self.rules = rules
        self.client = client
        self.prefix = prefix
        self.fallback = fallback or InMemoryRateLimiter(rules)
        self._on_backend_error = on_backend_error
        self._retry_backend_after = retry_backend_after
        self._down_until = 0.0
        self._last_warning = -math.inf
        self._script = client.register_script(_GCRA_SCRIPT)

    @classmethod
    def from_url(
        cls,
        url: str,
        rules: Mapping[str, RateRule],
        *,
        timeout: float = 0.25,
        **kwargs: Any,
    ) -> RedisRateLimiter:
        import redis.asyncio as aioredis  # only deployments that share limits need the client loaded

        client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30
        )
        return cls(rules, client, **kwargs)

    async def hit(self, key: str, rule: str) -> Decision:
        return await self._check(key, rule, record=True)

    async def peek(self, key: str, rule: str) -> Decision:
        return await self._check(key, rule, record=False)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _check(self, key: str, rule: str, *, record: bool) -> Decision:
        spec = self.rules[rule]
        if time.monotonic() < self._down_until:
            return self.fallback.check(key, rule, record=record)
        try:
            allowed, retry_after, remaining, reset = await self._script(
                keys=[f"{self.prefix}{rule}:{key}"], args=[repr(spec.period), spec.limit, int(record)]
            )
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # redis.RedisError, OSError, timeouts: any failure of the shared store
            self._backend_failed(exc)
            return self.fallback.check(key, rule, record=record)
        return Decision(bool(allowed), float(retry_after), int(remaining), spec.limit, float(reset))

    def _backend_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self._down_until = now + self._retry_backend_after
        if self._on_backend_error is not None:
            self._on_backend_error()
        if now - self._last_warning >= 30:
            self._last_warning = now
            # The class name only: a connection error's text may carry the URL, and with it the password.
            log.warning(
                "rate limiter: Redis unavailable (%s); limiting per instance for %.0fs",
                type(exc).__name__,
                self._retry_backend_after,
            )


@functools.lru_cache(maxsize=4096)  # bounded; IPv6 prefixes cost a few microseconds to compute
def client_key(ip: str | None) -> str:
    """The bucket key of a client address: IPv4 as is, IPv6 by its /64 (one subscriber's whole prefix, which
    they can rotate through freely), `unknown` when the address is not known (every such caller shares one)."""
    if ip is None:
        return "ip:unknown"
    if ":" not in ip:
        return f"ip:{ip}"
    try:
        address = ipaddress.IPv6Address(ip)
    except ValueError:
        return "ip:unknown"
    if address.ipv4_mapped is not None:
        return f"ip:{address.ipv4_mapped}"
    return f"ip:{ipaddress.IPv6Network((address, 64), strict=False)}"


def build_rate_limiter(settings: Settings, metrics: PaymentMetrics) -> RateLimiter:
    """In memory, or in Redis (falling back to memory) when `MUSDPAY_REDIS_URL` is set."""
    memory = InMemoryRateLimiter(settings.rate_limits, max_keys=settings.rate_limit_max_keys)
    if settings.redis_url is None:
        return memory
    return RedisRateLimiter.from_url(
        settings.redis_url.get_secret_value(),
        settings.rate_limits,
        timeout=settings.redis_timeout_seconds,
        prefix=settings.rate_limit_redis_prefix,
        fallback=memory,
        on_backend_error=metrics.rate_limit_backend_errors.inc,
    )
