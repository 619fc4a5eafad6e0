"""Onramp sessions: create through Stripe, read, list, and apply Stripe's snapshots. Pure of HTTP.

Creating a session spans two systems, so it is done in three steps that survive a crash at any line:

1. a row in status ``creating`` is committed, holding a lease (``creation_started_at``) and the request;
2. Stripe is asked to create the session with the idempotency key ``musdpay-<row id>``;
3. the row takes Stripe's id, client secret and status.

If Stripe refuses or cannot be reached, the row is deleted: no session looks alive that Stripe does not know.
If the process dies between 2 and 3, the lease expires and the next request with the same Idempotency-Key, or
the recovery sweep, repeats step 2 with the same key: Stripe answers with the session it already created.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from payment.core.config import Settings
from payment.core.faults import crash_point
from payment.core.metrics import LabelSets
from payment.core.problems import Conflict, FieldError, NotFound, Problem, UpstreamProblem, ValidationProblem
from payment.core.statements import DirectConnection, direct_transaction
from payment.core.telemetry import Telemetry, current_traceparent
from payment.delivery.outbox import DUE_STATUS, enqueue_delivery
from payment.onramp import store
from payment.onramp.schemas import CreateSessionRequest, normalize_wallet_address
from payment.onramp.status import FINAL_STATUSES, SessionStatus, is_newer, rank
from payment.onramp.store import SessionRecord
from payment.onramp.stripe_gateway import OnrampGateway

__all__ = [
    "CREATE_FAILURE_REASONS",
    "TRANSITIONS",
    "Applied",
    "CreateOutcome",
    "Fee",
    "SessionPage",
    "Snapshot",
    "TransitionSource",
    "apply_snapshot",
    "check_purchase",
    "create_failure_reason",
    "create_session",
    "get_session",
    "list_sessions",
    "metric_labels",
    "parse_snapshot",
    "quote_slippage",
    "record_applied",
    "recover_stale_creations",
    "write_snapshot",
]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
METADATA_KEY = "musdpay_session_id"
MAX_PAGE = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CreateOutcome:
    session: SessionRecord
    replayed: bool


@dataclass(frozen=True)
class SessionPage:
    sessions: list[SessionRecord]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True)
class Snapshot:
    """The parts of a Stripe `crypto.onramp_session` object that we keep."""

    stripe_session_id: str
    status: SessionStatus
    client_secret: str | None
    livemode: bool
    our_session_id: str | None
    transaction_id: str | None
    destination_amount: Decimal | None
    network_fee_amount: Decimal | None
    transaction_fee_amount: Decimal | None


class TransitionSource(StrEnum):
    """What applied a status change: the `source` label of the transitions and the status history's column."""

    api = "api"  # Stripe's answer to our create call
    recovery = "recovery"  # the sweep finishing an interrupted creation
    webhook = "webhook"  # a Stripe event
    reconcile = "reconcile"  # reconciliation: a session retrieved from Stripe, or an event it listed (reconcile/)


class Fee(StrEnum):
    """Stripe's fees on a session (`transaction_details.fees`): the `fee` label of `musdpay_onramp_fees_total`."""

    transaction = "transaction"
    network = "network"


# Every status change record_applied can count: forward only (to a higher rank: `creating` is left for any
# status Stripe answers, and a final status is never left), whatever applied it.
TRANSITIONS: tuple[tuple[SessionStatus, SessionStatus], ...] = tuple(
    (before, after)
    for before in SessionStatus
    if before not in FINAL_STATUSES
    for after in SessionStatus
    if rank(after) > rank(before)
)

# The `reason` label of failed creations: the slug of each problem create_session raises (any other is "other",
# so the set stays closed).
OTHER_REASON = "other"
CREATE_FAILURE_REASONS = (
    "validation-error",
    "idempotency-key-reused",
    "request-in-progress",
    "stripe-not-configured",
    "stripe-rejected",
    "onramp-unavailable",
    "stripe-unavailable",
    "stripe-rate-limited",
    OTHER_REASON,
)


def create_failure_reason(problem: Problem) -> str:
    return problem.slug if problem.slug in CREATE_FAILURE_REASONS else OTHER_REASON


