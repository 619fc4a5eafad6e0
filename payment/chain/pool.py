"""The Mezo JSON-RPC provider pool: one ordered set of providers, health-checked, with failover.

    pool = ProviderPool.from_settings(settings, telemetry)
    await pool.start()                                   # background health polls
    head = await pool.request("eth_blockNumber")         # '0x1a2b', from the selected provider
    await pool.aclose()

Selection follows eRPC's selection policies and Chainlink's MultiNode. Providers are kept in settings order
(Spectrum, then the public fallbacks); each has a state:

    unknown      not polled yet (usable; its chain id is verified before its first call)
    healthy      answering and within K blocks of the best head
    unreachable  N consecutive failed polls or calls (`rpc_unreachable_after`)
    out_of_sync  its head is more than K blocks behind the best provider's (`rpc_out_of_sync_blocks`)
    wrong_chain  its eth_chainId is not `settings.chain_id`: never called, even when it is the only one

The selected provider is the most preferred healthy one (a sticky primary: a faster fallback does not take
traffic from it). A demoted provider is healthy again only after `rpc_recover_after` consecutive good polls
(hysteresis: a flapping primary does not bounce traffic). When no provider is healthy, calls still go to the
others, best score first: a degraded answer beats none.

`request()` tries the candidates in that order, up to `rpc_max_attempts` attempts: a retryable failure
(timeout, connection, 429, 5xx, a rate-limit or internal JSON-RPC error) is recorded against the provider and
the call moves on; an answer about the request (reverted, invalid params, nonce too low, ...) is raised at
once. Each attempt is one OpenTelemetry client span (`jsonrpc <method>`) and one observation of the `rpc_*`
metrics. Raw URLs (which carry API keys) appear nowhere: names and `redact_url()` only.

Transport: web3.py's `AsyncHTTPProvider.make_request` (JSON-RPC encoding, ids, decoding) without the `AsyncWeb3`
middleware stack, over one keep-alive aiohttp session per provider installed with `cache_async_session`;
web3's default session closes the connection after every call (`force_close=True`). bench/rpc_pool.py has the
numbers. A pool belongs to the event loop that first uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Histogram
from web3 import AsyncHTTPProvider
from web3.types import RPCEndpoint

from payment.chain.errors import RpcError, RpcErrorKind, classify_exception, classify_rpc_error
from payment.chain.urls import endpoint_of, redact_url
from payment.core.config import RpcProvider, Settings
from payment.core.metrics import LabelSets, PaymentMetrics, rpc_method_label
from payment.core.telemetry import Telemetry

__all__ = ["NO_PROVIDER", "PoolPolicy", "ProviderHealth", "ProviderPool", "ProviderState", "metric_labels"]

log = logging.getLogger(__name__)

CHAIN_RECHECK_EVERY = 10  # polls between re-checks of a verified provider's chain id
ERROR_WINDOW = 20  # recent calls and polls the error rate is computed over
LATENCY_ALPHA = 0.3  # weight of the newest poll in the latency EWMA
POLL_JITTER = 0.1  # +-10% on each poll interval, so several processes do not poll in step
RETRY_BACKOFF_SECONDS = 0.05  # before asking a provider again within one call (fewer providers than attempts)
RETRY_BACKOFF_MAX_SECONDS = 1.0

# The `provider` label of the pool's own errors (no provider could serve the call), and their kinds; a provider's
# own calls fail with any other kind.
NO_PROVIDER = "none"
POOL_ERROR_KINDS = (RpcErrorKind.chain_id_mismatch, RpcErrorKind.no_provider)
PROVIDER_ERROR_KINDS = tuple(kind for kind in RpcErrorKind if kind is not RpcErrorKind.no_provider)


def metric_labels(names: Sequence[str]) -> LabelSets:
    """The error and failover series of a pool of these providers, for `PaymentMetrics.initialise` (a call
    fails over from any provider to any other). The per-call histogram is left out: providers x methods x
    outcomes x buckets is many series for methods most processes never call."""
    return {
        "rpc_errors": [(name, kind.value) for name in names for kind in PROVIDER_ERROR_KINDS]
        + [(NO_PROVIDER, kind.value) for kind in POOL_ERROR_KINDS],
        "rpc_failovers": [(before, after) for before in names for after in names if after != before],
    }


class ProviderState(StrEnum):
    unknown = "unknown"
    healthy = "healthy"
    unreachable = "unreachable"
    out_of_sync = "out_of_sync"
    wrong_chain = "wrong_chain"


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    """The pool's numbers; `from_settings` reads them from the `rpc_*` settings."""

    chain_id: int
    timeout_seconds: float = 5.0
    max_attempts: int = 3
    poll_interval_seconds: float = 5.0
    unreachable_after: int = 3
    out_of_sync_blocks: int = 5
    recover_after: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> PoolPolicy:
        return cls(
            chain_id=settings.chain_id,
            timeout_seconds=settings.rpc_timeout_seconds,
            max_attempts=settings.rpc_max_attempts,
            poll_interval_seconds=settings.rpc_poll_interval_seconds,
            unreachable_after=settings.rpc_unreachable_after,
            out_of_sync_blocks=settings.rpc_out_of_sync_blocks,
            recover_after=settings.rpc_recover_after,
        )


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """One provider as the pool sees it (for /readyz, logs and the monitor)."""

    name: str
    url: str  # redacted
    state: ProviderState
    selected: bool
    chain_id: int | None  # its last eth_chainId answer
    chain_verified: bool
    head: int | None  # block number at its last successful poll
    lag_blocks: int | None  # behind the best head at the last poll
    latency_ms: float | None  # EWMA of its eth_blockNumber polls
    error_rate: float  # failed share of its last ERROR_WINDOW calls and polls
    consecutive_failures: int
    consecutive_successes: int  # good polls in a row (what recovery counts)
    score: float  # 0..1, higher is better; orders the providers when none is healthy
    last_error: str | None  # kind of its last failure


