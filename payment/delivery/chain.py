"""What the delivery code needs of the chain: a few reads and one write, async.

`payment.chain.client.ChainClient` (over the provider pool) is the implementation; the delivery code depends
on this protocol only, so its rules are testable against any node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

__all__ = ["MUSD_DECIMALS", "ChainAccess", "as_int", "from_units", "to_units"]

MUSD_DECIMALS = 18
_UNIT = Decimal(10) ** MUSD_DECIMALS


class ChainAccess(Protocol):
    async def block_number(self) -> int: ...

    async def get_transaction_receipt(self, tx_hash: str) -> Mapping[str, Any] | None: ...

    async def get_transaction(self, tx_hash: str) -> Mapping[str, Any] | None: ...

    async def get_transaction_count(self, address: str, block: str = "pending") -> int: ...

    async def gas_price(self) -> int: ...

    async def get_balance(self, address: str) -> int: ...

    async def erc20_balance(self, token: str, address: str) -> int: ...

    async def send_raw_transaction(self, raw_hex: str) -> str: ...

    async def get_logs(
        self, *, address: str, topics: list[str | None], from_block: int, to_block: int
    ) -> Sequence[Mapping[str, Any]]: ...


def as_int(value: Any) -> int:
    """A JSON-RPC quantity ("0x1a") or an already decoded int."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a quantity")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.lower().startswith("0x") else int(value)
    if isinstance(value, (bytes, bytearray)):
        return int.from_bytes(value, "big")
    raise TypeError(f"not a quantity: {type(value).__name__}")


def to_units(amount: Decimal) -> int:
    """MUSD to its smallest unit; refuses amounts finer than 18 decimals rather than rounding money."""
    units = amount * _UNIT
    if units != units.to_integral_value():
        raise ValueError(f"{amount} has more than {MUSD_DECIMALS} decimals")
    return int(units)


def from_units(units: int) -> Decimal:
    return (Decimal(units) / _UNIT).normalize()
