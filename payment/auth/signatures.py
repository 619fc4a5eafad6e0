"""Whose signature is it: ECDSA recovery for externally owned accounts, EIP-1271 for smart accounts.

A smart account (Mezo Passport users sign from bitcoin wallets through one) cannot produce an ECDSA signature
of its own address; its contract answers `isValidSignature(hash, signature)` with the magic value 0x1626ba7e
when it accepts one. That needs the chain, reached through an injected `EthCall`: the application uses
`pool_eth_call` on its RPC provider pool (payment/chain/pool.py); `web3_eth_call` (web3's AsyncWeb3 on one
URL) serves where no pool runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct
from eth_utils.crypto import keccak

if TYPE_CHECKING:
    from payment.chain.pool import ProviderPool

__all__ = [
    "EIP1271_MAGIC",
    "CallReverted",
    "ChainUnavailable",
    "EthCall",
    "is_valid_signature",
    "message_hash",
    "pool_eth_call",
    "web3_eth_call",
]

log = logging.getLogger(__name__)

EIP1271_MAGIC = bytes.fromhex("1626ba7e")
_SELECTOR = keccak(text="isValidSignature(bytes32,bytes)")[:4]
assert _SELECTOR == EIP1271_MAGIC
MAX_SIGNATURE_BYTES = 2048  # smart-account signatures can be longer than 65 bytes, not without bound

EthCall = Callable[[str, bytes], Awaitable[bytes]]
"""`eth_call(to, data)` at the latest block: the returned bytes, CallReverted, or ChainUnavailable."""


class CallReverted(Exception):
    """The call executed and reverted (or the node refused it as a call): the contract said no."""


class ChainUnavailable(Exception):
    """The chain could not be asked (connection, timeout, a server error): nothing is known."""


def message_hash(message: str) -> bytes:
    """The EIP-191 personal-message hash, what both an EOA and an EIP-1271 account sign."""
    digest: bytes = _hash_eip191_message(encode_defunct(text=message))
    return digest


def _recover(message: str, signature: bytes) -> str | None:
    try:
        recovered: str = Account.recover_message(encode_defunct(text=message), signature=signature)
    except Exception:  # a malformed signature (bad v, s out of range...) recovers nothing
        return None
    return recovered


async def is_valid_signature(message: str, signature: bytes, address: str, eth_call: EthCall) -> bool:
    """True when `address` signed `message`: by ECDSA, or by its EIP-1271 contract's verdict."""
    if not signature or len(signature) > MAX_SIGNATURE_BYTES:
        return False
    if len(signature) == 65 and (_recover(message, signature) or "").lower() == address.lower():
        return True
    data = _SELECTOR + encode(["bytes32", "bytes"], [message_hash(message), signature])
    try:
        result = await eth_call(address, data)
    except CallReverted:
        return False
    # An EOA or an empty account returns no data; a contract returns bytes4, left-aligned in a 32-byte word.
    return len(result) >= 32 and result[:4] == EIP1271_MAGIC


def pool_eth_call(pool: ProviderPool) -> EthCall:
    """An EthCall through the RPC provider pool (health-checked providers, failover, bounded retries, metrics)."""
    from payment.chain.errors import RpcError, RpcErrorKind

    async def eth_call(to: str, data: bytes) -> bytes:
        try:
            result = await pool.request("eth_call", [{"to": to, "data": "0x" + data.hex()}, "latest"])
        except RpcError as exc:
            reverted = exc.code == 3 or "revert" in (exc.rpc_message or "").lower()
            if exc.kind is RpcErrorKind.jsonrpc_error and reverted:
                raise CallReverted(exc.rpc_message or "reverted") from exc
            log.warning("EIP-1271 check could not reach the chain: %s", exc.kind.value)
            raise ChainUnavailable(exc.kind.value) from exc
        if not isinstance(result, str) or not result.startswith("0x") or len(result) % 2:
            raise ChainUnavailable("invalid eth_call answer")
        try:
            return bytes.fromhex(result[2:])
        except ValueError as exc:
            raise ChainUnavailable("invalid eth_call answer") from exc

    return eth_call


def web3_eth_call(url: str, *, timeout: float) -> EthCall:
    """An EthCall on one JSON-RPC endpoint with web3's AsyncWeb3 (no retries: the caller reports failure)."""
    from web3 import AsyncHTTPProvider, AsyncWeb3
    from web3.exceptions import ContractLogicError, Web3RPCError

    async def eth_call(to: str, data: bytes) -> bytes:
        provider = AsyncHTTPProvider(url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
        w3 = AsyncWeb3(provider)
        try:
            params: Any = {"to": AsyncWeb3.to_checksum_address(to), "data": "0x" + data.hex()}
            return bytes(await w3.eth.call(params))
        except ContractLogicError as exc:
            raise CallReverted(str(exc)) from exc
        except Web3RPCError as exc:
            # A revert comes back as a JSON-RPC error; any other error (rate limit, node trouble) says nothing.
            if "revert" in str(exc).lower():
                raise CallReverted(str(exc)) from exc
            log.warning("EIP-1271 check failed at the RPC provider: %s", type(exc).__name__)
            raise ChainUnavailable(type(exc).__name__) from exc
        except Exception as exc:  # connection refused, timeout, HTTP 5xx, malformed answer
            log.warning("EIP-1271 check could not reach the chain: %s", type(exc).__name__)
            raise ChainUnavailable(type(exc).__name__) from exc
        finally:
            await provider.disconnect()

    return eth_call
