"""Probing each Mezo JSON-RPC provider from outside, through the payment service's provider pool.

Each probe of a provider asks it `eth_chainId` (every `chain_id_every` probes) and `eth_blockNumber`, over
`ProviderPool.probe`: that one provider, no failover, errors classified by the pool (`RpcErrorKind`). What is
recorded per provider:

- availability: `rpc_probes_total{outcome}` (success means the configured chain answered its head) and `rpc_up`;
- latency of `eth_blockNumber` (histogram and last value), its head, and how far behind the best provider it
  is, in blocks and in seconds (how long ago some provider first reported a head above this one's);
- stall: the time since its head last moved, and `rpc_head_stalled` when that exceeds the threshold while
  another provider is ahead (a quiet chain, where no provider moves, is a halt, not a stall:
  `rpc_best_head_age_seconds`);
- errors by kind, requests by method, and credits from the provider's credit table, projected to the month.
"""

from __future__ import annotations

import bisect
import calendar
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from monitor.config import RpcConfig
from monitor.metrics import MonitorMetrics
from monitor.scheduler import ProbeFailed, ProbeJob
from payment.chain.errors import RpcError, RpcErrorKind
from payment.chain.pool import PROVIDER_ERROR_KINDS, ProviderPool
from payment.core.metrics import KNOWN_RPC_METHODS, LabelSets, rpc_method_label

__all__ = ["OUTCOMES", "PROBE_METHODS", "CreditMeter", "HeadTracker", "RpcProbes", "metric_labels"]

MAX_TRACKED_HEADS = 4096
_STALE_INTERVALS = 3  # a provider's head older than this many intervals does not count as the best
SUCCESS, FAILURE = "success", "failure"
OUTCOMES = (SUCCESS, FAILURE)  # of a probe (`musdpay_monitor_rpc_probes_total`)
CHAIN_ID, BLOCK_NUMBER = "eth_chainId", "eth_blockNumber"
PROBE_METHODS = (CHAIN_ID, BLOCK_NUMBER)  # what a probe asks (`musdpay_monitor_rpc_requests_total`)


def metric_labels(providers: Sequence[str]) -> LabelSets:
    """The RPC probes' series of these providers, for `MonitorMetrics.initialise`: a probe fails with any kind of
    a provider's own call (`payment.chain.pool.PROVIDER_ERROR_KINDS`), never with the pool's."""
    return {
        "rpc_probes": [(name, outcome) for name in providers for outcome in OUTCOMES],
        "rpc_errors": [(name, kind.value) for name in providers for kind in PROVIDER_ERROR_KINDS],
        "rpc_requests": [(name, method) for name in providers for method in PROBE_METHODS],
        "rpc_credits": [(name,) for name in providers],
        "rpc_latency": [(name,) for name in providers],
    }


@dataclass
class HeadTracker:
    """Heads seen across providers: the best current head, and when each height was first reported."""

    fresh_for: float  # seconds a provider's last head counts towards the best
    _heads: dict[str, tuple[int, float]] = field(default_factory=dict)  # provider -> (head, seen at)
    _moved_at: dict[str, float] = field(default_factory=dict)  # provider -> when its head last changed
    _blocks: list[int] = field(default_factory=list)  # heights first seen, sorted
    _first_seen: dict[int, float] = field(default_factory=dict)
    _best: tuple[int, float] | None = None  # highest head seen, and when it first appeared

    def observe(self, provider: str, head: int, now: float) -> None:
        previous = self._heads.get(provider)
        if previous is None or previous[0] != head:
            self._moved_at[provider] = now
        self._heads[provider] = (head, now)
        if head not in self._first_seen:
            self._first_seen[head] = now
            bisect.insort(self._blocks, head)
            if len(self._blocks) > MAX_TRACKED_HEADS:
                del self._first_seen[self._blocks.pop(0)]
        if self._best is None or head > self._best[0]:
            self._best = (head, now)

    def forget(self, provider: str) -> None:
        """A provider answering another chain: its heights mean nothing here."""
        self._heads.pop(provider, None)
        self._moved_at.pop(provider, None)

    def best(self, now: float) -> int | None:
        fresh = [head for head, seen in self._heads.values() if now - seen <= self.fresh_for]
        return max(fresh, default=None)

    def lag(self, provider: str, now: float) -> tuple[int, float]:
        """(blocks, seconds) the provider is behind the best fresh head."""
        head = self._heads[provider][0]
        best = self.best(now)
        if best is None or best <= head:
            return 0, 0.0
        above = self._blocks[bisect.bisect_right(self._blocks, head) :]
        first = min((self._first_seen[b] for b in above), default=now)
        return best - head, max(now - first, 0.0)

    def head_age(self, provider: str, now: float) -> float | None:
        moved = self._moved_at.get(provider)
        return None if moved is None else max(now - moved, 0.0)

    def best_head_age(self, now: float) -> float | None:
        return None if self._best is None else max(now - self._best[1], 0.0)


