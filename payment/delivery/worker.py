"""The delivery worker: takes every due delivery one step further, in a loop, as the only holder of a lease.

Onramp mode: verify Stripe's transaction on chain, re-checking with backoff until the deadline. Treasury mode:
send from our key (payment.delivery.treasury). Runs inside the API process (`MUSDPAY_DELIVERY_WORKER_ENABLED`)
or alone (`musdpay deliver`); with several processes the lease in the database makes one of them act.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from payment.chain.errors import RpcError, RpcErrorKind
from payment.core.config import DeliveryMode, Settings, SettingsError
from payment.core.faults import crash_point
from payment.core.metrics import LabelSets
from payment.core.telemetry import Telemetry
from payment.delivery import store
from payment.delivery.chain import ChainAccess, to_units
from payment.delivery.recovery import DISCREPANCY_KINDS, Recovery
from payment.delivery.status import DeliveryStatus
from payment.delivery.store import FAR_FUTURE, DueDelivery
from payment.delivery.treasury import Hold, TreasuryContext, advance_treasury_delivery, treasury_account
from payment.delivery.verify import Verdict, check_transfer

__all__ = ["LEASE_NAME", "RECORDED_OUTCOMES", "DeliveryWorker", "metric_labels"]

log = logging.getLogger(__name__)

LEASE_NAME = "delivery-worker"
BATCH = 100
_WAITING = (DeliveryStatus.pending.value, DeliveryStatus.held.value, DeliveryStatus.not_found.value)
# The outcomes `_record` counts (`musdpay_delivery_total`): every status a delivery settles in, and `held`;
# `pending` is where it starts, never an outcome.
RECORDED_OUTCOMES = tuple(status for status in DeliveryStatus if status is not DeliveryStatus.pending)


def metric_labels(settings: Settings) -> LabelSets:
    """The delivery families' series of the configured mode, for `PaymentMetrics.initialise`."""
    mode = settings.delivery_mode.value
    return {
        "deliveries": [(mode, outcome.value) for outcome in RECORDED_OUTCOMES],
        "delivery_duration": [(mode,)],
        "delivery_recovery_discrepancies": [(kind,) for kind in DISCREPANCY_KINDS],
    }


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DeliveryWorker:
    def __init__(
        self,
        *,
        settings: Settings,
        factory: sessionmaker[Session],
        run_db: Callable[..., Awaitable[Any]],
        chain: ChainAccess,
        telemetry: Telemetry,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.run_db = run_db
        self.chain = chain
        self.telemetry = telemetry
        self.clock = clock
        self.lease = timedelta(seconds=settings.delivery_lease_seconds)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        if settings.delivery_mode is DeliveryMode.treasury and settings.treasury_key is None:
            # Checked here, where it matters, not in Settings: `musdpay db upgrade` and the key CLI need no key.
            raise SettingsError("delivery mode treasury needs MUSDPAY_TREASURY_KEY or MUSDPAY_TREASURY_KEY_FILE")
        self._wakeup: asyncio.Event | None = None  # made in run(): an Event belongs to the loop that first waits
        self._treasury = (
            TreasuryContext(settings, chain, run_db, factory, treasury_account(settings), clock)
            if settings.treasury_key is not None
            else None
        )
        # Treasury sends wait for this gate after a restore (payment.delivery.recovery): wherever we hold the key.
        self.recovery = (
            Recovery(
                chain=chain,
                run_db=run_db,
                factory=factory,
                address=self._treasury.account.address,
                musd_address=settings.musd_address,
                lookback_blocks=settings.delivery_recovery_lookback_blocks,
                chunk_blocks=settings.ledger_log_chunk_blocks,
                confirmations=settings.delivery_confirmations,
                metrics=telemetry.metrics,
                clock=clock,
            )
            if self._treasury is not None
            else None
        )

    def wake(self) -> None:
        """Look now rather than at the next poll (a webhook just made a delivery due)."""
        if self._wakeup is not None:
            self._wakeup.set()

    async def run(self) -> None:
        """Until cancelled: hold the lease, work through due deliveries, sleep until woken or the next poll."""
        wakeup = self._wakeup = asyncio.Event()
        try:
            while True:
                try:
                    if await self.run_db(
                        store.acquire_lease,
                        factory=self.factory,
                        name=LEASE_NAME,
                        holder=self.holder,
                        ttl=self.lease,
                        now=self.clock(),
                    ):
                        await self.run_once()
                except OperationalError as exc:
                    log.warning("delivery round skipped, database unavailable: %s", type(exc.orig).__name__)
                except Exception:  # the loop must outlive any one bad round
                    log.exception("delivery round failed")
                wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout=self.settings.delivery_poll_seconds)
        finally:
            try:
                await self.run_db(store.release_lease, factory=self.factory, name=LEASE_NAME, holder=self.holder)
            except Exception:  # shutting down: the lease expires by itself
                log.debug("could not release the delivery lease", exc_info=True)

    async def _due(self) -> list[DueDelivery]:
        due: list[DueDelivery] = await self.run_db(
            store.due_deliveries, factory=self.factory, now=self.clock(), limit=BATCH
        )
        return due

    async def _sends_allowed(self, due: list[DueDelivery]) -> bool:
        """Whether treasury deliveries may be sent this round (the restore gate; recovering first if needed)."""
        if self.recovery is None:
            return True
        treasury_due = any(d.mode == DeliveryMode.treasury.value for d in due)
        if self.settings.delivery_mode is DeliveryMode.onramp and not treasury_due and not self.recovery.suspected:
            # Onramp mode sends nothing (the local stack's Stripe emulator pays from this same account): a restore
            # matters to it only for treasury rows left from treasury mode, checked when one is due.
            return True
        try:
            return await self.recovery.ready(check_chain=treasury_due)
        except RpcError as exc:  # nothing is sent without the answer
            log.warning("delivery recovery check failed, treasury sends wait: %s", exc.kind)
            return False

    async def run_once(self) -> int:
        """One round over the due deliveries; returns how many were looked at."""
        due = await self._due()
        recoveries = self.recovery.last if self.recovery is not None else None
        allowed = await self._sends_allowed(due)
        if self.recovery is not None and self.recovery.last is not recoveries:
            due = await self._due()  # a recovery rebuilt rows: what is due has changed
        if not allowed:
            due = [d for d in due if d.mode != DeliveryMode.treasury.value]
        for delivery in due:
            if delivery.mode == DeliveryMode.treasury.value and self.recovery is not None and self.recovery.suspected:
                continue  # a send of this round found the chain ahead: the next round recovers first
            try:
                await self._advance(delivery)
            except store.ChainAhead as exc:
                assert self.recovery is not None
                self.recovery.suspected = True
                log.warning("delivery %s not sent: %s", delivery.session_id, exc)
                await self._save(delivery, Verdict(DeliveryStatus.pending, f"waiting for restore recovery: {exc}"))
            except RpcError as exc:
                # Nothing is decided: the delivery keeps its status, says why, and is looked at again.
                if exc.retryable or exc.kind in (RpcErrorKind.no_provider, RpcErrorKind.chain_id_mismatch):
                    reason = f"chain unavailable: {exc.kind}"
                else:  # the node answered, and refused: a bug or a misconfiguration a person must see
                    reason = f"the chain refused a request: {(exc.rpc_message or exc.kind)[:200]}"
                log.warning("delivery %s: %s", delivery.session_id, reason)
                await self._save(delivery, Verdict(DeliveryStatus(delivery.status), reason))
        return len(due)

    async def _advance(self, delivery: DueDelivery) -> None:
        if delivery.mode == DeliveryMode.treasury.value:
            if self._treasury is None:
                await self._save(delivery, Hold("treasury delivery is due but no treasury key is configured"))
                return
            await self._save(delivery, await advance_treasury_delivery(self._treasury, delivery))
            return
        await self._save(delivery, await self._verify_onramp(delivery))

    async def _verify_onramp(self, delivery: DueDelivery) -> Verdict:
        if not delivery.transaction_id:
            return Verdict(DeliveryStatus.pending, "Stripe has not reported the transaction id yet")
        if delivery.destination_amount is None:
            return Verdict(DeliveryStatus.pending, "Stripe has not reported the delivered amount yet")
        return await check_transfer(
            self.chain,
            tx_hash=delivery.transaction_id,
            wallet=delivery.wallet_address,
            token=self.settings.musd_address,
            expected_units=to_units(delivery.destination_amount),
            confirmations=self.settings.delivery_confirmations,
        )

    def _backoff(self, delivery: DueDelivery, now: datetime) -> datetime:
        settings = self.settings
        delay = min(
            settings.delivery_retry_initial_seconds * 2 ** min(delivery.checks, 30), settings.delivery_retry_max_seconds
        )
        return now + timedelta(seconds=delay)

    async def _save(self, delivery: DueDelivery, outcome: Verdict | Hold) -> None:
        now = self.clock()
        mode = delivery.mode
        columns: dict[str, Any] = {}
        reason: str | None
        if isinstance(outcome, Hold):
            status, reason, next_check = DeliveryStatus.held, outcome.reason, self._backoff(delivery, now)
        else:
            status, reason = outcome.status, outcome.reason
            columns = {
                "block_number": outcome.block_number,
                "confirmations": outcome.confirmations,
                "delivered_amount": outcome.delivered_amount,
            }
            tx_hash = outcome.tx_hash or (delivery.transaction_id if mode == DeliveryMode.onramp.value else None)
            if tx_hash:
                columns["tx_hash"] = tx_hash
            if outcome.final:
                next_check = FAR_FUTURE
                if status is DeliveryStatus.verified:
                    columns["verified_at"] = now
            elif mode == DeliveryMode.treasury.value or outcome.block_number is not None:
                # A transfer of ours in flight (never given up on), or a mined one waiting for confirmations.
                next_check = now + timedelta(seconds=self.settings.delivery_poll_seconds)
            elif now >= delivery.deadline_at:
                status = DeliveryStatus.not_found if status is DeliveryStatus.not_found else DeliveryStatus.failed
                reason = f"deadline passed: {reason}"
                next_check = FAR_FUTURE
            else:
                next_check = self._backoff(delivery, now)
        crash_point(self.settings, "delivery_before_save")
        saved = await self.run_db(
            store.save_check,
            factory=self.factory,
            session_id=delivery.session_id,
            status=status,
            reason=reason,
            next_check_at=next_check,
            now=now,
            expected_from=_WAITING,
            **columns,
        )
        settled = next_check == FAR_FUTURE
        newly_held = status is DeliveryStatus.held and delivery.status != DeliveryStatus.held.value
        if saved and (settled or newly_held):
            self._record(delivery, status, now)
            if status is DeliveryStatus.verified:  # on-chain slippage (docs/metrics.md)
                metrics = self.telemetry.metrics
                metrics.observe_delivery_slippage(delivery.destination_amount, columns.get("delivered_amount"))

    def _record(self, delivery: DueDelivery, status: DeliveryStatus, now: datetime) -> None:
        metrics = self.telemetry.metrics
        metrics.deliveries.labels(delivery.mode, status.value).inc()
        if status is DeliveryStatus.verified:
            metrics.delivery_duration.labels(delivery.mode).observe(max((now - delivery.created_at).total_seconds(), 0))
        log.log(
            logging.INFO if status is DeliveryStatus.verified else logging.WARNING,
            "delivery of session %s: %s",
            delivery.session_id,
            status.value,
        )
