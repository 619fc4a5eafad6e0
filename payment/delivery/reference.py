"""The session reference a treasury transfer carries on chain: the session id after the `transfer` arguments.

An ERC-20 `transfer(address,uint256)` call is the 4-byte selector and two 32-byte words. We append the session
id (a UUID, its 16 bytes), which the token ignores (Solidity's decoder reads the words it needs and no further;
tests/payment/delivery/test_restore.py proves it with the MUSD contract on anvil). So the chain itself says which
session a transfer paid, and after a database restore the delivery rows can be rebuilt from the chain alone
(payment.delivery.recovery) instead of paying the buyer again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode

__all__ = ["REFERENCE_BYTES", "TRANSFER_SELECTOR", "TransferCall", "decode_transfer", "encode_transfer"]

TRANSFER_SELECTOR = bytes.fromhex("a9059cbb")  # transfer(address,uint256)
REFERENCE_BYTES = 16  # a UUID
_ARGUMENTS = 64  # two ABI words


@dataclass(frozen=True)
class TransferCall:
    """A decoded `transfer` call: recipient (lower case), units, and the session it names (None: no reference)."""

    recipient: str
    units: int
    session_id: str | None


def encode_transfer(recipient: str, units: int, session_id: str) -> bytes:
    """The calldata of a transfer of `units` to `recipient` that names `session_id` (a UUID) on chain."""
    try:
        reference = uuid.UUID(session_id).bytes
    except ValueError:
        # Session ids are uuid4 strings (payment.onramp.service); anything else would go out unprovable.
        raise ValueError(f"session id {session_id!r} is not a UUID: it cannot be carried on chain") from None
    return TRANSFER_SELECTOR + encode(["address", "uint256"], [recipient, units]) + reference


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    text = str(data or "").removeprefix("0x").removeprefix("0X")
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def decode_transfer(data: Any) -> TransferCall | None:
    """The `transfer` call in a transaction's input (hex or bytes), or None when the input is not one.

    A plain transfer (no trailing bytes, or trailing bytes that are not exactly one reference) decodes with
    `session_id` None: it pays someone, but the chain does not say for which session.
    """
    raw = _as_bytes(data)
    if len(raw) < 4 + _ARGUMENTS or raw[:4] != TRANSFER_SELECTOR:
        return None
    try:
        recipient, units = decode(["address", "uint256"], raw[4 : 4 + _ARGUMENTS])
    except Exception:  # eth_abi's decoding errors: not a well-formed transfer
        return None
    tail = raw[4 + _ARGUMENTS :]
    session_id = str(uuid.UUID(bytes=tail)) if len(tail) == REFERENCE_BYTES else None
    return TransferCall(recipient=str(recipient).lower(), units=int(units), session_id=session_id)