@dataclass
class CreditMeter:
    """Credits one provider's requests cost, and their projection to the end of the calendar month (UTC)."""

    table: dict[str, float]
    started: float = field(default_factory=time.time)
    _month: tuple[int, int] | None = None
    _used: float = 0.0
    _since: float = 0.0

    def cost(self, method: str) -> float:
        return self.table.get(method, self.table.get("default", 1.0))

    def charge(self, method: str, now: float) -> float:
        cost = self.cost(method)
        day = datetime.fromtimestamp(now, UTC)
        month = (day.year, day.month)
        if month != self._month:
            start = datetime(day.year, day.month, 1, tzinfo=UTC).timestamp()
            self._month, self._used, self._since = month, 0.0, max(start, self.started)
        self._used += cost
        return cost

    def projected(self, now: float) -> float:
        """This month's use at the rate observed since the month (or the monitor) started, over the whole month."""
        if self._month is None:
            return 0.0
        year, month = self._month
        length = calendar.monthrange(year, month)[1] * 86400.0
        return self._used / max(now - self._since, 1.0) * length


class RpcProbes:
    """The RPC probe of every configured provider, sharing one head tracker."""

    def __init__(self, pool: ProviderPool, config: RpcConfig, metrics: MonitorMetrics, *, chain_id: int) -> None:
        self.pool = pool
        self.config = config
        self.metrics = metrics
        self.chain_id = chain_id
        self.heads = HeadTracker(fresh_for=config.interval_seconds * _STALE_INTERVALS + config.timeout)
        self.meters = {name: CreditMeter(config.credit_table(name)) for name in pool.names}
        self._runs = dict.fromkeys(pool.names, 0)
        m = metrics
        for name in pool.names:
            m.rpc_sla_target.labels(name).set(config.sla_target(name))
            for outcome in OUTCOMES:
                m.rpc_probes.labels(name, outcome)
            for method in (*sorted(KNOWN_RPC_METHODS), "other"):  # the labels of the API's musdpay_rpc_* families
                m.rpc_credit_cost.labels(name, method).set(self.meters[name].cost(method))
            quota = config.quota(name)
            if quota is not None:
                m.rpc_credit_quota.labels(name).set(quota)
            m.rpc_credits.labels(name)
            m.rpc_head_age.labels(name).set_function(self._age_of(name))
            m.rpc_credits_projected.labels(name).set_function(self._projection_of(name))
        m.rpc_best_head_age.set_function(lambda: self.heads.best_head_age(time.time()) or 0.0)

    def jobs(self) -> list[ProbeJob]:
        return [ProbeJob("rpc", name, self.config, self._probe_of(name)) for name in self.pool.names]

    def _age_of(self, provider: str) -> Callable[[], float]:
        return lambda: self.heads.head_age(provider, time.time()) or 0.0

    def _projection_of(self, provider: str) -> Callable[[], float]:
        return lambda: self.meters[provider].projected(time.time())

    def _probe_of(self, provider: str) -> Callable[[], Awaitable[None]]:
        async def probe() -> None:
            await self.probe(provider)

        return probe

    async def _call(self, provider: str, method: str) -> tuple[object, float]:
        """The call's result and its duration in seconds (the provider's answer only, no bookkeeping)."""
        m = self.metrics
        m.rpc_requests.labels(provider, rpc_method_label(method)).inc()
        m.rpc_credits.labels(provider).inc(self.meters[provider].charge(method, time.time()))
        started = time.perf_counter()
        result = await self.pool.probe(provider, method)
        return result, time.perf_counter() - started

    async def probe(self, provider: str) -> None:
        """One probe of one provider; raises ProbeFailed with the error kind when it fails."""
        m = self.metrics
        run = self._runs[provider]
        self._runs[provider] = run + 1
        try:
            if run % self.config.chain_id_every == 0:
                answer, _ = await self._call(provider, CHAIN_ID)
                chain_id = _quantity(provider, CHAIN_ID, answer)
                m.rpc_chain_id.labels(provider).set(chain_id)
                matches = chain_id == self.chain_id
                m.rpc_chain_id_match.labels(provider).set(1 if matches else 0)
                if not matches:
                    self.heads.forget(provider)
                    raise RpcError(
                        f"{provider} serves chain {chain_id}, not {self.chain_id}",
                        kind=RpcErrorKind.chain_id_mismatch,
                        retryable=False,
                        provider=provider,
                        method=CHAIN_ID,
                    )
            result, elapsed = await self._call(provider, BLOCK_NUMBER)
            head = _quantity(provider, BLOCK_NUMBER, result)
        except RpcError as exc:
            m.rpc_errors.labels(provider, exc.kind.value).inc()
            m.rpc_probes.labels(provider, FAILURE).inc()
            m.rpc_up.labels(provider).set(0)
            raise ProbeFailed(exc.kind.value) from None
        now = time.time()
        m.rpc_latency.labels(provider).observe(elapsed)
        m.rpc_last_latency.labels(provider).set(elapsed)
        m.rpc_head.labels(provider).set(head)
        self.heads.observe(provider, head, now)
        lag_blocks, lag_seconds = self.heads.lag(provider, now)
        m.rpc_head_lag_blocks.labels(provider).set(lag_blocks)
        m.rpc_head_lag_seconds.labels(provider).set(lag_seconds)
        age = self.heads.head_age(provider, now) or 0.0
        m.rpc_stalled.labels(provider).set(1 if lag_blocks > 0 and age >= self.config.stall_after_seconds else 0)
        m.rpc_probes.labels(provider, SUCCESS).inc()
        m.rpc_up.labels(provider).set(1)


def _quantity(provider: str, method: str, result: object) -> int:
    if isinstance(result, str):
        try:
            return int(result, 16)
        except ValueError:
            pass
    raise RpcError(
        f"{method} on {provider}: not a hex quantity",
        kind=RpcErrorKind.invalid_response,
        retryable=True,
        provider=provider,
        method=method,
    )
