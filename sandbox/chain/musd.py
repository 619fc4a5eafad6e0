"""The MUSD token seen from Python: balances, transfers, mints and their Transfer events.

Amounts are integers in the token's smallest unit (18 decimals) everywhere; `to_units` converts a decimal
string such as Stripe's `destination_amount` exactly, refusing anything that would need rounding.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from eth_typing import ChecksumAddress, HexStr
from web3 import Web3
from web3.logs import DISCARD
from web3.types import TxReceipt

from sandbox.chain.artifact import musd_artifact
from sandbox.chain.transactions import Sender

__all__ = ["DECIMALS", "MusdClient", "to_units"]

DECIMALS = 18


def to_units(amount: str | Decimal, decimals: int = DECIMALS) -> int:
    """'98.50' -> 98500000000000000000; ValueError for non-positive, non-finite or over-precise amounts."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {amount!r}") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"amount must be positive: {amount!r}")
    scaled = value.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"amount {amount!r} has more than {decimals} decimals")
    return int(scaled)


class MusdClient:
    """One deployed MUSD contract, read through `sender.w3` and written with local keys."""

    def __init__(self, sender: Sender, address: str) -> None:
        self.sender = sender
        self.w3 = sender.w3
        self.address: ChecksumAddress = Web3.to_checksum_address(address)
        self.contract = self.w3.eth.contract(address=self.address, abi=musd_artifact().abi)

    def balance_of(self, owner: str) -> int:
        balance: int = self.contract.functions.balanceOf(Web3.to_checksum_address(owner)).call()
        return balance

    def call(self, function: str, *args: Any) -> Any:
        """A view function by name, e.g. call("allowance", owner, spender)."""
        return self.contract.functions[function](*args).call()

    def send(self, function: str, *args: Any, key: str, wait: bool = True, timeout: float = 30.0) -> HexStr:
        """Call a state-changing function from `key`'s account; with `wait`, return once it is mined."""
        data = self.contract.encode_abi(function, args=list(args))
        tx_hash = self.sender.send(key, to=self.address, data=data)
        if wait:
            self.sender.wait(tx_hash, timeout=timeout)
        return tx_hash

    def transfer(self, to: str, amount: int, *, key: str, wait: bool = True, timeout: float = 30.0) -> HexStr:
        return self.send("transfer", Web3.to_checksum_address(to), amount, key=key, wait=wait, timeout=timeout)

    def mint(self, to: str, amount: int, *, key: str, wait: bool = True, timeout: float = 30.0) -> HexStr:
        return self.send("mint", Web3.to_checksum_address(to), amount, key=key, wait=wait, timeout=timeout)

    def transfer_events(self, receipt: TxReceipt) -> list[dict[str, Any]]:
        """The receipt's MUSD Transfer events as {"from", "to", "value"} (other contracts' logs ignored)."""
        events = self.contract.events.Transfer().process_receipt(receipt, errors=DISCARD)
        return [dict(event["args"]) for event in events if event["address"] == self.address]
