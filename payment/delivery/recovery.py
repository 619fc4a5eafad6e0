"""After a database restore, the treasury never pays twice: deliveries are rebuilt from the chain before any send.

A restore (a logical backup, or point-in-time recovery) brings back a database from before some treasury sends:
their delivery rows are gone or back to `pending`, and the worker would pay those buyers again. The chain still
holds every transfer, and each names its session (payment.delivery.reference). So the worker first decides
whether the database may be behind the chain:

- a restore marker is unresolved (`record_restore`, which the restore tool calls on the restored database), or
- the treasury's nonce on chain (`latest` or `pending`) is ahead of the highest nonce the database knows it
  reserved (every send of ours reserves its nonce in the database before signing, so in normal running the
  chain is never ahead; when it is, transactions were sent that the database forgot, or the key was used
  elsewhere).

If so, it sends nothing from the treasury until `recover` has read the treasury's MUSD `Transfer` logs (from
the block of the last transfer the database knows, and at least `delivery_recovery_lookback_blocks` back, in
`ledger_log_chunk_blocks` chunks), read each transaction's input for its session reference, and rebuilt the
deliveries they prove (verified with the tx hash, block and amount; or `mismatch` when the transfer does not
pay the session what it should, for a person), and moved the stored next nonce up to the chain's. A transfer
the scan cannot tie to a delivery is a discrepancy (`musdpay_delivery_recovery_discrepancies_total{kind}`); the
ledger check's `unexplained_outflow` reports it too. Only then does it resume.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Engine, Table, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from payment.core.db import core_transaction, make_session_factory
from payment.core.metrics import PaymentMetrics
from payment.delivery.chain import ChainAccess, as_int, from_units
from payment.delivery.models import Delivery, DeliveryTransaction, RestoreMarker, TreasuryNonce
from payment.delivery.reference import decode_transfer
from payment.delivery.status import DeliveryStatus
from payment.delivery.store import FAR_FUTURE
from payment.delivery.verify import TRANSFER_TOPIC, transfer_logs
from payment.onramp.models import OnrampSession

__all__ = [
    "DISCREPANCY_KINDS",
    "Discrepancy",
    "Known",
    "Proof",
    "Recovery",
    "RecoveryOutcome",
    "known_treasury",
    "open_markers",
    "rebuild",
    "record_restore",
    "recover",
]

log = logging.getLogger(__name__)

# no_reference: a treasury transfer whose input names no session (and no stored hash explains it);
# unknown_session: it names a session this database does not hold; mismatch: it names a session it does not pay
# as it should (another wallet, a short amount); paid_twice: the session already has another transfer.
DISCREPANCY_KINDS = ("no_reference", "unknown_session", "mismatch", "paid_twice")

MARKERS = cast(Table, RestoreMarker.__table__)
DELIVERIES = cast(Table, Delivery.__table__)
ATTEMPTS = cast(Table, DeliveryTransaction.__table__)
NONCES = cast(Table, TreasuryNonce.__table__)
SESSIONS = cast(Table, OnrampSession.__table__)
_d = DELIVERIES.c
_SETTLED = (DeliveryStatus.verified.value, DeliveryStatus.mismatch.value)


# --- the restore marker ----------------------------------------------------------------------------------------


def record_restore(
    target: Engine | sessionmaker[Session],
    *,
    backup_id: str,
    note: str = "",
    restored_at: datetime | None = None,
) -> int:
    """Mark the database as restored (call it on the restored database, before any worker runs); the marker's id.

    Until the worker has rebuilt the deliveries the restore forgot, it sends nothing from the treasury.
    """
    factory = target if isinstance(target, sessionmaker) else make_session_factory(target)
    with core_transaction(factory) as conn:
        result = conn.execute(
            insert(MARKERS).values(
                restored_at=restored_at or datetime.now(UTC), backup_id=backup_id[:128], note=note, resolved_at=None
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def open_markers(factory: sessionmaker[Session]) -> list[int]:
    with factory() as db:
        return list(db.scalars(select(MARKERS.c.id).where(MARKERS.c.resolved_at.is_(None)).order_by(MARKERS.c.id)))


def resolve_markers(factory: sessionmaker[Session], *, ids: Sequence[int], now: datetime) -> None:
    if ids:
        with core_transaction(factory) as conn:
            conn.execute(update(MARKERS).where(MARKERS.c.id.in_(list(ids))).values(resolved_at=now))


# --- what the database knows --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Known:
    next_nonce: int | None  # the lowest nonce the database has not reserved (None: it never reserved one)
    last_block: int | None  # the block of the last treasury transfer it recorded


def known_treasury(factory: sessionmaker[Session], *, address: str) -> Known:
    with factory() as db:
        stored = db.scalar(select(NONCES.c.next_nonce).where(NONCES.c.address == address))
        reserved = db.scalar(select(func.max(_d.nonce)).where(_d.from_address == address))
        last_block = db.scalar(
            select(func.max(_d.block_number)).where(_d.mode == "treasury", _d.from_address == address)
        )
    candidates = [n for n in (stored, None if reserved is None else reserved + 1) if n is not None]
    return Known(max(candidates) if candidates else None, last_block)


# --- proofs read from the chain ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proof:
    """A treasury MUSD transfer on chain, with the session its input names (None: none)."""

    tx_hash: str
    block_number: int
    nonce: int
    session_id: str | None
    recipient: str  # lower case
    units: int
    confirmations: int


@dataclass(frozen=True)
class Discrepancy:
    kind: str
    tx_hash: str
    detail: str


@dataclass
class RecoveryOutcome:
    complete: bool
    reason: str = ""  # why it cannot finish yet (complete False)
    rebuilt: list[str] = field(default_factory=list)  # session ids
    discrepancies: list[Discrepancy] = field(default_factory=list)
    blocks: tuple[int, int] | None = None
    transfers: int = 0


@dataclass(frozen=True)
class _Context:
    chain: ChainAccess
    run_db: Callable[..., Awaitable[Any]]
    factory: sessionmaker[Session]
    address: str
    musd_address: str
    lookback_blocks: int
    chunk_blocks: int
    confirmations: int
    clock: Callable[[], datetime]


def _hash_text(value: Any) -> str:
    text = value.hex() if isinstance(value, (bytes, bytearray)) else str(value or "")
    return "0x" + text.removeprefix("0x").lower()


async def _scan(ctx: _Context) -> tuple[list[Proof], tuple[int, int], int] | str:
    """The treasury's transfers up to the head, with the chain's next nonce; or why the scan cannot end now."""
    chain = ctx.chain
    # Nonces first, then the head: every transaction below `latest` is mined in a block at or below that head.
    latest = await chain.get_transaction_count(ctx.address, "latest")
    pending = await chain.get_transaction_count(ctx.address, "pending")
    if pending > latest:
        # Sent before the restore and still in the node's pool: its logs are not there yet to be read.
        return f"waiting for {pending - latest} treasury transaction(s) in the node's pool to be mined"
    head = await chain.block_number()
    known: Known = await ctx.run_db(known_treasury, factory=ctx.factory, address=ctx.address)
    first = max(head - ctx.lookback_blocks + 1, 0)
    if known.last_block is not None:
        first = min(first, known.last_block)
    sender = "0x" + ctx.address.lower().removeprefix("0x").rjust(64, "0")
    token = ctx.musd_address.lower()
    by_tx: dict[str, list[Mapping[str, Any]]] = {}
    for start in range(first, head + 1, ctx.chunk_blocks):
        end = min(start + ctx.chunk_blocks - 1, head)
        logs = await chain.get_logs(
            address=ctx.musd_address, topics=[TRANSFER_TOPIC, sender, None], from_block=start, to_block=end
        )
        for entry in logs:
            by_tx.setdefault(_hash_text(entry.get("transactionHash")), []).append(entry)
    proofs = []
    for tx_hash, entries in by_tx.items():
        tx = await chain.get_transaction(tx_hash)
        if tx is None:  # a provider behind the one that served the logs: look again next round
            return f"transaction {tx_hash} of a treasury Transfer log is unknown to the provider"
        block = as_int(entries[0].get("blockNumber", tx.get("blockNumber")))
        depth = head - block + 1
        if depth < ctx.confirmations:
            return f"transfer {tx_hash} has {depth} of {ctx.confirmations} confirmations"
        call = decode_transfer(tx.get("input") or tx.get("data"))
        ours = [t for t in transfer_logs(entries) if t.token == token and t.sender == ctx.address.lower()]
        recipient = call.recipient if call is not None else (ours[0].recipient if ours else "")
        units = sum(t.units for t in ours if t.recipient == recipient)
        proofs.append(
            Proof(
                tx_hash=tx_hash,
                block_number=block,
                nonce=as_int(tx.get("nonce", 0)),
                session_id=call.session_id if call is not None else None,
                recipient=recipient,
                units=units,
                confirmations=depth,
            )
        )
    proofs.sort(key=lambda p: (p.block_number, p.nonce))
    return proofs, (first, head), latest


# --- rebuilding the rows ------------------------------------------------------------------------------------------


def _stored_hashes(conn: Connection) -> dict[str, str]:
    signed = conn.execute(select(ATTEMPTS.c.tx_hash, ATTEMPTS.c.session_id)).all()
    recorded = conn.execute(select(_d.tx_hash, _d.session_id).where(_d.tx_hash.is_not(None))).all()
    found = {str(tx).lower(): str(session) for tx, session in signed}
    found.update((str(tx).lower(), str(session)) for tx, session in recorded if tx)
    return found


def rebuild(
    factory: sessionmaker[Session],
    *,
    address: str,
    proofs: Sequence[Proof],
    chain_next_nonce: int,
    now: datetime,
) -> tuple[list[str], list[Discrepancy]]:
    """Write what `proofs` prove, in one transaction: the sessions rebuilt, and the discrepancies found.

    A delivery a transfer pays is settled (`verified`, or `mismatch` when it pays another wallet or too little):
    either way it is never sent again. The stored next nonce moves up to the chain's.
    """
    rebuilt: list[str] = []
    found: list[Discrepancy] = []
    with core_transaction(factory) as conn:
        stored = _stored_hashes(conn)
        for proof in proofs:
            session_id = proof.session_id or stored.get(proof.tx_hash)
            if session_id is None:
                found.append(_no_reference(conn, proof, now))
                continue
            outcome = _apply(conn, proof, session_id, address=address, now=now)
            if isinstance(outcome, Discrepancy):
                found.append(outcome)
            elif outcome:
                rebuilt.append(session_id)
                stored[proof.tx_hash] = session_id
        current = conn.execute(
            select(NONCES.c.next_nonce).where(NONCES.c.address == address).with_for_update()
        ).scalar_one_or_none()
        if current is None:
            conn.execute(insert(NONCES).values(address=address, next_nonce=chain_next_nonce, updated_at=now))
        elif current < chain_next_nonce:
            conn.execute(
                update(NONCES).where(NONCES.c.address == address).values(next_nonce=chain_next_nonce, updated_at=now)
            )
    return rebuilt, found


def _no_reference(conn: Connection, proof: Proof, now: datetime) -> Discrepancy:
    """A transfer that names no session. If an unsent delivery owes that wallet that amount, it may be the one
    this transfer paid (sent before transfers carried references): it is settled as `mismatch`, for a person,
    rather than paid a second time."""
    amount = from_units(proof.units)
    rows = conn.execute(
        select(_d.session_id, _d.wallet_address, _d.expected_amount, SESSIONS.c.destination_amount)
        .join(SESSIONS, SESSIONS.c.id == _d.session_id)
        .where(_d.mode == "treasury", _d.status.not_in(_SETTLED), _d.tx_hash.is_(None))
    ).all()
    for session_id, wallet, expected, destination in rows:
        owed = expected if expected is not None else destination
        if str(wallet).lower() == proof.recipient and owed is not None and Decimal(owed) == amount:
            reason = f"a treasury transfer without a session reference ({proof.tx_hash}) paid this wallet this amount"
            _settle(conn, session_id, proof, DeliveryStatus.mismatch, reason, now, delivered=amount)
            break
    return Discrepancy("no_reference", proof.tx_hash, f"{amount} MUSD to {proof.recipient} names no session")


def _apply(conn: Connection, proof: Proof, session_id: str, *, address: str, now: datetime) -> bool | Discrepancy:
    """Rebuild one session's delivery from its transfer: True if a row was written, False if it was already."""
    session = conn.execute(
        select(SESSIONS.c.id, SESSIONS.c.wallet_address, SESSIONS.c.destination_amount).where(
            SESSIONS.c.id == session_id
        )
    ).first()
    if session is None:
        return Discrepancy("unknown_session", proof.tx_hash, f"names session {session_id}, unknown to this database")
    row = conn.execute(select(DELIVERIES).where(_d.session_id == session_id).with_for_update()).mappings().first()
    amount = from_units(proof.units)
    if row is not None and row["tx_hash"] and str(row["tx_hash"]).lower() == proof.tx_hash:
        if row["status"] in _SETTLED:
            return False  # the database already knows this transfer settled the delivery
    elif row is not None and row["status"] in _SETTLED and row["tx_hash"]:
        return Discrepancy(
            "paid_twice", proof.tx_hash, f"session {session_id} was already settled by transfer {row['tx_hash']}"
        )
    if row is not None and row["mode"] != "treasury":
        return Discrepancy("mismatch", proof.tx_hash, f"session {session_id} is delivered by Stripe (onramp mode)")
    wallet = str(row["wallet_address"] if row is not None else session.wallet_address).lower()
    owed = row["expected_amount"] if row is not None and row["expected_amount"] is not None else None
    owed = owed if owed is not None else session.destination_amount
    if proof.recipient != wallet:
        status, reason, delivered = DeliveryStatus.mismatch, f"the MUSD went to {proof.recipient}", Decimal(0)
    elif owed is not None and amount < Decimal(owed):
        status, reason, delivered = DeliveryStatus.mismatch, f"short delivery: {amount} MUSD sent, {owed}", amount
    else:
        status, reason, delivered = DeliveryStatus.verified, "rebuilt from the chain after a restore", amount
    if row is None:
        # The restore lost the delivery (or the session's completion): the chain proves it was paid. The outbox
        # inserts nothing over this row when the completion comes again, so it is never paid twice.
        conn.execute(
            insert(DELIVERIES).values(
                session_id=session_id,
                mode="treasury",
                status=DeliveryStatus.pending.value,
                wallet_address=session.wallet_address,
                expected_amount=owed,
                confirmations=0,
                checks=0,
                next_check_at=FAR_FUTURE,
                deadline_at=now,
                created_at=now,
                updated_at=now,
            )
        )
    _settle(conn, session_id, proof, status, reason, now, delivered=delivered, address=address, owed=owed)
    if status is DeliveryStatus.mismatch:
        return Discrepancy("mismatch", proof.tx_hash, f"session {session_id}: {reason}")
    return True


