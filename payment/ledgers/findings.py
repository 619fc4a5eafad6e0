"""What a disagreement between the three ledgers is, decided from what each one says (pure functions).

    Stripe's session object   what Stripe charged (source amount), says it delivered (destination amount, fees,
                              transaction id)
    our row and its delivery  what we recorded
    the chain                 the MUSD `Transfer` logs of the delivering transaction, and every transfer out of
                              the treasury

A purchase agrees when all three match; each way it does not is a `Finding` of one `Kind`. The other way round,
every MUSD transfer out of the treasury must belong to exactly one purchase: an outflow nobody can explain is
the worst case (a leaked key, a double send).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["Finding", "Kind", "Purchase", "Transfer", "compare_purchase", "explain_outflows"]


class Kind(enum.StrEnum):
    # Stripe against our database.
    stripe_amount_mismatch = "stripe_amount_mismatch"  # source or destination amount
    stripe_fee_mismatch = "stripe_fee_mismatch"
    stripe_transaction_mismatch = "stripe_transaction_mismatch"
    stripe_status_mismatch = "stripe_status_mismatch"  # fulfilled here, not at Stripe
    # The chain against both.
    missing_transfer = "missing_transfer"  # no MUSD transfer in the delivering transaction (or no transaction)
    wrong_recipient = "wrong_recipient"  # the MUSD went to another address
    short_amount = "short_amount"  # less MUSD arrived than Stripe's destination amount
    excess_amount = "excess_amount"  # more arrived than owed (treasury mode: our money)
    # The treasury's outflows.
    unexplained_outflow = "unexplained_outflow"  # a treasury transfer no purchase explains
    double_send = "double_send"  # more than one treasury transfer for one purchase


@dataclass(frozen=True)
class Transfer:
    """One MUSD `Transfer` log."""

    tx_hash: str
    sender: str
    recipient: str
    amount: Decimal  # MUSD
    block_number: int | None = None


@dataclass(frozen=True)
class Purchase:
    """One fulfilled session as our database holds it, with its delivery."""

    session_id: str
    stripe_session_id: str
    wallet_address: str
    source_amount: Decimal
    source_currency: str
    destination_amount: Decimal | None
    network_fee_amount: Decimal | None
    transaction_fee_amount: Decimal | None
    transaction_id: str | None
    delivery_mode: str | None  # onramp | treasury | None (no delivery row)
    delivery_tx_hash: str | None

    @property
    def delivering_tx(self) -> str | None:
        """The transaction that should carry the MUSD: Stripe's (onramp mode) or our own transfer (treasury)."""
        if self.delivery_mode == "treasury":
            return self.delivery_tx_hash
        return self.transaction_id or self.delivery_tx_hash


@dataclass(frozen=True)
class Finding:
    kind: Kind
    subject: str  # what a later check finds the same disagreement by
    currency: str
    detail: str
    session_id: str | None = None
    tx_hash: str | None = None
    expected: Decimal | None = None
    actual: Decimal | None = None


