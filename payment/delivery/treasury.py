"""Treasury delivery: sending MUSD from our own key, exactly once, whatever line the process dies on.

The rule that makes it safe: a delivery reserves one nonce of the treasury account (in the database, before
anything is signed), and every transaction ever signed for it uses that nonce. The chain mines at most one
transaction per nonce, so retries, re-broadcasts, fee bumps and restarts can never pay twice. Each signed
transaction is stored before it is broadcast, so after a crash we know every hash that might be mined.

Steps, each committed before the next: reserve nonce -> sign and record -> broadcast -> find the mined one
(verified like an onramp delivery) or, if it is stuck, sign a replacement with a higher fee (same nonce).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr

from payment.chain.errors import RpcError
from payment.core.config import Settings
from payment.core.faults import crash_point
from payment.delivery import store
from payment.delivery.chain import ChainAccess, from_units, to_units
from payment.delivery.reference import encode_transfer
from payment.delivery.status import DeliveryStatus
from payment.delivery.store import Attempt, DueDelivery
from payment.delivery.verify import Verdict, check_transfer

__all__ = ["Hold", "TreasuryContext", "advance_treasury_delivery", "treasury_account"]

log = logging.getLogger(__name__)

T = TypeVar("T")
RunDb = Callable[..., Awaitable[Any]]

# Broadcast answers that mean "the node has (had) it": go and look for the receipt instead of failing.
_ALREADY_SENT = ("already known", "known transaction", "nonce too low", "underpriced", "already imported")


@dataclass(frozen=True)
class Hold:
    """The delivery cannot go out now (a cap or a minimum balance); it waits, visibly."""

    reason: str


@dataclass(frozen=True)
class TreasuryContext:
    settings: Settings
    chain: ChainAccess
    run_db: RunDb
    factory: Any  # sessionmaker[Session]
    account: LocalAccount
    clock: Callable[[], datetime]


def treasury_account(settings: Settings) -> LocalAccount:
    if settings.treasury_key is None:
        raise ValueError("no treasury key configured")
    account: LocalAccount = Account.from_key(settings.treasury_key.get_secret_value())
    return account


async def _check_limits(ctx: TreasuryContext, amount: Decimal) -> Hold | None:
    settings = ctx.settings
    if amount > settings.treasury_max_transfer:
        return Hold(f"{amount} MUSD is over the per-transfer cap of {settings.treasury_max_transfer} MUSD")
    today, in_flight = await ctx.run_db(store.committed_today, factory=ctx.factory, now=ctx.clock())
    if today + amount > settings.treasury_daily_cap:
        return Hold(f"the daily cap of {settings.treasury_daily_cap} MUSD is reached ({today} MUSD sent today)")
    address = ctx.account.address
    musd = from_units(await ctx.chain.erc20_balance(settings.musd_address, address))
    if musd - in_flight - amount < settings.treasury_min_musd:
        return Hold(
            f"the treasury holds {musd} MUSD ({in_flight} in flight): sending {amount} would leave less than "
            f"the minimum of {settings.treasury_min_musd} MUSD"
        )
    btc = from_units(await ctx.chain.get_balance(address))
    if btc < settings.treasury_min_btc:
        return Hold(f"the treasury holds {btc} BTC for gas, under the minimum of {settings.treasury_min_btc} BTC")
    return None


def _sign(ctx: TreasuryContext, delivery: DueDelivery, nonce: int, amount: Decimal, gas_price: int) -> Attempt:
    settings = ctx.settings
    # The session id rides after the arguments: the chain says which session this transfer paid (reference.py).
    data = encode_transfer(delivery.wallet_address, to_units(amount), delivery.session_id)
    signed = ctx.account.sign_transaction(
        {
            "chainId": settings.chain_id,
            "nonce": nonce,
            "to": HexStr(settings.musd_address),
            "value": 0,
            "gas": settings.treasury_gas_limit,
            "gasPrice": gas_price,
            "data": data,
        }
    )
    return Attempt(
        tx_hash=signed.hash.to_0x_hex(),
        nonce=nonce,
        gas_price=gas_price,
        raw_tx=signed.raw_transaction.to_0x_hex(),
        created_at=ctx.clock(),
        broadcast_at=None,
    )


class _CannotPay(Exception):
    """The node refused the transfer for want of funds (gas or MUSD): hold it until the treasury is topped up."""


async def _broadcast(ctx: TreasuryContext, attempt: Attempt) -> None:
    try:
        await ctx.chain.send_raw_transaction(attempt.raw_tx)
    except RpcError as exc:
        message = (exc.rpc_message or "").lower()
        if "insufficient funds" in message:
            raise _CannotPay(exc.rpc_message or "insufficient funds") from None
        if not any(marker in message for marker in _ALREADY_SENT):
            raise
        log.info("broadcast of %s: the node already had it (%s)", attempt.tx_hash, exc.rpc_message)
    await ctx.run_db(store.mark_broadcast, factory=ctx.factory, tx_hash=attempt.tx_hash, now=ctx.clock())
    crash_point(ctx.settings, "treasury_after_broadcast")


async def _mined(ctx: TreasuryContext, delivery: DueDelivery, amount: Decimal, attempts: list[Attempt]) -> Verdict:
    """The verdict of whichever attempt was mined (newest first), or not_found/pending if none was."""
    waiting: Verdict | None = None
    for attempt in reversed(attempts):
        verdict = await check_transfer(
            ctx.chain,
            tx_hash=attempt.tx_hash,
            wallet=delivery.wallet_address,
            token=ctx.settings.musd_address,
            expected_units=to_units(amount),
            confirmations=ctx.settings.delivery_confirmations,
        )
        if verdict.block_number is not None:  # mined: the one and only for this nonce
            return _with_hash(verdict, attempt.tx_hash)
        if waiting is None or verdict.status is DeliveryStatus.pending:
            waiting = _with_hash(verdict, attempt.tx_hash)
    assert waiting is not None
    return waiting


def _with_hash(verdict: Verdict, tx_hash: str) -> Verdict:
    return Verdict(
        verdict.status,
        verdict.reason,
        verdict.block_number,
        verdict.confirmations,
        verdict.delivered_amount,
        tx_hash=tx_hash,
    )


async def advance_treasury_delivery(ctx: TreasuryContext, delivery: DueDelivery) -> Verdict | Hold:
    """Take one treasury delivery as far as it can go now; the caller records the outcome.

    Raises store.ChainAhead, having sent nothing, when the chain shows sends the database does not know.
    """
    try:
        return await _advance(ctx, delivery)
    except _CannotPay as exc:
        return Hold(f"the node refused the signed transfer: {exc}")


async def _advance(ctx: TreasuryContext, delivery: DueDelivery) -> Verdict | Hold:
    settings = ctx.settings
    nonce = delivery.nonce
    amount = delivery.expected_amount
    if nonce is None:
        amount = delivery.destination_amount
        if amount is None or amount <= 0:
            return Hold("Stripe has not reported the MUSD amount to deliver")
        hold = await _check_limits(ctx, amount)
        if hold is not None:
            return hold
        chain_nonce = await ctx.chain.get_transaction_count(ctx.account.address, "pending")
        nonce = await ctx.run_db(
            store.reserve_nonce,
            factory=ctx.factory,
            session_id=delivery.session_id,
            address=ctx.account.address,
            chain_pending_nonce=chain_nonce,
            amount=amount,
            now=ctx.clock(),
            refuse_if_chain_ahead=True,  # raises store.ChainAhead to the worker, which recovers first
        )
        if nonce is None:  # another worker reserved it meanwhile: take it up next round
            return Verdict(DeliveryStatus.pending, "another worker is sending this delivery")
        crash_point(settings, "treasury_after_reserve")
    assert amount is not None
    attempts: list[Attempt] = await ctx.run_db(store.attempts_of, factory=ctx.factory, session_id=delivery.session_id)
    if not attempts:
        attempt = _sign(ctx, delivery, nonce, amount, await ctx.chain.gas_price())
        await ctx.run_db(store.record_attempt, factory=ctx.factory, session_id=delivery.session_id, attempt=attempt)
        crash_point(settings, "treasury_after_sign")
        attempts = [attempt]
    latest = attempts[-1]
    if latest.broadcast_at is None:
        await _broadcast(ctx, latest)
    verdict = await _mined(ctx, delivery, amount, attempts)
    if verdict.block_number is not None:
        return verdict
    # Nothing of ours is mined. If the chain has moved past our nonce anyway, a transaction we never signed for
    # this delivery used it (the key is used elsewhere): nothing was sent by us, but a person must look.
    if await ctx.chain.get_transaction_count(ctx.account.address, "latest") > nonce:
        verdict = await _mined(ctx, delivery, amount, attempts)  # mined between our two reads?
        if verdict.block_number is not None:
            return verdict
        return Verdict(
            DeliveryStatus.mismatch, f"treasury nonce {nonce} was used by a transaction not signed for this delivery"
        )
    age = (ctx.clock() - latest.created_at).total_seconds()
    if age >= settings.treasury_stuck_seconds:
        bumped = latest.gas_price * (100 + settings.treasury_fee_bump_percent) // 100 + 1
        replacement = _sign(ctx, delivery, nonce, amount, max(bumped, await ctx.chain.gas_price()))
        await ctx.run_db(store.record_attempt, factory=ctx.factory, session_id=delivery.session_id, attempt=replacement)
        crash_point(settings, "treasury_after_sign")
        log.warning(
            "treasury transfer %s for session %s unmined after %.0f s: replaced by %s at gas price %d",
            latest.tx_hash,
            delivery.session_id,
            age,
            replacement.tx_hash,
            replacement.gas_price,
        )
        await _broadcast(ctx, replacement)
        return await _mined(ctx, delivery, amount, [*attempts, replacement])
    if verdict.status is DeliveryStatus.not_found:
        # Signed and broadcast, yet the node knows nothing of it (it restarted, or dropped it): send it again.
        await _broadcast(ctx, latest)
        return Verdict(
            DeliveryStatus.pending, "re-broadcast: the node had lost the transaction", tx_hash=latest.tx_hash
        )
    return verdict
