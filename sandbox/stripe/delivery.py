"""Background delivery of events to webhook endpoints.

API handlers only call `enqueue` (a deque append); one asyncio task, started and stopped with the app's
lifespan, turns the queue into signed POSTs through a shared `httpx.AsyncClient` (over the lean
transport of transport.py for http:// URLs):

- up to `delivery_concurrency` POSTs run at once, but deliveries for the same object to the same endpoint
  go one after another, so the steps of one session arrive in order (unless `shuffle` is on);
- a non-2xx answer, a timeout or a connection error is retried after
  `min(cap, base * 2**(attempt-1))` seconds scaled by a random factor in [0.5, 1], up to
  `delivery_max_attempts`; retries are timers, not sleeping tasks; once they are exhausted the event's
  delivery to that endpoint is reported failed (`on_failed`: List Events' `delivery_success=false`), and a 2xx
  reports it delivered (`on_delivered`);
- fault `duplicate_rate` sends a delivery a second time (a separate attempt chain, flagged `duplicate`);
- fault `shuffle` holds ready deliveries in a window (up to SHUFFLE_WINDOW, at most SHUFFLE_HOLD seconds),
  permutes it and sends it one by one, so the receiver sees them in exactly that permuted order.

Every attempt is written to a bounded log served at `GET /_sandbox/deliveries`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx

from sandbox.stripe.config import EmulatorConfig
from sandbox.stripe.faults import FaultInjector
from sandbox.stripe.transport import PlainHTTPTransport
from sandbox.stripe.webhooks import WebhookEndpoint, sign

__all__ = ["Attempt", "DeliveryWorker"]

SHUFFLE_WINDOW = 8
SHUFFLE_HOLD = 0.1
_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


@dataclass(frozen=True, slots=True)
class Attempt:
    event_id: str
    event_type: str
    object_id: str | None
    endpoint_id: str
    payload: bytes
    number: int = 1
    duplicate: bool = False


class DeliveryWorker:
    def __init__(
        self,
        config: EmulatorConfig,
        faults: FaultInjector,
        endpoint: Callable[[str], WebhookEndpoint | None],
        on_delivered: Callable[[str, str], None],
        on_failed: Callable[[str, str], None] = lambda _event, _endpoint: None,
    ) -> None:
        self._config = config
        self._faults = faults
        self._endpoint = endpoint
        self._on_delivered = on_delivered
        self._on_failed = on_failed
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=config.max_delivery_log)
        self._ready: collections.deque[Attempt] = collections.deque()
        self._wakeup = asyncio.Event()
        self._chains: dict[tuple[str, str | None], collections.deque[Attempt]] = {}
        self._slots = asyncio.Semaphore(config.delivery_concurrency)
        self._timers: set[asyncio.TimerHandle] = set()
        self._sending: set[asyncio.Task[None]] = set()
        self._in_window = 0  # shuffled deliveries taken from the queue and not yet sent
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def enqueue(self, attempt: Attempt) -> None:
        self._ready.append(attempt)
        self._wakeup.set()

    @property
    def pending(self) -> int:
        """Deliveries not finished: queued, waiting to retry, or on their way (each chain holds one in flight)."""
        chained = sum(1 + len(chain) for chain in self._chains.values())
        return len(self._ready) + len(self._timers) + chained + self._in_window

    async def start(self) -> None:
        limit = self._config.delivery_concurrency
        self._client = httpx.AsyncClient(
            # Deliveries go to the URLs given, never through a proxy from the environment.
            trust_env=False,
            timeout=self._config.delivery_timeout,
            mounts={
                "http://": PlainHTTPTransport(max_idle_per_host=limit),
                "https://": httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=limit)),
            },
            headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
        )
        self._task = asyncio.create_task(self._dispatch(), name="stripe-webhook-dispatch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def _dispatch(self) -> None:
        while True:
            if not self._ready:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._faults.faults.shuffle:
                await self._send_shuffled_window()
                continue
            attempt = self._ready.popleft()
            self._maybe_duplicate(attempt)
            key = (attempt.endpoint_id, attempt.object_id)
            chain = self._chains.get(key)
            if chain is not None:  # an earlier delivery of this object is in flight: queue behind it
                chain.append(attempt)
                continue
            self._chains[key] = collections.deque()
            await self._slots.acquire()
            self._spawn(attempt)

    def _spawn(self, attempt: Attempt) -> None:
        task = asyncio.create_task(self._run_chain(attempt))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _run_chain(self, attempt: Attempt) -> None:
        # Holds one slot and drains the chain of this (endpoint, object), one POST at a time.
        key = (attempt.endpoint_id, attempt.object_id)
        try:
            current: Attempt | None = attempt
            while current is not None:
                await self._send(current)
                chain = self._chains[key]
                current = chain.popleft() if chain else None
        finally:
            self._chains.pop(key, None)
            self._slots.release()

    async def _send_shuffled_window(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUFFLE_HOLD
        while len(self._ready) < SHUFFLE_WINDOW and (left := deadline - loop.time()) > 0:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                break
        window = [self._ready.popleft() for _ in range(min(SHUFFLE_WINDOW, len(self._ready)))]
        for attempt in window:
            self._maybe_duplicate(attempt)
        self._faults.delivery_random.shuffle(window)
        self._in_window = len(window)
        for attempt in window:
            await self._send(attempt)
            self._in_window -= 1

    def _maybe_duplicate(self, attempt: Attempt) -> None:
        if attempt.number == 1 and not attempt.duplicate and self._faults.duplicate_delivery():
            self._ready.append(replace(attempt, duplicate=True))

    async def _send(self, attempt: Attempt) -> None:
        endpoint = self._endpoint(attempt.endpoint_id)
        if endpoint is None:  # deleted since the event was created: Stripe drops it too
            return
        assert self._client is not None
        status: int | None = None
        error: str | None = None
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign(attempt.payload, endpoint.secret, int(time.time())),
        }
        try:
            response = await self._client.post(endpoint.url, content=attempt.payload, headers=headers)
            status = response.status_code
        except Exception as exc:  # any failure to get an answer is a failed attempt, retried like a 500
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        delivered = status is not None and 200 <= status < 300
        retry_in: float | None = None
        if not delivered and attempt.number < self._config.delivery_max_attempts:
            retry_in = self._backoff(attempt.number)
            self._schedule(replace(attempt, number=attempt.number + 1), retry_in)
        if delivered:
            self._on_delivered(attempt.event_id, attempt.endpoint_id)
        elif retry_in is None and not attempt.duplicate:  # the last attempt of the event's own chain
            self._on_failed(attempt.event_id, attempt.endpoint_id)
        self.log.append(
            {
                "event_id": attempt.event_id,
                "type": attempt.event_type,
                "object_id": attempt.object_id,
                "endpoint_id": attempt.endpoint_id,
                "url": endpoint.url,
                "attempt": attempt.number,
                "duplicate": attempt.duplicate,
                "status": status,
                "error": error,
                "delivered": delivered,
                "next_retry_in": retry_in,
                "at": time.time(),
            }
        )

    def _backoff(self, attempt_number: int) -> float:
        config = self._config
        delay = min(config.delivery_backoff_cap, config.delivery_backoff_base * 2.0 ** (attempt_number - 1))
        return delay * self._faults.delivery_random.uniform(0.5, 1.0)

    def _schedule(self, attempt: Attempt, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(timer)
            self.enqueue(attempt)

        timer = loop.call_later(delay, fire)
        self._timers.add(timer)