class _Provider:
    """Mutable health of one provider, and its web3 transport."""

    __slots__ = (
        "chain_id",
        "chain_verified",
        "consecutive_failures",
        "consecutive_successes",
        "head",
        "index",
        "lag",
        "last_error",
        "latency_ms",
        "name",
        "port",
        "raw_url",
        "redacted_url",
        "server_address",
        "session",
        "span_attributes",
        "state",
        "transport",
        "verify_lock",
        "window",
    )

    def __init__(self, index: int, config: RpcProvider, timeout: float) -> None:
        self.index = index
        self.name = config.name
        self.raw_url = config.url.get_secret_value()
        self.redacted_url = redact_url(self.raw_url)
        self.server_address, self.port = endpoint_of(self.raw_url)
        self.span_attributes: dict[str, str | int] = {
            "rpc.system": "jsonrpc",
            "rpc.jsonrpc.version": "2.0",
            "server.address": self.server_address,
            "musdpay.rpc.provider": self.name,
        }
        if self.port is not None:
            self.span_attributes["server.port"] = self.port
        headers = AsyncHTTPProvider.get_request_headers()  # built once, not on every call
        self.transport = AsyncHTTPProvider(
            self.raw_url,
            request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout), "headers": headers},
            exception_retry_configuration=None,  # the pool retries, on another provider
        )
        self.session: aiohttp.ClientSession | None = None
        self.state = ProviderState.unknown
        self.chain_id: int | None = None
        self.chain_verified = False
        self.head: int | None = None
        self.lag: int | None = None
        self.latency_ms: float | None = None
        self.window: deque[bool] = deque(maxlen=ERROR_WINDOW)  # True: a failure
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.last_error: str | None = None
        self.verify_lock = asyncio.Lock()

    @property
    def error_rate(self) -> float:
        return sum(self.window) / len(self.window) if self.window else 0.0

    @property
    def score(self) -> float:
        if self.state is ProviderState.wrong_chain:
            return 0.0
        lag = self.lag or 0
        latency = self.latency_ms or 0.0
        return (1.0 - self.error_rate) / (1 + lag) / (1 + latency / 250)


