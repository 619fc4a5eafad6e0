"""Checking on chain that a transaction delivered MUSD: the rules of a verified delivery.

A delivery is verified when the transaction's receipt says success, its logs hold MUSD `Transfer` events from
the configured token contract to the session's wallet adding up to at least the expected amount, and the block
has the configured confirmations. Everything else gets a precise reason, because an operator reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_utils.crypto import keccak

from payment.delivery.chain import ChainAccess, as_int, from_units
from payment.delivery.status import DeliveryStatus

__all__ = ["TRANSFER_TOPIC", "TransferLog", "Verdict", "address_topic", "check_transfer", "transfer_logs"]

TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()


@dataclass(frozen=True)
class Verdict:
    status: DeliveryStatus
    reason: str | None = None
    block_number: int | None = None
    confirmations: int = 0
    delivered_amount: Decimal | None = None
    tx_hash: str | None = None  # set when the verdict is about one of several candidate transactions

    @property
    def final(self) -> bool:
        """A mined transaction's outcome never changes (CometBFT finality); only waiting verdicts do."""
        return self.status in (DeliveryStatus.verified, DeliveryStatus.mismatch, DeliveryStatus.failed)


@dataclass(frozen=True)
class TransferLog:
    """An ERC-20 `Transfer` log: the token contract, from, to, and the amount in units."""

    token: str
    sender: str
    recipient: str
    units: int


def address_topic(topic: Any) -> str:
    """The address in an indexed topic (the last 20 bytes), lower case."""
    text = topic.hex() if isinstance(topic, (bytes, bytearray)) else str(topic)
    return "0x" + text.removeprefix("0x")[-40:].lower()


def transfer_logs(logs: Any) -> list[TransferLog]:
    """The ERC-20 `Transfer` logs among `logs` (a receipt's, or eth_getLogs' answer)."""
    found = []
    for log in logs or []:
        topics = log.get("topics") or []
        if len(topics) != 3:  # ERC-721 Transfer has 4 topics; anything else is not an ERC-20 Transfer
            continue
        topic0 = topics[0].hex() if isinstance(topics[0], (bytes, bytearray)) else str(topics[0])
        if "0x" + topic0.removeprefix("0x").lower() != TRANSFER_TOPIC:
            continue
        data = log.get("data") or "0x"
        raw = data.hex() if isinstance(data, (bytes, bytearray)) else str(data).removeprefix("0x")
        if not raw:
            continue
        found.append(
            TransferLog(
                token=str(log.get("address", "")).lower(),
                sender=address_topic(topics[1]),
                recipient=address_topic(topics[2]),
                units=int(raw[:64], 16),
            )
        )
    return found


async def check_transfer(
    chain: ChainAccess,
    *,
    tx_hash: str,
    wallet: str,
    token: str,
    expected_units: int,
    confirmations: int,
) -> Verdict:
    """The verdict on `tx_hash` as a delivery of `expected_units` MUSD to `wallet`, as of the chain's head."""
    receipt = await chain.get_transaction_receipt(tx_hash)
    if receipt is None:
        if await chain.get_transaction(tx_hash) is not None:
            return Verdict(DeliveryStatus.pending, "the transaction is not mined yet")
        return Verdict(DeliveryStatus.not_found, "no transaction with this hash on the chain")
    block = as_int(receipt["blockNumber"])
    if as_int(receipt.get("status", 0)) != 1:
        return Verdict(DeliveryStatus.failed, "the transaction reverted", block_number=block)
    wallet, token = wallet.lower(), token.lower()
    transfers = transfer_logs(receipt.get("logs"))
    to_wallet = [t for t in transfers if t.recipient == wallet and t.token == token]
    delivered = sum(t.units for t in to_wallet)
    if not to_wallet:
        others = sorted({t.token for t in transfers if t.recipient == wallet})
        if others:
            reason = f"the transfer to the wallet is of another token ({', '.join(others)}), not MUSD"
        elif any(t.token == token for t in transfers):
            recipients = sorted({t.recipient for t in transfers if t.token == token})
            reason = f"the MUSD went to {', '.join(recipients)}, not to the session's wallet"
        else:
            reason = "the transaction holds no MUSD transfer"
        return Verdict(DeliveryStatus.mismatch, reason, block_number=block, delivered_amount=Decimal(0))
    amount = from_units(delivered)
    if delivered < expected_units:
        reason = f"short delivery: {amount} MUSD sent, {from_units(expected_units)} MUSD expected"
        return Verdict(DeliveryStatus.mismatch, reason, block_number=block, delivered_amount=amount)
    depth = max(await chain.block_number() - block + 1, 0)
    if depth < confirmations:
        return Verdict(
            DeliveryStatus.pending,
            f"{depth} of {confirmations} confirmations",
            block_number=block,
            confirmations=depth,
            delivered_amount=amount,
        )
    return Verdict(DeliveryStatus.verified, None, block_number=block, confirmations=depth, delivered_amount=amount)