@dataclass(frozen=True)
class Applied:
    """A snapshot that changed a session: its status before and after (equal when only details changed), and
    the fees known once it is applied (the snapshot's, else those an earlier snapshot brought)."""

    session_id: str
    from_status: SessionStatus
    to_status: SessionStatus
    source: TransitionSource
    currency: str
    amount: Decimal
    created_at: datetime
    at: datetime
    transaction_fee: Decimal | None = None
    network_fee: Decimal | None = None
    # The quote the dApp showed (if it passed one) and Stripe's destination amount once applied.
    quoted_destination_amount: Decimal | None = None
    destination_amount: Decimal | None = None

    @property
    def fees(self) -> dict[Fee, Decimal]:
        """The fees Stripe reported (a missing one is absent, not 0)."""
        amounts = {Fee.transaction: self.transaction_fee, Fee.network: self.network_fee}
        return {fee: amount for fee, amount in amounts.items() if amount is not None}


def record_applied(telemetry: Telemetry, applied: Applied | None) -> None:
    """Count a committed change: transitions, volume reaching a final status, time to fulfillment and fees."""
    if applied is None or applied.from_status is applied.to_status:
        return
    metrics = telemetry.metrics
    metrics.status_transitions.labels(applied.from_status.value, applied.to_status.value, applied.source.value).inc()
    if applied.to_status in FINAL_STATUSES and applied.from_status not in FINAL_STATUSES:
        metrics.payment_volume.labels(applied.currency, applied.to_status.value).inc(float(applied.amount))
        if applied.to_status is SessionStatus.fulfillment_complete:
            metrics.fulfillment_duration.observe(max((applied.at - applied.created_at).total_seconds(), 0.0))
            for fee, amount in applied.fees.items():
                metrics.fees.labels(applied.currency, fee.value).inc(float(amount))
            slippage = quote_slippage(applied.quoted_destination_amount, applied.destination_amount)
            if slippage is not None:
                metrics.observe_slippage(metrics.quote_slippage, slippage)


def quote_slippage(quoted: Decimal | None, settled: Decimal | None) -> Decimal | None:
    """(quoted - Stripe's destination_amount) / quoted: the share of the quote the buyer did not get (negative: got
    more). None without a quote or before Stripe reports the amount."""
    if quoted is None or settled is None or quoted <= 0:
        return None
    return (quoted - settled) / quoted


def metric_labels(settings: Settings) -> LabelSets:
    """The label tuples of the onramp families known before their first event (`PaymentMetrics.initialise`)."""
    currencies = settings.source_currencies
    return {
        "sessions_created": [
            (source, destination, network)
            for source in currencies
            for destination in settings.destination_currencies
            for network in settings.destination_networks
        ],
        "session_create_failures": [(reason,) for reason in CREATE_FAILURE_REASONS],
        "status_transitions": [
            (before.value, after.value, source.value) for before, after in TRANSITIONS for source in TransitionSource
        ],
        "payment_volume": [(currency, status.value) for currency in currencies for status in sorted(FINAL_STATUSES)],
        "fees": [(currency, fee.value) for currency in currencies for fee in Fee],
    }


# --- validation --------------------------------------------------------------------------------------------


def check_purchase(
    settings: Settings,
    *,
    source_amount: Decimal,
    source_currency: str,
    destination_currency: str,
    destination_network: str,
    where: str = "body",
) -> list[FieldError]:
    """What the settings refuse in a purchase (a session to create, or a quote): amount bounds and allow-lists.
    `where` is the request part named in the errors (`body` for a session, `query` for a quote)."""
    errors: list[FieldError] = []
    amount = f"{where}.sourceAmount"
    if source_amount < settings.min_source_amount:
        errors.append(FieldError(amount, f"must be at least {settings.min_source_amount}", "too_small"))
    if source_amount > settings.max_source_amount:
        errors.append(FieldError(amount, f"must be at most {settings.max_source_amount}", "too_large"))
    allow_lists = (
        ("sourceCurrency", source_currency, settings.source_currencies),
        ("destinationCurrency", destination_currency, settings.destination_currencies),
        ("destinationNetwork", destination_network, settings.destination_networks),
    )
    for name, value, allowed in allow_lists:
        if value not in allowed:
            errors.append(FieldError(f"{where}.{name}", f"must be one of: {', '.join(allowed)}", "not_supported"))
    return errors


