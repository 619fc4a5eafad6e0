"""The ledger check: every purchase fulfilled in a window compared across Stripe, our database and the chain, and
every MUSD transfer out of the treasury matched to one purchase; what disagrees is kept in `ledger_discrepancies`.

    report = await check_ledgers(context, since=now - timedelta(days=1), until=now)

A disagreement found again updates its row (last seen); one no longer found is resolved ("no longer found"); one
an operator explained (`acknowledge`) is not reopened. Each check then sets the gauges
`musdpay_ledger_discrepancies{kind}` and `musdpay_ledger_discrepancy_amount{kind,currency}` from the open rows,
so every instance that runs a check shows the same truth.

Stripe is read through a synchronous callable (the SDK, in a worker thread), the chain through the async client,
the database through `run_db` (inline for SQLite, a thread for PostgreSQL).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from eth_account import Account
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, sessionmaker

from payment.core.config import Settings
from payment.core.metrics import LabelSets, PaymentMetrics
from payment.delivery.chain import from_units
from payment.delivery.models import Delivery, DeliveryTransaction
from payment.delivery.verify import TRANSFER_TOPIC, transfer_logs
from payment.ledgers.findings import Finding, Kind, Purchase, Transfer, compare_purchase, explain_outflows
from payment.ledgers.models import LedgerDiscrepancy
from payment.onramp.models import OnrampSession, SessionStatusChange

__all__ = [
    "SESSION_KINDS",
    "ChainReader",
    "LedgerContext",
    "LedgerReport",
    "acknowledge",
    "build_context",
    "check_ledgers",
    "check_window",
    "metric_labels",
    "open_discrepancies",
    "refresh_gauges",
    "render_report",
    "treasury_addresses",
]

OUTFLOW_KINDS = frozenset({Kind.unexplained_outflow})
SESSION_KINDS = frozenset(Kind) - OUTFLOW_KINDS
NO_LONGER_FOUND = "no longer found"


class ChainReader(Protocol):
    async def block_number(self) -> int: ...

    async def get_transaction_receipt(self, tx_hash: str) -> Mapping[str, Any] | None: ...

    async def get_logs(
        self, *, address: str, topics: list[str | None], from_block: int, to_block: int
    ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class LedgerContext:
    factory: sessionmaker[Session]
    run_db: Callable[..., Awaitable[Any]]
    fetch_stripe_session: Callable[[str], Mapping[str, Any]]  # Stripe's session object by its cos_ id
    chain: ChainReader
    musd_address: str
    treasury_addresses: Sequence[str]  # whose MUSD outflows must each belong to one purchase
    metrics: PaymentMetrics
    clock: Callable[[], datetime]
    outflow_blocks: int = 50_000  # how many recent blocks of treasury outflows a check reads
    log_chunk_blocks: int = 5_000  # blocks per eth_getLogs (providers cap the range)
    max_sessions: int = 1_000  # purchases compared per check (the oldest first)
    currencies: Sequence[str] = ("musd",)  # the amount gauge is 0 for each kind in each (MUSD and source currencies)


@dataclass(frozen=True)
class LedgerReport:
    since: datetime
    until: datetime
    sessions_checked: int
    agreeing: int
    findings: list[Finding]
    outflows_checked: int
    blocks: tuple[int, int] | None
    opened: int
    resolved: int
    truncated: bool = False

    @property
    def by_kind(self) -> dict[str, int]:
        """How many of the reported findings are of each kind."""
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.kind.value] = counts.get(finding.kind.value, 0) + 1
        return counts


CHECK_OUTCOMES = ("success", "failed")


def metric_labels() -> LabelSets:
    return {"ledger_checks": [(outcome,) for outcome in CHECK_OUTCOMES]}


def treasury_addresses(settings: Settings) -> list[str]:
    """The configured accounts, and in treasury mode the treasury key's address (the service's sender). In onramp
    mode the service sends nothing: the MUSD comes from Stripe's wallet (the local stack's emulator pays from the
    treasury account of the local chain, which would otherwise look like an outflow nobody explains)."""
    addresses = list(settings.ledger_treasury_addresses)
    if settings.treasury_key is not None and settings.delivery_mode == "treasury":
        addresses.append(Account.from_key(settings.treasury_key.get_secret_value()).address)
    return sorted({address.lower() for address in addresses})


def build_context(
    settings: Settings,
    *,
    factory: sessionmaker[Session],
    run_db: Callable[..., Awaitable[Any]],
    fetch_stripe_session: Callable[[str], Mapping[str, Any]],
    chain: ChainReader,
    metrics: PaymentMetrics,
    clock: Callable[[], datetime],
) -> LedgerContext:
    return LedgerContext(
        factory=factory,
        run_db=run_db,
        fetch_stripe_session=fetch_stripe_session,
        chain=chain,
        musd_address=settings.musd_address,
        treasury_addresses=treasury_addresses(settings),
        metrics=metrics,
        clock=clock,
        outflow_blocks=settings.ledger_outflow_blocks,
        log_chunk_blocks=settings.ledger_log_chunk_blocks,
        max_sessions=settings.ledger_max_sessions,
        currencies=sorted({"musd", *settings.source_currencies}),
    )


async def check_window(context: LedgerContext, settings: Settings) -> LedgerReport:
    """A check of the purchases fulfilled within the configured window, up to now."""
    now = context.clock()
    return await check_ledgers(context, since=now - timedelta(seconds=settings.ledger_window_seconds), until=now)


async def check_ledgers(context: LedgerContext, *, since: datetime, until: datetime) -> LedgerReport:
    purchases, truncated = await context.run_db(
        _load_purchases, factory=context.factory, since=since, until=until, limit=context.max_sessions
    )
    findings: list[Finding] = []
    agreeing = 0
    for purchase in purchases:
        stripe_session = await asyncio.to_thread(context.fetch_stripe_session, purchase.stripe_session_id)
        transfers = await _transfers_of(context, purchase.delivering_tx)
        found = compare_purchase(purchase, stripe_session, transfers)
        agreeing += not found
        findings.extend(found)
    outflows, blocks = await _treasury_outflows(context)
    sessions_by_tx = await context.run_db(_sessions_by_tx, factory=context.factory)
    outflow_findings = explain_outflows(outflows, sessions_by_tx)
    findings.extend(outflow_findings)
    checked_sessions = {purchase.session_id for purchase in purchases}
    double_send_scope = {sessions_by_tx[t.tx_hash.lower()] for t in outflows if t.tx_hash.lower() in sessions_by_tx}
    opened, resolved, explained_keys = await context.run_db(
        _record,
        factory=context.factory,
        findings=findings,
        session_scope=checked_sessions,
        outflow_scope={t.tx_hash.lower() for t in outflows},
        double_send_scope=double_send_scope,
        explained=set(sessions_by_tx),
        now=context.clock(),
    )
    await refresh_gauges(context)
    # What an operator explained is not a disagreement any more: not reported either.
    findings = [finding for finding in findings if (finding.kind.value, finding.subject) not in explained_keys]
    return LedgerReport(
        since=since,
        until=until,
        sessions_checked=len(purchases),
        agreeing=agreeing,
        findings=findings,
        outflows_checked=len(outflows),
        blocks=blocks,
        opened=opened,
        resolved=resolved,
        truncated=truncated,
    )


async def refresh_gauges(context: LedgerContext) -> None:
    """The gauges from the open rows: every kind present (0 when none is open)."""
    totals = await context.run_db(_open_totals, factory=context.factory)
    metrics = context.metrics
    counts: dict[str, int] = dict.fromkeys((kind.value for kind in Kind), 0)
    for (kind, _currency), (count, _amount) in totals.items():
        counts[kind] = counts.get(kind, 0) + count
    for kind, count in counts.items():
        metrics.ledger_discrepancies.labels(kind).set(count)
    amounts: dict[tuple[str, str], Decimal] = {
        (kind.value, currency): Decimal(0) for kind in Kind for currency in context.currencies
    }
    amounts.update({key: amount for key, (_count, amount) in totals.items()})
    metrics.ledger_discrepancy_amount.clear()
    for (kind, currency), amount in amounts.items():
        metrics.ledger_discrepancy_amount.labels(kind, currency).set(float(amount))
    metrics.ledger_last_check.set(context.clock().timestamp())


# --- the chain -----------------------------------------------------------------------------------------------


def _transfer(log: Mapping[str, Any], token: str) -> Transfer | None:
    parsed = transfer_logs([log])
    if not parsed or parsed[0].token != token:
        return None
    block = log.get("blockNumber")
    tx_hash = log.get("transactionHash")
    text = tx_hash.hex() if isinstance(tx_hash, (bytes, bytearray)) else str(tx_hash or "")
    return Transfer(
        tx_hash="0x" + text.removeprefix("0x").lower(),
        sender=parsed[0].sender,
        recipient=parsed[0].recipient,
        amount=from_units(parsed[0].units),
        block_number=block if isinstance(block, int) else None,
    )


async def _transfers_of(context: LedgerContext, tx_hash: str | None) -> list[Transfer] | None:
    if not tx_hash:
        return None
    receipt = await context.chain.get_transaction_receipt(tx_hash)
    if receipt is None:
        return None
    if int(receipt.get("status", 0) or 0) != 1:
        return []  # reverted: it moved nothing
    token = context.musd_address.lower()
    transfers = []
    for log in receipt.get("logs") or []:
        transfer = _transfer({**log, "transactionHash": log.get("transactionHash", tx_hash)}, token)
        if transfer is not None:
            transfers.append(transfer)
    return transfers


async def _treasury_outflows(context: LedgerContext) -> tuple[list[Transfer], tuple[int, int] | None]:
    if not context.treasury_addresses:
        return [], None
    head = await context.chain.block_number()
    first = max(head - context.outflow_blocks + 1, 0)
    token = context.musd_address.lower()
    topics_from = ["0x" + address.lower().removeprefix("0x").rjust(64, "0") for address in context.treasury_addresses]
    found: list[Transfer] = []
    for start in range(first, head + 1, context.log_chunk_blocks):
        end = min(start + context.log_chunk_blocks - 1, head)
        for topic in topics_from:
            logs = await context.chain.get_logs(
                address=context.musd_address, topics=[TRANSFER_TOPIC, topic, None], from_block=start, to_block=end
            )
            found.extend(transfer for log in logs if (transfer := _transfer(log, token)) is not None)
    return found, (first, head)


# --- the database --------------------------------------------------------------------------------------------


def _load_purchases(
    factory: sessionmaker[Session], since: datetime, until: datetime, limit: int
) -> tuple[list[Purchase], bool]:
    """Sessions that reached fulfillment_complete within [since, until], the oldest first, with their delivery."""
    reached = (
        select(SessionStatusChange.session_id, func.min(SessionStatusChange.occurred_at).label("at"))
        .where(SessionStatusChange.to_status == "fulfillment_complete")
        .group_by(SessionStatusChange.session_id)
        .subquery()
    )
    query = (
        select(OnrampSession, Delivery)
        .join(reached, reached.c.session_id == OnrampSession.id)
        .outerjoin(Delivery, Delivery.session_id == OnrampSession.id)
        .where(and_(reached.c.at >= since, reached.c.at <= until, OnrampSession.stripe_session_id.is_not(None)))
        .order_by(reached.c.at, OnrampSession.id)
        .limit(limit + 1)
    )
    with factory() as db:
        rows = db.execute(query).all()
    purchases = [
        Purchase(
            session_id=row.id,
            stripe_session_id=row.stripe_session_id or "",
            wallet_address=row.wallet_address,
            source_amount=row.source_amount,
            source_currency=row.source_currency,
            destination_amount=row.destination_amount,
            network_fee_amount=row.network_fee_amount,
            transaction_fee_amount=row.transaction_fee_amount,
            transaction_id=row.transaction_id,
            delivery_mode=delivery.mode if delivery is not None else None,
            delivery_tx_hash=delivery.tx_hash if delivery is not None else None,
        )
        for row, delivery in rows[:limit]
    ]
    return purchases, len(rows) > limit


def _sessions_by_tx(factory: sessionmaker[Session]) -> dict[str, str]:
    """Every transaction the treasury signed for a purchase, or a delivery recorded: to its session."""
    with factory() as db:
        signed = db.execute(select(DeliveryTransaction.tx_hash, DeliveryTransaction.session_id)).all()
        recorded = db.execute(
            select(Delivery.tx_hash, Delivery.session_id).where(
                Delivery.mode == "treasury", Delivery.tx_hash.is_not(None)
            )
        ).all()
    found = {tx.lower(): session for tx, session in signed}
    found.update((tx.lower(), session) for tx, session in recorded if tx)
    return found


def _record(
    *,
    factory: sessionmaker[Session],
    findings: Sequence[Finding],
    session_scope: set[str],
    outflow_scope: set[str],
    double_send_scope: set[str],
    explained: set[str],
    now: datetime,
) -> tuple[int, int, set[tuple[str, str]]]:
    """Open, refresh and resolve rows; returns (opened, resolved, the findings an operator had explained)."""
    opened = resolved = 0
    skipped: set[tuple[str, str]] = set()
    current = {(finding.kind.value, finding.subject) for finding in findings}
    with factory.begin() as db:
        rows = db.scalars(select(LedgerDiscrepancy).where(LedgerDiscrepancy.resolved_at.is_(None))).all()
        open_rows = {(row.kind, row.subject): row for row in rows}
        acknowledged = {
            (kind, subject)
            for kind, subject in db.execute(
                select(LedgerDiscrepancy.kind, LedgerDiscrepancy.subject).where(
                    LedgerDiscrepancy.resolution.is_not(None), LedgerDiscrepancy.resolution != NO_LONGER_FOUND
                )
            ).all()
        }
        for finding in findings:
            key = (finding.kind.value, finding.subject)
            row = open_rows.get(key)
            if row is not None:
                row.last_seen_at = now
                row.detail = finding.detail
                row.expected_amount, row.actual_amount = finding.expected, finding.actual
                continue
            if key in acknowledged:
                skipped.add(key)  # an operator explained it: not a discrepancy any more
                continue
            db.add(
                LedgerDiscrepancy(
                    kind=finding.kind.value,
                    session_id=finding.session_id,
                    tx_hash=finding.tx_hash,
                    subject=finding.subject,
                    currency=finding.currency,
                    expected_amount=finding.expected,
                    actual_amount=finding.actual,
                    detail=finding.detail,
                    first_seen_at=now,
                    last_seen_at=now,
                )
            )
            opened += 1
        for key, row in open_rows.items():
            if key in current:
                continue
            kind = Kind(row.kind)
            if kind is Kind.unexplained_outflow:
                in_scope = row.subject in outflow_scope or row.subject in explained
            elif kind is Kind.double_send:
                in_scope = row.subject in double_send_scope
            else:
                in_scope = row.session_id in session_scope
            if in_scope:
                row.resolved_at, row.resolution = now, NO_LONGER_FOUND
                resolved += 1
    return opened, resolved, skipped


def _open_totals(factory: sessionmaker[Session]) -> dict[tuple[str, str], tuple[int, Decimal]]:
    with factory() as db:
        rows = db.execute(
            select(LedgerDiscrepancy.kind, LedgerDiscrepancy.currency, LedgerDiscrepancy.expected_amount,
                   LedgerDiscrepancy.actual_amount).where(LedgerDiscrepancy.resolved_at.is_(None))
        ).all()  # fmt: skip
    totals: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for kind, currency, expected, actual in rows:
        # The amount at stake: what should have been (or moved) against what was.
        amount = abs((expected or Decimal(0)) - (actual or Decimal(0)))
        count, total = totals.get((kind, currency), (0, Decimal(0)))
        totals[(kind, currency)] = (count + 1, total + amount)
    return totals


def open_discrepancies(factory: sessionmaker[Session]) -> list[LedgerDiscrepancy]:
    with factory() as db:
        return list(
            db.scalars(
                select(LedgerDiscrepancy)
                .where(LedgerDiscrepancy.resolved_at.is_(None))
                .order_by(LedgerDiscrepancy.first_seen_at, LedgerDiscrepancy.id)
            ).all()
        )


def acknowledge(factory: sessionmaker[Session], discrepancy_id: int, *, note: str, now: datetime) -> bool:
    """An operator explains an open discrepancy (e.g. a treasury rebalancing): resolved, and not reopened."""
    with factory.begin() as db:
        row = db.get(LedgerDiscrepancy, discrepancy_id)
        if row is None or row.resolved_at is not None:
            return False
        row.resolved_at, row.resolution = now, note[:255] or "explained by an operator"
        return True


def render_report(report: LedgerReport, open_rows: Sequence[LedgerDiscrepancy]) -> str:
    """`musdpay reconcile --report`: the check's window and counts, each kind of disagreement, then every open
    discrepancy (plain text, for a terminal or a ticket)."""
    lines = [
        f"window          {report.since:%Y-%m-%d %H:%M:%S} to {report.until:%Y-%m-%d %H:%M:%S} UTC"
        + (" (more purchases than one check reads: the oldest were checked)" if report.truncated else ""),
        f"sessions        {report.sessions_checked} checked, {report.agreeing} agreeing",
        "treasury        "
        + (
            f"{report.outflows_checked} outflows in blocks {report.blocks[0]}-{report.blocks[1]}"
            if report.blocks
            else "no treasury address configured"
        ),
        f"this check      {report.opened} new, {report.resolved} resolved",
        "",
        f"{'kind':<28} {'found':>6}",
    ]
    lines += [f"{kind.value:<28} {report.by_kind.get(kind.value, 0):>6}" for kind in Kind]
    lines += ["", f"open discrepancies: {len(open_rows)}"]
    for row in open_rows:
        amounts = (
            ""
            if row.expected_amount is None and row.actual_amount is None
            else (f" (expected {row.expected_amount}, actual {row.actual_amount} {row.currency})")
        )
        lines.append(f"  #{row.id} {row.kind} since {row.first_seen_at:%Y-%m-%d %H:%M}: {row.detail}{amounts}")
    return "\n".join(lines)