def _settle(
    conn: Connection,
    session_id: str,
    proof: Proof,
    status: DeliveryStatus,
    reason: str,
    now: datetime,
    *,
    delivered: Decimal,
    address: str | None = None,
    owed: Decimal | None = None,
) -> None:
    values: dict[str, Any] = {
        "status": status.value,
        "reason": reason[:255],
        "tx_hash": proof.tx_hash,
        "block_number": proof.block_number,
        "confirmations": proof.confirmations,
        "delivered_amount": delivered,
        "next_check_at": FAR_FUTURE,
        "updated_at": now,
        "committed_at": func.coalesce(_d.committed_at, now),  # it counts to the day's cap like any send
    }
    if address is not None:
        values.update(nonce=proof.nonce, from_address=address)
    if owed is not None:
        values["expected_amount"] = func.coalesce(_d.expected_amount, owed)
    if status is DeliveryStatus.verified:
        values["verified_at"] = now
    conn.execute(update(DELIVERIES).where(_d.session_id == session_id).values(**values))


# --- one recovery -------------------------------------------------------------------------------------------------


async def recover(ctx: _Context) -> RecoveryOutcome:
    scanned = await _scan(ctx)
    if isinstance(scanned, str):
        return RecoveryOutcome(False, scanned)
    proofs, blocks, chain_next = scanned
    rebuilt, found = await ctx.run_db(
        rebuild, factory=ctx.factory, address=ctx.address, proofs=proofs, chain_next_nonce=chain_next, now=ctx.clock()
    )
    return RecoveryOutcome(True, rebuilt=rebuilt, discrepancies=found, blocks=blocks, transfers=len(proofs))