def _check_business_rules(request: CreateSessionRequest, settings: Settings) -> None:
    errors = check_purchase(
        settings,
        source_amount=request.source_amount,
        source_currency=request.source_currency,
        destination_currency=request.destination_currency,
        destination_network=request.destination_network,
    )
    if errors:
        raise ValidationProblem(errors)


def _sha256(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _fingerprint(request: CreateSessionRequest) -> str:
    return _sha256(json.dumps(request.fingerprint_fields(), sort_keys=True))


# --- creation ----------------------------------------------------------------------------------------------


DbRunner = Callable[..., Awaitable[Any]]


async def create_session(
    *,
    run_db: DbRunner,
    factory: sessionmaker[Session],
    gateway: OnrampGateway | None,
    settings: Settings,
    request: CreateSessionRequest,
    idempotency_key: str | None,
    scope: str,
    customer_ip_address: str | None,
    telemetry: Telemetry,
    clock: Clock = utcnow,
) -> CreateOutcome:
    """Create an onramp session at Stripe and store it; replay it for a repeated Idempotency-Key.

    `run_db` runs each short database step (inline on SQLite, in a worker thread on PostgreSQL); the Stripe
    call is awaited, so no thread waits on the network.
    """
    try:
        _check_business_rules(request, settings)
        if gateway is None:
            raise UpstreamProblem(503, "stripe-not-configured", "Stripe is not configured on this service.")
        fingerprint = _fingerprint(request)
        key_hash = _sha256(scope, idempotency_key) if idempotency_key is not None else None
        row, lease = await run_db(
            _claim_or_insert,
            factory=factory,
            settings=settings,
            request=request,
            fingerprint=fingerprint,
            key_hash=key_hash,
            customer_ip_address=customer_ip_address,
            telemetry=telemetry,
            clock=clock,
        )
        if lease is None:
            return CreateOutcome(session=row, replayed=True)
        crash_point(settings, "before_stripe_create")
        try:
            obj = await gateway.create_session_async(_stripe_params(row, settings), idempotency_key=_stripe_key(row))
            snapshot = parse_snapshot(obj)
        except Problem:
            await run_db(_abandon, factory=factory, session_id=row.id, lease=lease, telemetry=telemetry)
            raise
        crash_point(settings, "after_stripe_create")
        session = await run_db(
            _attach, factory=factory, settings=settings, row=row, snapshot=snapshot, source=TransitionSource.api,
            telemetry=telemetry, clock=clock,
        )  # fmt: skip
    except Problem as problem:
        telemetry.metrics.session_create_failures.labels(create_failure_reason(problem)).inc()
        raise
    return CreateOutcome(session=session, replayed=False)


def _stripe_key(row: SessionRecord) -> str:
    # Derived from the row, so a retry of an interrupted creation gets Stripe's first answer back.
    return f"musdpay-{row.id}"


def _claim_or_insert(
    *,
    factory: sessionmaker[Session],
    settings: Settings,
    request: CreateSessionRequest,
    fingerprint: str,
    key_hash: str | None,
    customer_ip_address: str | None,
    telemetry: Telemetry,
    clock: Clock,
) -> tuple[SessionRecord, datetime | None]:
    """The row to create at Stripe with our lease on it, or (existing row, None) for an idempotent replay."""
    for _attempt in range(3):
        now = clock()
        try:
            with direct_transaction(factory, telemetry.sql_tracer) as conn:
                if key_hash is not None:
                    existing = store.load_by_idempotency_key(conn, key_hash)
                    if existing is not None:
                        return _reuse(conn, settings, existing, fingerprint, now)
                values: dict[str, Any] = {
                    "id": str(uuid.uuid4()),
                    "stripe_session_id": None,
                    "client_secret": None,
                    "status": SessionStatus.creating.value,
                    "livemode": False,
                    "wallet_address": request.wallet_address,
                    "source_amount": request.source_amount.quantize(Decimal("0.01")),
                    "source_currency": request.source_currency,
                    "destination_currency": request.destination_currency,
                    "destination_network": request.destination_network,
                    "customer_ip_address": customer_ip_address,
                    "transaction_id": None,
                    "destination_amount": None,
                    "network_fee_amount": None,
                    "transaction_fee_amount": None,
                    "quoted_destination_amount": request.quoted_destination_amount,
                    "idempotency_key": key_hash,
                    "request_fingerprint": fingerprint,
                    "creation_started_at": now,
                    "creation_traceparent": current_traceparent(),
                    "last_event_id": "",
                    "last_event_created": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                store.insert_session(conn, values)
                return SessionRecord(**values), now
        except IntegrityError:
            # Another request inserted the same Idempotency-Key first (the whole transaction rolled back, nothing
            # else was written in it): read theirs on the next pass.
            continue
    raise Conflict("request-in-progress", "A request with this Idempotency-Key is in progress.", retry_after=1)


def _reuse(
    conn: DirectConnection, settings: Settings, existing: SessionRecord, fingerprint: str, now: datetime
) -> tuple[SessionRecord, datetime | None]:
    if existing.request_fingerprint != fingerprint:
        raise Conflict(
            "idempotency-key-reused",
            "This Idempotency-Key was already used with a different request body.",
        )
    if existing.status != SessionStatus.creating.value:
        return existing, None
    started = existing.creation_started_at
    lease = timedelta(seconds=settings.creation_lease_seconds)
    if started is not None and now - started < lease:
        raise Conflict("request-in-progress", "A request with this Idempotency-Key is in progress.", retry_after=1)
    # The request that owned this row died: take over its lease and finish its work.
    if not store.claim_creation(conn, existing.id, started, now):
        raise Conflict("request-in-progress", "A request with this Idempotency-Key is in progress.", retry_after=1)
    existing.creation_started_at = now
    return existing, now


def _stripe_params(row: SessionRecord, settings: Settings) -> dict[str, Any]:
    params: dict[str, Any] = {
        "wallet_addresses": {row.destination_network: row.wallet_address},
        "source_amount": format(row.source_amount, "f"),
        "source_currency": row.source_currency,
        "destination_currency": row.destination_currency,
        "destination_currencies": [row.destination_currency],
        "destination_network": row.destination_network,
        "destination_networks": [row.destination_network],
        "lock_wallet_address": settings.lock_wallet_address,
        "metadata": {METADATA_KEY: row.id},
    }
    if row.customer_ip_address:
        params["customer_ip_address"] = row.customer_ip_address
    return params


def _create_at_stripe(
    factory: sessionmaker[Session],
    gateway: OnrampGateway,
    settings: Settings,
    row: SessionRecord,
    lease: datetime,
    *,
    source: TransitionSource,
    telemetry: Telemetry,
    clock: Clock,
) -> SessionRecord:
    """Steps 2 and 3 of a creation, synchronously (the recovery sweep)."""
    crash_point(settings, "before_stripe_create")
    try:
        obj = gateway.create_session(_stripe_params(row, settings), idempotency_key=_stripe_key(row))
        snapshot = parse_snapshot(obj)
    except Problem:
        _abandon(factory=factory, session_id=row.id, lease=lease, telemetry=telemetry)
        raise
    crash_point(settings, "after_stripe_create")
    return _attach(
        factory=factory, settings=settings, row=row, snapshot=snapshot, source=source, telemetry=telemetry, clock=clock
    )


def _attach(
    *,
    factory: sessionmaker[Session],
    settings: Settings,
    row: SessionRecord,
    snapshot: Snapshot,
    source: TransitionSource,
    telemetry: Telemetry,
    clock: Clock,
) -> SessionRecord:
    """Step 3: the row takes Stripe's id, client secret and status."""
    with direct_transaction(factory, telemetry.sql_tracer) as conn:
        current = store.load_by_id(conn, row.id, for_update=True)
        if current is None:
            # Deleted meanwhile (a competing attempt failed at Stripe): nothing of ours to attach to.
            raise UpstreamProblem(503, "stripe-unavailable", "The session could not be created.", retry_after=1)
        changes, applied = apply_snapshot(current, snapshot, position=(0, ""), source=source, now=clock())
        changes["creation_started_at"] = current.creation_started_at = None
        write_snapshot(conn, current, changes, applied, None, settings=settings)
    crash_point(settings, "after_commit")
    record_applied(telemetry, applied)
    if applied is not None and applied.from_status is SessionStatus.creating:
        telemetry.metrics.sessions_created.labels(
            current.source_currency, current.destination_currency, current.destination_network
        ).inc()
    return current


def _abandon(*, factory: sessionmaker[Session], session_id: str, lease: datetime, telemetry: Telemetry) -> None:
    """Delete a row whose creation failed, unless another attempt has taken it over since."""
    with direct_transaction(factory, telemetry.sql_tracer) as conn:
        store.delete_if_creating(conn, session_id, lease)


def recover_stale_creations(
    *,
    factory: sessionmaker[Session],
    gateway: OnrampGateway | None,
    settings: Settings,
    telemetry: Telemetry,
    clock: Clock = utcnow,
    limit: int = 50,
) -> int:
    """Finish creations whose request died (lease expired); returns how many were finished or abandoned."""
    if gateway is None:
        return 0
    cutoff = clock() - timedelta(seconds=settings.creation_lease_seconds)
    with direct_transaction(factory, telemetry.sql_tracer, write=False) as conn:
        stale = store.stale_creations(conn, cutoff, limit)
    handled = 0
    for row in stale:
        now = clock()
        with direct_transaction(factory, telemetry.sql_tracer) as conn:
            claimed = store.claim_creation(conn, row.id, row.creation_started_at, now)
        if not claimed:
            continue
        handled += 1
        try:
            _create_at_stripe(
                factory, gateway, settings, row, now, source=TransitionSource.recovery, telemetry=telemetry, clock=clock
            )
        except Problem as problem:
            log.warning("recovery of session %s abandoned: %s", row.id, problem.slug)
    return handled


# --- snapshots from Stripe ---------------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def parse_snapshot(obj: Any) -> Snapshot:
    """Read a Stripe onramp session object; raises UpstreamProblem if it is not one."""
    if not isinstance(obj, dict) or obj.get("object") != "crypto.onramp_session":
        raise UpstreamProblem(502, "stripe-unavailable", "Stripe returned an unexpected object.")
    try:
        status = SessionStatus(str(obj.get("status")))
    except ValueError as exc:
        raise UpstreamProblem(502, "stripe-unavailable", "Stripe returned an unknown session status.") from exc
    if status is SessionStatus.creating:
        raise UpstreamProblem(502, "stripe-unavailable", "Stripe returned an unknown session status.")
    details = obj.get("transaction_details") or {}
    fees = details.get("fees") or {} if isinstance(details, dict) else {}
    metadata = obj.get("metadata") or {}
    tx_id = details.get("transaction_id") if isinstance(details, dict) else None
    return Snapshot(
        stripe_session_id=str(obj.get("id")),
        status=status,
        client_secret=obj.get("client_secret") if isinstance(obj.get("client_secret"), str) else None,
        livemode=bool(obj.get("livemode", False)),
        our_session_id=str(metadata[METADATA_KEY])
        if isinstance(metadata, dict) and metadata.get(METADATA_KEY)
        else None,
        transaction_id=str(tx_id) if tx_id else None,
        destination_amount=_decimal(details.get("destination_amount")) if isinstance(details, dict) else None,
        network_fee_amount=_decimal(fees.get("network_fee_amount")) if isinstance(fees, dict) else None,
        transaction_fee_amount=_decimal(fees.get("transaction_fee_amount")) if isinstance(fees, dict) else None,
    )


def apply_snapshot(
    row: SessionRecord,
    snapshot: Snapshot,
    *,
    position: tuple[int, str],
    source: TransitionSource,
    now: datetime,
) -> tuple[dict[str, Any], Applied | None]:
    """Apply Stripe's view of the session to `row` if it is newer than what it holds.

    Returns the changed columns (to write) and, if the snapshot was newer, what it changed (None otherwise).
    `position` is (event created, event id); the API's own create response uses (0, "") so any event wins.
    """
    changes: dict[str, Any] = {}
    if row.stripe_session_id is None:
        changes["stripe_session_id"] = snapshot.stripe_session_id
    if row.client_secret is None and snapshot.client_secret:
        changes["client_secret"] = snapshot.client_secret
    current_status = SessionStatus(row.status)
    current = (current_status, row.last_event_created, row.last_event_id)
    candidate = (snapshot.status, position[0], position[1])
    newer = current_status is SessionStatus.creating or is_newer(current, candidate)
    # Transaction facts are filled from any snapshot, older ones included: which snapshot carried the hash
    # first must not decide whether we know it. A newer snapshot overrides; none erases.
    for name in ("transaction_id", "destination_amount", "network_fee_amount", "transaction_fee_amount"):
        value = getattr(snapshot, name)
        if value is not None and value != getattr(row, name) and (newer or getattr(row, name) is None):
            changes[name] = value
    applied = None
    if newer:
        changes.update(
            livemode=snapshot.livemode,
            last_event_created=position[0],
            last_event_id=position[1],
            status=snapshot.status.value,
            updated_at=now,
        )
        applied = Applied(
            session_id=row.id,
            from_status=current_status,
            to_status=snapshot.status,
            source=source,
            currency=row.source_currency,
            amount=row.source_amount,
            created_at=row.created_at,
            at=now,
            transaction_fee=changes.get("transaction_fee_amount", row.transaction_fee_amount),
            network_fee=changes.get("network_fee_amount", row.network_fee_amount),
            quoted_destination_amount=row.quoted_destination_amount,
            destination_amount=changes.get("destination_amount", row.destination_amount),
        )
    elif changes:
        changes["updated_at"] = now
    for name, value in changes.items():
        setattr(row, name, value)
    return changes, applied


def write_snapshot(
    conn: DirectConnection,
    row: SessionRecord,
    changes: dict[str, Any],
    applied: Applied | None,
    event_id: str | None,
    *,
    settings: Settings,
) -> bool:
    """Persist what apply_snapshot decided: the row's changes and, for a status change, its history entry and
    (once paid) the delivery it now owes. True if a delivery was created."""
    store.update_session(conn, row.id, changes)
    if applied is None or applied.from_status is applied.to_status:
        return False
    store.add_status_change(
        conn,
        session_id=row.id,
        from_status=applied.from_status,
        to_status=applied.to_status,
        source=applied.source,
        event_id=event_id,
        at=applied.at,
    )
    if applied.to_status is not DUE_STATUS:
        return False
    return enqueue_delivery(
        conn, row, mode=settings.delivery_mode, deadline_seconds=settings.delivery_deadline_seconds, now=applied.at
    )


# --- reads -------------------------------------------------------------------------------------------------


def get_session(*, factory: sessionmaker[Session], session_id: str) -> SessionRecord:
    with direct_transaction(factory, write=False) as conn:
        row = store.load_by_id(conn, session_id)
    if row is None:
        raise NotFound(f"No onramp session with id {session_id!r}.")
    return row


def _encode_cursor(row: SessionRecord) -> str:
    raw = json.dumps([row.created_at.isoformat(), row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, session_id = json.loads(raw)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None or not isinstance(session_id, str):
            raise ValueError("bad cursor")
        return when.astimezone(UTC), session_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationProblem(
            [FieldError("query.cursor", "is not a cursor returned by this API", "invalid_cursor")]
        ) from exc


def list_sessions(
    *,
    factory: sessionmaker[Session],
    wallet_address: str | None,
    status: SessionStatus | None,
    limit: int,
    cursor: str | None,
    owner: str | None = None,
) -> SessionPage:
    """Newest first, keyset-paginated on (created_at, id) so pages stay stable while rows are added.

    `owner` (a wallet caller's own address) restricts the list to its sessions, whatever the filters say."""
    limit = max(1, min(limit, MAX_PAGE))
    columns = store.SESSIONS.c
    query = select(store.SESSIONS).where(columns.status != SessionStatus.creating.value)
    if owner is not None:
        query = query.where(columns.wallet_address == owner)
    if wallet_address is not None:
        try:
            wallet = normalize_wallet_address(wallet_address)
        except ValueError as exc:
            raise ValidationProblem([FieldError("query.walletAddress", str(exc))]) from exc
        query = query.where(columns.wallet_address == wallet)
    if status is not None:
        query = query.where(columns.status == status.value)
    if cursor is not None:
        created, session_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                columns.created_at < created,
                and_(columns.created_at == created, columns.id < session_id),
            )
        )
    query = query.order_by(columns.created_at.desc(), columns.id.desc()).limit(limit + 1)
    with factory() as db:
        rows = [SessionRecord(**row) for row in db.execute(query).mappings()]
    has_more = len(rows) > limit
    rows = rows[:limit]
    return SessionPage(
        sessions=rows, has_more=has_more, next_cursor=_encode_cursor(rows[-1]) if has_more and rows else None
    )
