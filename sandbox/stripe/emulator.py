"""The emulator's state and the operations on it, independent of HTTP.

`Emulator` owns every collection, the fault injector and the delivery worker. The /v1 handlers (api.py) and
the control handlers (control.py) are thin: they parse, call a method here, and render.

Moving a session (`advance`) goes one status at a time; each step updates the object, stores a
`crypto.onramp_session_updated` event with a snapshot of the session and queues one delivery per enabled
endpoint. All of it runs on the event loop; only the fulfiller runs in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from sandbox.stripe.config import DEFAULT_API_VERSION, EmulatorConfig
from sandbox.stripe.delivery import Attempt, DeliveryWorker
from sandbox.stripe.errors import StripeError, resource_missing
from sandbox.stripe.faults import FaultInjector
from sandbox.stripe.forms import Params
from sandbox.stripe.fulfillment import Fulfiller, RandomTxFulfiller
from sandbox.stripe.idempotency import IdempotencyStore
from sandbox.stripe.ids import new_webhook_secret
from sandbox.stripe.sessions import (
    FULFILLMENT_COMPLETE,
    FULFILLMENT_PROCESSING,
    STATUSES,
    SessionFactory,
    SessionRecord,
    TransitionError,
    fill_fulfillment,
    transition_path,
)
from sandbox.stripe.store import Collection
from sandbox.stripe.webhooks import SESSION_UPDATED, WebhookEndpoint, build_event, create_endpoint

__all__ = ["Emulator", "FulfillmentError", "StoredEvent"]

logger = logging.getLogger(__name__)


class FulfillmentError(RuntimeError):
    pass


@dataclass(slots=True)
class StoredEvent:
    """An event kept as the bytes that were sent: serialising once is the snapshot, with no deep copy."""

    id: str
    type: str
    created: int
    payload: bytes
    pending: set[str]  # endpoint ids not yet delivered to
    failed: set[str] = field(default_factory=set)  # endpoint ids whose retries ran out without a 2xx

    @property
    def obj(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.payload)
        # Stripe counts every endpoint not yet answered with a 2xx, those it gave up on included.
        event["pending_webhooks"] = len(self.pending) + len(self.failed)
        return event


class Emulator:
    def __init__(self, config: EmulatorConfig, *, fulfiller: Fulfiller | None = None) -> None:
        if config.auto_advance is not None and config.auto_advance not in STATUSES[1:]:
            raise ValueError(f"auto_advance must be one of {', '.join(STATUSES[1:])}, not {config.auto_advance!r}")
        self.config = config
        self.fulfiller: Fulfiller = fulfiller or RandomTxFulfiller()
        self.faults = FaultInjector()
        self.sessions: Collection[SessionRecord] = Collection(config.max_objects)
        self.events: Collection[StoredEvent] = Collection(config.max_objects)
        self.endpoints: Collection[WebhookEndpoint] = Collection()
        self.refunds: Collection[dict[str, Any]] = Collection(config.max_objects)
        self.disputes: Collection[dict[str, Any]] = Collection(config.max_objects)
        self.idempotency = IdempotencyStore(config.max_idempotency_keys)
        self.delivery = DeliveryWorker(config, self.faults, self.endpoints.get, self._delivered, self._failed)
        self._factory = SessionFactory(config)
        self._drivers: set[asyncio.Task[None]] = set()
        # One secret for the endpoints given at start, so the client can be configured with one value.
        self.webhook_secret = config.webhook_secret
        if config.webhook_urls and self.webhook_secret is None:
            self.webhook_secret = new_webhook_secret()
        for url in config.webhook_urls:
            try:
                endpoint = create_endpoint(Params({"url": url, "enabled_events": ["*"]}), secret=self.webhook_secret)
            except StripeError as exc:
                raise ValueError(f"webhook url {url!r}: {exc.message}") from None
            self.endpoints.add(endpoint.id, endpoint)

    async def start(self) -> None:
        await self.delivery.start()

    async def stop(self) -> None:
        for task in list(self._drivers):
            task.cancel()
        await asyncio.gather(*self._drivers, return_exceptions=True)
        await self.delivery.stop()

    # sessions

    def create_session(self, params: Params) -> SessionRecord:
        if (refusal := self.faults.onramp_refusal()) is not None:
            raise refusal
        record = self._factory.create(params)
        self.sessions.add(record.id, record)
        if self.config.auto_advance is not None:
            task = asyncio.get_running_loop().create_task(self._auto_advance(record.id, self.config.auto_advance))
            self._drivers.add(task)
            task.add_done_callback(self._drivers.discard)
        return record

    def session(self, session_id: str) -> SessionRecord:
        record = self.sessions.get(session_id)
        if record is None:
            raise resource_missing("crypto onramp session", session_id)
        return record

    async def advance(self, session_id: str, target: str) -> SessionRecord:
        """Move a session forward to `target`, one event per step. Raises TransitionError, FulfillmentError."""
        record = self.session(session_id)
        if record.lock is None:
            record.lock = asyncio.Lock()
        async with record.lock:
            for status in transition_path(record.status, target):
                await self._enter(record, status)
        return record

    async def _enter(self, record: SessionRecord, status: str) -> None:
        details = record.obj["transaction_details"]
        if status == FULFILLMENT_PROCESSING:
            fill_fulfillment(record, self.config)
        elif status == FULFILLMENT_COMPLETE:
            if record.transaction_id is None:
                snapshot = json.loads(json.dumps(record.obj))  # the fulfiller cannot alter the session
                try:
                    tx = await asyncio.to_thread(self.fulfiller.fulfill, snapshot)
                except Exception as exc:
                    raise FulfillmentError(f"fulfiller failed: {type(exc).__name__}: {exc}") from exc
                if not isinstance(tx, str) or not tx:
                    raise FulfillmentError(f"fulfiller returned {tx!r} instead of a transaction hash")
                record.transaction_id = tx
            details["transaction_id"] = record.transaction_id
        previous = record.obj["status"]
        record.obj["status"] = status
        self._emit(SESSION_UPDATED, record.obj, {"status": previous})

    async def _auto_advance(self, session_id: str, target: str) -> None:
        while True:
            await asyncio.sleep(self.config.auto_advance_delay)
            record = self.sessions.get(session_id)
            if record is None:
                return
            try:
                path = transition_path(record.status, target)
                await self.advance(session_id, path[0])
            except (TransitionError, StripeError):
                return  # already there, moved past it by the control API, or forgotten (max_objects)
            except FulfillmentError as exc:
                logger.warning("auto-advance of %s stopped: %s", session_id, exc)
                return
            if len(path) == 1:
                return

    # events

    def _emit(self, event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None) -> None:
        endpoints = [e for e in self.endpoints.newest_first() if e.wants(event_type)]
        event = build_event(
            event_type,
            obj,
            previous_attributes=previous,
            api_version=DEFAULT_API_VERSION,
            pending_webhooks=len(endpoints),
            created=int(self.config.clock()),
        )
        payload = json.dumps(event, separators=(",", ":")).encode()
        stored = StoredEvent(event["id"], event_type, event["created"], payload, {e.id for e in endpoints})
        self.expire_events()
        self.events.add(stored.id, stored)
        for endpoint in endpoints:
            self.delivery.enqueue(Attempt(event["id"], event_type, obj.get("id"), endpoint.id, payload))

    def _delivered(self, event_id: str, endpoint_id: str) -> None:
        stored = self.events.get(event_id)
        if stored is not None:
            stored.pending.discard(endpoint_id)
            stored.failed.discard(endpoint_id)

    def _failed(self, event_id: str, endpoint_id: str) -> None:
        stored = self.events.get(event_id)
        if stored is not None and endpoint_id in stored.pending:
            stored.pending.discard(endpoint_id)
            stored.failed.add(endpoint_id)

    def expire_events(self) -> None:
        """Forget events older than the retention (30 days at Stripe), by the emulator's clock."""
        cutoff = self.config.clock() - self.config.event_retention_seconds
        self.events.evict_oldest_while(lambda event: event.created < cutoff)