class Recovery:
    """The worker's gate on treasury sends: `ready()` is True once the database is known not to be behind the
    chain (recovering first when it may be)."""

    def __init__(
        self,
        *,
        chain: ChainAccess,
        run_db: Callable[..., Awaitable[Any]],
        factory: sessionmaker[Session],
        address: str,
        musd_address: str,
        lookback_blocks: int,
        chunk_blocks: int,
        confirmations: int,
        metrics: PaymentMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.ctx = _Context(
            chain, run_db, factory, address, musd_address, lookback_blocks, chunk_blocks, confirmations, clock
        )
        self.metrics = metrics
        self.suspected = False  # a send found the chain's nonce ahead of the database: check before the next
        self.active: str | None = None  # why a recovery is under way
        self.last: RecoveryOutcome | None = None

    async def _behind(self) -> str | None:
        """Why the database may be behind the chain, or None. Chain first, then the database: a send of ours
        between the two reads is then seen in both, never as the chain ahead."""
        ctx = self.ctx
        latest = await ctx.chain.get_transaction_count(ctx.address, "latest")
        pending = await ctx.chain.get_transaction_count(ctx.address, "pending")
        known: Known = await ctx.run_db(known_treasury, factory=ctx.factory, address=ctx.address)
        chain_next = max(latest, pending)
        if chain_next > (known.next_nonce or 0):
            return (
                f"the treasury's nonce on chain ({chain_next}) is ahead of the database's "
                f"({'none reserved' if known.next_nonce is None else known.next_nonce})"
            )
        return None

    async def ready(self, *, check_chain: bool) -> bool:
        """True when treasury sends may go out. `check_chain`: also compare nonces (before sending)."""
        ctx = self.ctx
        markers: list[int] = await ctx.run_db(open_markers, factory=ctx.factory)
        reason = f"restore marker {', '.join(map(str, markers))} unresolved" if markers else None
        if reason is None and (check_chain or self.suspected or self.active):
            reason = await self._behind()
        if reason is None:
            self._finish()
            return True
        if self.active is None:
            log.warning("delivery recovery started (%s): treasury sends wait until the chain is read back", reason)
            self.metrics.delivery_recovery_in_progress.set(1)
        self.active = reason
        outcome = self.last = await recover(ctx)
        if not outcome.complete:
            log.info("delivery recovery not finished: %s", outcome.reason)
            return False
        for item in outcome.discrepancies:
            self.metrics.delivery_recovery_discrepancies.labels(item.kind).inc()
            log.error("delivery recovery: %s transfer %s: %s", item.kind, item.tx_hash, item.detail)
        self.metrics.delivery_recovered.inc(len(outcome.rebuilt))
        await ctx.run_db(resolve_markers, factory=ctx.factory, ids=markers, now=ctx.clock())
        log.warning(
            "delivery recovery finished (%s): %d treasury transfers in blocks %s, %d deliveries rebuilt, "
            "%d discrepancies; treasury sends resume",
            reason,
            outcome.transfers,
            "-".join(map(str, outcome.blocks or ())),
            len(outcome.rebuilt),
            len(outcome.discrepancies),
        )
        self._finish()
        return True

    def _finish(self) -> None:
        if self.active is not None or self.suspected:
            self.active = None
            self.suspected = False
        self.metrics.delivery_recovery_in_progress.set(0)
