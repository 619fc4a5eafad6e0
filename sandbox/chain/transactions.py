"""Signing and sending transactions from local keys, safely from several threads.

Nonces are tracked here rather than asked of the node each time: two threads asking at once would get the
same pending nonce, and one transfer would replace the other. A send that fails forgets the tracked nonce,
so the next one asks the node again (the failed transaction may or may not have reached the pool).
"""

from __future__ import annotations

import threading
from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.types import TxReceipt

__all__ = ["Sender", "TransactionFailedError", "connect"]

# Covers an ERC-20 transfer to a fresh address (~52k), a mint (~70k) and a permit (~80k) with a margin;
# sending a fixed limit saves an eth_estimateGas round trip per transaction.
DEFAULT_GAS = 150_000
RECEIPT_POLL_SECONDS = 0.02  # automined receipts exist as soon as the send returns; poll often


class TransactionFailedError(RuntimeError):
    """The transaction was mined but reverted."""

    def __init__(self, tx_hash: str, receipt: TxReceipt) -> None:
        super().__init__(f"transaction {tx_hash} reverted (block {receipt['blockNumber']})")
        self.tx_hash = tx_hash
        self.receipt = receipt


def connect(rpc_url: str, *, timeout: float = 10.0) -> Web3:
    """A web3 client without web3's own retries: the sandbox reports failures, it does not hide them."""
    provider = Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
    return Web3(provider)


class Sender:
    """Signs with local keys and sends raw transactions to one chain."""

    def __init__(self, w3: Web3, chain_id: int) -> None:
        self.w3 = w3
        self.chain_id = chain_id
        self._lock = threading.Lock()
        self._next_nonce: dict[ChecksumAddress, int] = {}

    def send(self, key: str, *, to: str | None, data: str = "0x", value: int = 0, gas: int = DEFAULT_GAS) -> HexStr:
        """Sign and send (`to=None` creates a contract); returns the tx hash without waiting for it to be mined."""
        account: LocalAccount = Account.from_key(key)
        tx: dict[str, Any] = {"chainId": self.chain_id, "data": data, "value": value, "gas": gas}
        if to is not None:
            tx["to"] = Web3.to_checksum_address(to)
        with self._lock:  # nonce allocation and send in one step, so nonces reach the node in order
            for attempt in range(2):
                nonce = self._next_nonce.get(account.address)
                if nonce is None:
                    nonce = self.w3.eth.get_transaction_count(account.address, "pending")
                # Legacy pricing works on anvil and on Mezo alike; one eth_gasPrice per send keeps up with
                # the base fee.
                signed = account.sign_transaction({**tx, "nonce": nonce, "gasPrice": self.w3.eth.gas_price})
                try:
                    tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
                except Exception as exc:
                    self._next_nonce.pop(account.address, None)
                    # Another process used the key since we counted (e.g. two handles on one CLI chain):
                    # count again, once.
                    if attempt == 0 and isinstance(exc, Web3RPCError) and "nonce too low" in str(exc):
                        continue
                    raise
                self._next_nonce[account.address] = nonce + 1
                break
        return cast(HexStr, tx_hash.to_0x_hex())

    def wait(self, tx_hash: str, *, timeout: float = 30.0) -> TxReceipt:
        """The receipt once mined; TransactionFailedError if the transaction reverted."""
        receipt = self.w3.eth.wait_for_transaction_receipt(
            HexBytes(tx_hash), timeout=timeout, poll_latency=RECEIPT_POLL_SECONDS
        )
        if receipt["status"] != 1:
            raise TransactionFailedError(tx_hash, receipt)
        return receipt

    def forget_nonces(self) -> None:
        """Ask the node again next time (after evm_revert, or when another program used the same keys)."""
        with self._lock:
            self._next_nonce.clear()
