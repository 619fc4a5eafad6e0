"""A Stripe emulator fulfiller that really delivers: an MUSD transfer from the treasury on the local chain.

It satisfies `sandbox.stripe.fulfillment.Fulfiller` structurally (no import needed, and none of the
emulator's code depends on this one). The emulator calls it in a worker thread as a session enters
`fulfillment_complete` and retries it if it raises; a transfer already sent for a session is not sent again
on such a retry, only waited for, so a slow receipt cannot pay the buyer twice.
"""

from __future__ import annotations

import threading
from typing import Any

from eth_typing import HexStr
from web3 import Web3

from sandbox.chain.local import LocalChain
from sandbox.chain.musd import to_units

__all__ = ["ChainFulfiller"]


class ChainFulfiller:
    def __init__(self, chain: LocalChain, *, receipt_timeout: float = 30.0) -> None:
        self.chain = chain
        self.receipt_timeout = receipt_timeout
        self._sent: dict[str, HexStr] = {}  # session id -> transfer sent but not yet seen mined
        self._lock = threading.Lock()

    def fulfill(self, session: dict[str, Any]) -> str:
        """Transfer `destination_amount` MUSD to the session's wallet; the tx hash once mined."""
        details = session.get("transaction_details") or {}
        currency = details.get("destination_currency")
        if currency != "musd":  # paying MUSD for another currency would hide a routing bug
            raise ValueError(f"session {session.get('id')} buys {currency!r}, this fulfiller delivers only musd")
        wallet = details.get("wallet_address")
        if not isinstance(wallet, str) or not Web3.is_address(wallet):
            raise ValueError(f"session {session.get('id')} has no EVM wallet_address: {wallet!r}")
        amount = to_units(str(details.get("destination_amount")))
        key = str(session.get("id"))
        with self._lock:  # one transfer per session even if the emulator retries concurrently
            tx_hash = self._sent.get(key)
            if tx_hash is None:
                tx_hash = self.chain.musd.transfer(wallet, amount, key=self.chain.treasury_key, wait=False)
                self._sent[key] = tx_hash
        if not self.chain.automine:
            self.chain.mine()
        self.chain.sender.wait(tx_hash, timeout=self.receipt_timeout)
        with self._lock:  # delivered: the emulator never asks again, so only failed sessions stay remembered
            self._sent.pop(key, None)
        return tx_hash