class ProviderPool:
    def __init__(self, providers: Sequence[RpcProvider], policy: PoolPolicy, telemetry: Telemetry) -> None:
        if not providers:
            raise ValueError("an RPC provider pool needs at least one provider")
        self.policy = policy
        self._providers = [_Provider(i, config, policy.timeout_seconds) for i, config in enumerate(providers)]
        self._by_name = {p.name: p for p in self._providers}
        self._telemetry = telemetry
        self._metrics: PaymentMetrics = telemetry.metrics
        self._durations: dict[tuple[int, str, str], Histogram] = {}  # label children, looked up once
        self._candidates: tuple[_Provider, ...] = tuple(self._providers)
        self._selected: _Provider | None = None
        self._polls = 0
        self._opened: asyncio.Future[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        self._redactor = _UrlRedactingFilter({p.raw_url: p.redacted_url for p in self._providers})
        for name in _WEB3_LOGGERS:
            logging.getLogger(name).addFilter(self._redactor)
        for p in self._providers:
            self._publish_state(p)
        self._refresh()

    @classmethod
    def from_settings(cls, settings: Settings, telemetry: Telemetry | None = None) -> ProviderPool:
        return cls(settings.rpc_providers, PoolPolicy.from_settings(settings), telemetry or Telemetry())

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the sessions and poll every provider now, then every `poll_interval_seconds` (+-10%).

        A pool closed by `aclose` may be started again (the application's next lifespan, on another loop).
        """
        if self._closed:
            self._closed = False
            for name in _WEB3_LOGGERS:
                logging.getLogger(name).addFilter(self._redactor)
        await self._ensure_open()
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_forever(), name="rpc-pool-health")

    async def aclose(self) -> None:
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        for p in self._providers:
            # Closed here rather than by provider.disconnect(), which logs the full URL at INFO.
            if p.session is not None:
                await p.session.close()
                p.session = None
        self._opened = None
        for name in _WEB3_LOGGERS:
            logging.getLogger(name).removeFilter(self._redactor)

    async def __aenter__(self) -> ProviderPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _ensure_open(self) -> None:
        if self._closed:
            raise RuntimeError("the RPC provider pool is closed")
        if self._opened is None:
            self._opened = asyncio.ensure_future(self._open())
        await self._opened

    async def _open(self) -> None:
        for p in self._providers:
            # Keep-alive (web3's own session closes each connection after one call); no proxies from the
            # environment; web3 raises for HTTP errors itself.
            p.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30))
            await p.transport.cache_async_session(p.session)

    async def _poll_forever(self) -> None:
        interval = self.policy.poll_interval_seconds
        while True:
            try:
                await self.poll_once()
            except Exception:  # the poller must outlive any surprise; the next round tries again
                log.exception("RPC health poll failed")
            await asyncio.sleep(interval * random.uniform(1 - POLL_JITTER, 1 + POLL_JITTER))

    # --- reading the pool --------------------------------------------------------------------------------

    @property
    def selected(self) -> str | None:
        """The provider calls go to first: the most preferred healthy one, else the best-scored usable one."""
        return self._selected.name if self._selected is not None else None

    @property
    def names(self) -> list[str]:
        return [p.name for p in self._providers]

    def snapshot(self) -> list[ProviderHealth]:
        return [
            ProviderHealth(
                name=p.name,
                url=p.redacted_url,
                state=p.state,
                selected=p is self._selected,
                chain_id=p.chain_id,
                chain_verified=p.chain_verified,
                head=p.head,
                lag_blocks=p.lag,
                latency_ms=p.latency_ms,
                error_rate=p.error_rate,
                consecutive_failures=p.consecutive_failures,
                consecutive_successes=p.consecutive_successes,
                score=p.score,
                last_error=p.last_error,
            )
            for p in self._providers
        ]

    # --- calls -------------------------------------------------------------------------------------------

    async def request(self, method: str, params: Sequence[Any] | None = None, *, timeout: float | None = None) -> Any:
        """The `result` of one JSON-RPC call, from the first candidate that answers.

        `timeout` may shorten `rpc_timeout_seconds` for this call (per attempt). Raises RpcError: the node's
        answer when it is not retryable (reverted, invalid params, ...), `chain_id_mismatch` when every provider
        serves another chain, `no_provider` when every attempt failed.
        """
        if self._opened is None or not self._opened.done() or self._closed:
            await self._ensure_open()
        call_params = list(params) if params else []
        limit = self.policy.timeout_seconds if timeout is None else min(timeout, self.policy.timeout_seconds)
        order = self._candidates
        if not order:
            raise self._no_candidates(method)
        failures: list[RpcError] = []
        failed_on: _Provider | None = None
        attempts = 0
        position = 0
        while attempts < self.policy.max_attempts:
            p = order[position % len(order)]
            position += 1
            if p.state is ProviderState.wrong_chain:  # found out during this call: skipped, not an attempt
                if all(q.state is ProviderState.wrong_chain for q in order):
                    raise self._no_candidates(method)
                continue
            if position > len(order):  # fewer providers than attempts: wait a little before asking one again
                rounds = (position - 1) // len(order)
                await asyncio.sleep(min(RETRY_BACKOFF_SECONDS * 2 ** (rounds - 1), RETRY_BACKOFF_MAX_SECONDS))
            attempts += 1
            try:
                if not p.chain_verified and not await self._verify_chain(p, limit):
                    attempts -= 1  # another chain: excluded from now on
                    continue
                if failed_on is not None and failed_on is not p:
                    self._metrics.rpc_failovers.labels(failed_on.name, p.name).inc()
                return await self._call(p, method, call_params, limit, attempts)
            except RpcError as exc:
                if not exc.retryable:
                    raise
                failures.append(exc)
                failed_on = p
        raise self._exhausted(method, failures)

    async def probe(self, name: str, method: str, params: Sequence[Any] | None = None) -> Any:
        """One call to the named provider, whatever its state: no failover, no chain check (for the monitor).

        KeyError for an unknown name; RpcError (classified) when the call fails.
        """
        p = self._by_name[name]
        await self._ensure_open()
        return await self._call(p, method, list(params) if params else [], self.policy.timeout_seconds, 1)

    async def _call(self, p: _Provider, method: str, params: list[Any], timeout: float, attempt: int) -> Any:
        """One attempt on one provider: span, metrics, health bookkeeping, classified errors."""
        with self._telemetry.span(
            f"jsonrpc {method}",
            kind=SpanKind.CLIENT,
            attributes={**p.span_attributes, "rpc.method": method, "musdpay.rpc.attempt": attempt},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            started = time.perf_counter()
            error: RpcError | None = None
            try:
                async with asyncio.timeout(timeout):
                    response: Any = await p.transport.make_request(RPCEndpoint(method), params)
            except Exception as exc:
                error = classify_exception(exc, provider=p.name, method=method, timeout=timeout)
                if error is None:
                    raise
            else:
                if not isinstance(response, dict):
                    error = RpcError(
                        f"{method} on {p.name}: the answer is not a JSON-RPC response object",
                        kind=RpcErrorKind.invalid_response,
                        retryable=True,
                        provider=p.name,
                        method=method,
                    )
                elif "error" in response:
                    error = classify_rpc_error(response["error"], provider=p.name, method=method)
                elif "result" not in response:
                    error = RpcError(
                        f"{method} on {p.name}: a JSON-RPC response without result or error",
                        kind=RpcErrorKind.invalid_response,
                        retryable=True,
                        provider=p.name,
                        method=method,
                    )
            elapsed = time.perf_counter() - started
            if error is None:
                self._observe(p, method, "success", elapsed)
                p.window.append(False)
                p.consecutive_failures = 0
                return response["result"]
            span.set_status(Status(StatusCode.ERROR, error.kind.value))
            span.set_attribute("error.type", error.kind.value)
            if error.code is not None:
                span.set_attribute("rpc.jsonrpc.error_code", error.code)
            if error.rpc_message is not None:
                span.set_attribute("rpc.jsonrpc.error_message", error.rpc_message[:500])
            self._metrics.rpc_errors.labels(p.name, error.kind.value).inc()
            if error.retryable:
                self._observe(p, method, "failure", elapsed)
                self._record_failure(p, error.kind)
            else:  # the node answered; it is the request that is wrong
                self._observe(p, method, "rpc_error", elapsed)
                p.window.append(False)
                p.consecutive_failures = 0
            raise error from None  # aiohttp's exception names the raw URL: not chained

    def _observe(self, p: _Provider, method: str, outcome: str, seconds: float) -> None:
        label = rpc_method_label(method)
        key = (p.index, label, outcome)
        child = self._durations.get(key)
        if child is None:
            child = self._durations[key] = self._metrics.rpc_request_duration.labels(p.name, label, outcome)
        child.observe(seconds)

    def _no_candidates(self, method: str) -> RpcError:
        answers = ", ".join(f"{p.name} answered {p.chain_id}" for p in self._providers)
        self._metrics.rpc_errors.labels(NO_PROVIDER, RpcErrorKind.chain_id_mismatch.value).inc()
        return RpcError(
            f"{method}: no RPC provider serves chain {self.policy.chain_id} ({answers})",
            kind=RpcErrorKind.chain_id_mismatch,
            retryable=False,
            method=method,
        )

    def _exhausted(self, method: str, failures: list[RpcError]) -> RpcError:
        self._metrics.rpc_errors.labels(NO_PROVIDER, RpcErrorKind.no_provider.value).inc()
        tried = "; ".join(f"{f.provider}: {f.kind.value}" for f in failures)
        error = RpcError(
            f"no RPC provider answered {method} after {len(failures)} attempt(s) ({tried})",
            kind=RpcErrorKind.no_provider,
            retryable=True,
            provider=failures[-1].provider,
            method=method,
            attempts=[(f.provider or "?", f.kind) for f in failures],
        )
        error.__cause__ = failures[-1]
        return error

    # --- health ------------------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """One health round over every provider at once: eth_chainId when due, then eth_blockNumber."""
        await self._ensure_open()
        recheck = self._polls % CHAIN_RECHECK_EVERY == 0
        self._polls += 1
        with self._telemetry.span("rpc.pool.poll", attributes={"rpc.system": "jsonrpc"}):
            heads = await asyncio.gather(*(self._poll_provider(p, recheck) for p in self._providers))
        fresh = [head for head in heads if head is not None]
        best = max(fresh, default=None)
        for p, head in zip(self._providers, heads, strict=True):
            if best is not None and p.head is not None:
                p.lag = max(best - p.head, 0)
                self._metrics.rpc_provider_head_lag.labels(p.name).set(p.lag)
            if head is None:
                continue
            assert p.lag is not None
            if p.lag > self.policy.out_of_sync_blocks:
                p.consecutive_successes = 0
                self._set_state(p, ProviderState.out_of_sync, f"{p.lag} blocks behind the best provider")
                continue
            p.consecutive_successes += 1
            if p.state is ProviderState.unknown or (
                p.state is not ProviderState.healthy and p.consecutive_successes >= self.policy.recover_after
            ):
                self._set_state(p, ProviderState.healthy, f"{p.consecutive_successes} good poll(s)")
        self._refresh()

    async def _poll_provider(self, p: _Provider, recheck: bool) -> int | None:
        """The provider's head, or None when it failed or serves another chain (recorded either way)."""
        try:
            if (
                recheck or not p.chain_verified or p.state is ProviderState.wrong_chain
            ) and not await self._check_chain(p, self.policy.timeout_seconds):
                return None
            started = time.perf_counter()
            result = await self._call(p, "eth_blockNumber", [], self.policy.timeout_seconds, 1)
            elapsed_ms = (time.perf_counter() - started) * 1000
            head = self._quantity(p, "eth_blockNumber", result)
        except RpcError as exc:
            if not exc.retryable:  # a node that cannot tell its head is not serving
                self._record_failure(p, exc.kind)
            return None
        p.latency_ms = (
            elapsed_ms if p.latency_ms is None else p.latency_ms + LATENCY_ALPHA * (elapsed_ms - p.latency_ms)
        )
        p.head = head
        return head

    async def _verify_chain(self, p: _Provider, timeout: float) -> bool:
        """Before a provider's first use: its chain id, asked once however many calls are waiting."""
        async with p.verify_lock:
            if p.chain_verified:
                return True
            if p.state is ProviderState.wrong_chain:
                return False
            return await self._check_chain(p, timeout)

    async def _check_chain(self, p: _Provider, timeout: float) -> bool:
        """Whether the provider serves our chain; a failure to tell is a (retryable, recorded) RpcError."""
        try:
            chain_id = self._quantity(p, "eth_chainId", await self._call(p, "eth_chainId", [], timeout, 1))
        except RpcError as exc:
            if exc.retryable:
                raise  # already recorded
            self._record_failure(p, exc.kind)  # an error answer to eth_chainId is the provider's fault
            raise RpcError(
                str(exc), kind=exc.kind, retryable=True, provider=p.name, method=exc.method, code=exc.code
            ) from None
        p.chain_id = chain_id
        if chain_id == self.policy.chain_id:
            p.chain_verified = True
            return True
        p.chain_verified = False
        p.consecutive_successes = 0
        self._metrics.rpc_errors.labels(p.name, RpcErrorKind.chain_id_mismatch.value).inc()
        self._set_state(p, ProviderState.wrong_chain, f"chain id {chain_id}, expected {self.policy.chain_id}")
        self._refresh()
        return False

    def _quantity(self, p: _Provider, method: str, result: Any) -> int:
        """A hex quantity result as an int; anything else is the provider's (recorded) fault."""
        try:
            return int(result, 16)
        except (TypeError, ValueError):
            self._record_failure(p, RpcErrorKind.invalid_response)
            raise RpcError(
                f"{method} on {p.name}: not a hex quantity",
                kind=RpcErrorKind.invalid_response,
                retryable=True,
                provider=p.name,
                method=method,
            ) from None

    def _record_failure(self, p: _Provider, kind: RpcErrorKind) -> None:
        p.window.append(True)
        p.last_error = kind.value
        p.consecutive_failures += 1
        p.consecutive_successes = 0
        if p.consecutive_failures >= self.policy.unreachable_after and p.state in (
            ProviderState.unknown,
            ProviderState.healthy,
            ProviderState.out_of_sync,
        ):
            self._set_state(p, ProviderState.unreachable, f"{p.consecutive_failures} consecutive failures ({kind})")
            self._refresh()

    def _set_state(self, p: _Provider, state: ProviderState, reason: str) -> None:
        if p.state is state:
            return
        level = logging.INFO if state is ProviderState.healthy else logging.WARNING
        log.log(
            level,
            "RPC provider %s (%s) is now %s (was %s): %s",
            p.name,
            p.redacted_url,
            state.value,
            p.state.value,
            reason,
            extra={"rpc_provider": p.name, "rpc_provider_state": state.value},
        )
        p.state = state
        self._publish_state(p)

    def _publish_state(self, p: _Provider) -> None:
        gauge = self._metrics.rpc_provider_state
        for state in ProviderState:
            gauge.labels(p.name, state.value).set(1 if state is p.state else 0)

    def _refresh(self) -> None:
        """Recompute the call order after a state change: healthy in settings order, then the unpolled, then
        the rest by score (wrong_chain never)."""
        healthy = [p for p in self._providers if p.state is ProviderState.healthy]
        unknown = [p for p in self._providers if p.state is ProviderState.unknown]
        degraded = sorted(
            (p for p in self._providers if p.state in (ProviderState.unreachable, ProviderState.out_of_sync)),
            key=lambda p: (-p.score, p.index),
        )
        self._candidates = (*healthy, *unknown, *degraded)
        selected = self._candidates[0] if self._candidates else None
        if selected is not self._selected:
            log.log(
                logging.WARNING if self._selected is not None else logging.INFO,
                "RPC provider selected: %s (was %s)",
                selected.name if selected else "none",
                self._selected.name if self._selected else "none",
            )
            self._selected = selected
            for p in self._providers:
                self._metrics.rpc_provider_selected.labels(p.name).set(1 if p is selected else 0)


# Loggers through which web3 logs endpoint URIs (at DEBUG): the pool replaces its raw URLs there.
_WEB3_LOGGERS = ("web3.providers.AsyncHTTPProvider", "web3._utils.http_session_manager.HTTPSessionManager")


class _UrlRedactingFilter(logging.Filter):
    def __init__(self, replacements: dict[str, str]) -> None:
        super().__init__()
        self._replacements = replacements

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(raw in message for raw in self._replacements):
            for raw, redacted in self._replacements.items():
                message = message.replace(raw, redacted)
            record.msg, record.args = message, None
        return True