def _decimal(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def compare_purchase(
    purchase: Purchase, stripe_session: Mapping[str, object], transfers: Sequence[Transfer] | None
) -> list[Finding]:
    """Every disagreement of one fulfilled purchase. `transfers` are the MUSD transfers of its delivering
    transaction (None: the transaction is not on the chain)."""
    found: list[Finding] = []
    session, currency = purchase.session_id, purchase.source_currency
    details = stripe_session.get("transaction_details")
    details = details if isinstance(details, Mapping) else {}
    fees = details.get("fees")
    fees = fees if isinstance(fees, Mapping) else {}

    status = stripe_session.get("status")
    if status != "fulfillment_complete":
        found.append(
            Finding(Kind.stripe_status_mismatch, session, currency, f"fulfilled here, {status} at Stripe", session)
        )
    pairs = (
        ("source amount", purchase.source_amount, _decimal(details.get("source_amount")), currency),
        ("destination amount", purchase.destination_amount, _decimal(details.get("destination_amount")), "musd"),
    )
    for name, ours, theirs, unit in pairs:
        if ours != theirs:
            found.append(
                Finding(
                    Kind.stripe_amount_mismatch,
                    f"{session}:{name}",
                    unit,
                    f"{name}: {ours} recorded, {theirs} at Stripe",
                    session,
                    expected=theirs,
                    actual=ours,
                )
            )
    for name, ours, theirs in (
        ("network fee", purchase.network_fee_amount, _decimal(fees.get("network_fee_amount"))),
        ("transaction fee", purchase.transaction_fee_amount, _decimal(fees.get("transaction_fee_amount"))),
    ):
        if ours != theirs:
            found.append(
                Finding(
                    Kind.stripe_fee_mismatch,
                    f"{session}:{name}",
                    currency,
                    f"{name}: {ours} recorded, {theirs} at Stripe",
                    session,
                    expected=theirs,
                    actual=ours,
                )
            )
    stripe_tx = details.get("transaction_id")
    if purchase.delivery_mode != "treasury" and (stripe_tx or None) != (purchase.transaction_id or None):
        found.append(
            Finding(
                Kind.stripe_transaction_mismatch,
                session,
                "musd",
                f"transaction {purchase.transaction_id} recorded, {stripe_tx} at Stripe",
                session,
            )
        )

    owed = _decimal(details.get("destination_amount"))
    if owed is None:
        owed = purchase.destination_amount
    tx = purchase.delivering_tx
    if tx is None or transfers is None:
        where = "no delivering transaction is known" if tx is None else f"{tx} is not on the chain"
        found.append(Finding(Kind.missing_transfer, session, "musd", where, session, tx, expected=owed))
        return found
    wallet = purchase.wallet_address.lower()
    arrived = sum((t.amount for t in transfers if t.recipient.lower() == wallet), Decimal(0))
    elsewhere = sorted({t.recipient for t in transfers if t.recipient.lower() != wallet})
    if not transfers:
        found.append(Finding(Kind.missing_transfer, session, "musd", f"{tx} moved no MUSD", session, tx, owed))
    elif arrived == 0:
        found.append(
            Finding(
                Kind.wrong_recipient,
                session,
                "musd",
                f"{tx} sent the MUSD to {', '.join(elsewhere)}, not to {purchase.wallet_address}",
                session,
                tx,
                expected=owed,
                actual=Decimal(0),
            )
        )
    elif owed is not None and arrived < owed:
        found.append(
            Finding(
                Kind.short_amount,
                session,
                "musd",
                f"{arrived} MUSD arrived in {tx}, Stripe says {owed}",
                session,
                tx,
                expected=owed,
                actual=arrived,
            )
        )
    elif owed is not None and arrived > owed:
        found.append(
            Finding(
                Kind.excess_amount,
                session,
                "musd",
                f"{arrived} MUSD arrived in {tx}, Stripe says {owed}",
                session,
                tx,
                expected=owed,
                actual=arrived,
            )
        )
    return found


def explain_outflows(outflows: Sequence[Transfer], sessions_by_tx: Mapping[str, str]) -> list[Finding]:
    """Treasury transfers that no purchase explains, and purchases paid by more than one treasury transfer.
    `sessions_by_tx` maps every transaction we signed or recorded as a delivery to its session."""
    found: list[Finding] = []
    paid: dict[str, list[Transfer]] = {}
    for transfer in outflows:
        session = sessions_by_tx.get(transfer.tx_hash.lower())
        if session is None:
            found.append(
                Finding(
                    Kind.unexplained_outflow,
                    transfer.tx_hash.lower(),
                    "musd",
                    f"{transfer.amount} MUSD left the treasury {transfer.sender} for {transfer.recipient} in "
                    f"{transfer.tx_hash}, which no purchase explains",
                    None,
                    transfer.tx_hash,
                    actual=transfer.amount,
                )
            )
        else:
            paid.setdefault(session, []).append(transfer)
    for session, transfers in paid.items():
        if len({t.tx_hash.lower() for t in transfers}) > 1:
            hashes = sorted({t.tx_hash for t in transfers})
            found.append(
                Finding(
                    Kind.double_send,
                    session,
                    "musd",
                    f"{len(hashes)} treasury transfers paid one purchase: {', '.join(hashes)}",
                    session,
                    hashes[-1],
                    actual=sum((t.amount for t in transfers), Decimal(0)),
                )
            )
    return found
