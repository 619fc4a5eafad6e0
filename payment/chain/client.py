"""Typed chain reads and sends for the delivery code, over the provider pool.

Every helper is one JSON-RPC call through `ProviderPool.request` (failover, retries, spans and metrics
included) with its result decoded: quantities to `int`, addresses checksummed, hashes and data as 0x-prefixed
hex strings. Errors are the pool's `RpcError`s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_typing import HexStr
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from eth_utils.conversions import to_bytes, to_hex, to_int
from eth_utils.crypto import keccak
from eth_utils.hexadecimal import add_0x_prefix, encode_hex, is_hex

from payment.chain.errors import RpcError, RpcErrorKind
from payment.chain.pool import ProviderPool

__all__ = ["BlockId", "ChainClient"]

BlockId = int | str  # a block number, or "latest" / "pending" / "safe" / "finalized" / "earliest"

_BALANCE_OF: Final = function_signature_to_4byte_selector("balanceOf(address)")

# How nodes say they already have this exact transaction (geth, besu, erigon/nethermind, anvil/reth).
_ALREADY_KNOWN = ("already known", "known transaction", "alreadyknown", "already imported")

_TX_QUANTITIES = frozenset(
    {
        "blockNumber",
        "chainId",
        "gas",
        "gasPrice",
        "maxFeePerGas",
        "maxPriorityFeePerGas",
        "maxFeePerBlobGas",
        "nonce",
        "transactionIndex",
        "type",
        "v",
        "value",
        "yParity",
    }
)
_RECEIPT_QUANTITIES = frozenset(
    {
        "blockNumber",
        "cumulativeGasUsed",
        "effectiveGasPrice",
        "gasUsed",
        "status",
        "transactionIndex",
        "type",
        "blobGasUsed",
        "blobGasPrice",
    }
)
_LOG_QUANTITIES = frozenset({"blockNumber", "logIndex", "transactionIndex"})
_ADDRESSES = frozenset({"from", "to", "contractAddress", "address"})


class ChainClient:
    def __init__(self, pool: ProviderPool) -> None:
        self.pool = pool

    async def chain_id(self) -> int:
        return _quantity(await self.pool.request("eth_chainId"))

    async def block_number(self) -> int:
        return _quantity(await self.pool.request("eth_blockNumber"))

    async def gas_price(self) -> int:
        return _quantity(await self.pool.request("eth_gasPrice"))

    async def get_balance(self, address: str, block: BlockId = "latest") -> int:
        """Native balance (BTC on Mezo, 18 decimals) in wei."""
        return _quantity(await self.pool.request("eth_getBalance", [to_checksum_address(address), _block(block)]))

    async def get_transaction_count(self, address: str, block: BlockId = "pending") -> int:
        """The account's next nonce (`pending` counts transactions in the node's pool)."""
        result = await self.pool.request("eth_getTransactionCount", [to_checksum_address(address), _block(block)])
        return _quantity(result)

    async def get_transaction(self, tx_hash: str) -> dict[str, Any] | None:
        """The transaction, or None when the provider does not know it."""
        result = await self.pool.request("eth_getTransactionByHash", [_hash(tx_hash)])
        return None if result is None else _decoded(result, _TX_QUANTITIES)

    async def get_transaction_receipt(self, tx_hash: str) -> dict[str, Any] | None:
        """The receipt (`status` 1: success, 0: reverted), or None while the transaction is not mined or unknown."""
        result = await self.pool.request("eth_getTransactionReceipt", [_hash(tx_hash)])
        if result is None:
            return None
        receipt = _decoded(result, _RECEIPT_QUANTITIES)
        receipt["logs"] = [_decoded(entry, _LOG_QUANTITIES) for entry in _dicts(result.get("logs") or [])]
        return receipt

    async def get_logs(
        self, *, address: str, topics: list[str | None], from_block: int, to_block: int
    ) -> list[dict[str, Any]]:
        """Logs of a contract between two blocks (inclusive) matching `topics` (None: any value there)."""
        query = {
            "address": to_checksum_address(address),
            "topics": topics,
            "fromBlock": to_hex(from_block),
            "toBlock": to_hex(to_block),
        }
        result = await self.pool.request("eth_getLogs", [query])
        if not isinstance(result, list):
            raise _invalid("eth_getLogs", "the answer is not a list")
        return [_decoded(entry, _LOG_QUANTITIES) for entry in _dicts(result)]

    async def erc20_balance(self, token: str, address: str, block: BlockId = "latest") -> int:
        """`balanceOf(address)` of an ERC-20 token (MUSD: 18 decimals), by eth_call."""
        data = encode_hex(_BALANCE_OF + abi_encode(["address"], [to_checksum_address(address)]))
        call = {"to": to_checksum_address(token), "data": data}
        result = await self.pool.request("eth_call", [call, _block(block)])
        if not isinstance(result, str) or not is_hex(result):
            raise _invalid("eth_call", "balanceOf answered no hex data")
        try:
            (balance,) = abi_decode(["uint256"], to_bytes(hexstr=HexStr(result)))
        except Exception:  # eth_abi's decoding errors (e.g. an address without code answers 0x)
            raise _invalid("eth_call", f"balanceOf answered {len(result) // 2 - 1} bytes, not a uint256") from None
        return int(balance)

    async def send_raw_transaction(self, raw_hex: str | bytes) -> str:
        """Broadcast a signed transaction; its hash.

        A retry after a timeout may reach a provider that already has the transaction ("already known"): that
        is the send having worked, so its hash (keccak of the raw bytes, for every transaction type) is
        returned. Other refusals (nonce too low, underpriced, ...) are raised.
        """
        raw_bytes = raw_hex if isinstance(raw_hex, bytes) else to_bytes(hexstr=HexStr(raw_hex))
        try:
            result = await self.pool.request("eth_sendRawTransaction", [encode_hex(raw_bytes)])
        except RpcError as exc:
            message = (exc.rpc_message or "").lower()
            if exc.kind is RpcErrorKind.jsonrpc_error and any(marker in message for marker in _ALREADY_KNOWN):
                return encode_hex(keccak(raw_bytes))
            raise
        if not isinstance(result, str) or not is_hex(result):
            raise _invalid("eth_sendRawTransaction", "no transaction hash in the answer")
        return add_0x_prefix(HexStr(result.lower()))


def _quantity(value: Any) -> int:
    if not isinstance(value, str) or not is_hex(value):
        raise _invalid("", f"expected a hex quantity, got {type(value).__name__}")
    return to_int(hexstr=HexStr(value))


def _block(block: BlockId) -> str:
    return to_hex(block) if isinstance(block, int) else block


def _hash(tx_hash: str) -> str:
    value = add_0x_prefix(HexStr(tx_hash.strip()))
    if len(value) != 66 or not is_hex(value):
        raise ValueError(f"not a transaction hash: {tx_hash!r}")
    return value.lower()


def _dicts(items: Iterable[Any]) -> list[dict[str, Any]]:
    return [item for item in items if isinstance(item, dict)]


def _decoded(obj: Any, quantities: frozenset[str]) -> dict[str, Any]:
    """A JSON-RPC object with its quantities as ints and its addresses checksummed; the rest as it came."""
    if not isinstance(obj, dict):
        raise _invalid("", f"expected an object, got {type(obj).__name__}")
    decoded: dict[str, Any] = {}
    for key, value in obj.items():
        if key in quantities and isinstance(value, str) and is_hex(value):
            decoded[key] = to_int(hexstr=HexStr(value))
        elif key in _ADDRESSES and isinstance(value, str) and len(value) == 42:
            decoded[key] = to_checksum_address(value)
        else:
            decoded[key] = value
    return decoded


def _invalid(method: str, detail: str) -> RpcError:
    return RpcError(
        f"{method or 'RPC result'}: {detail}", kind=RpcErrorKind.invalid_response, retryable=False, method=method
    )
