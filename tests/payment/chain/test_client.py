"""ChainClient through the pool against a real anvil: decoded reads, sends, receipts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from eth_utils.hexadecimal import encode_hex
from pydantic import SecretStr

from payment.chain.client import ChainClient
from payment.chain.errors import RpcError, RpcErrorKind
from payment.chain.pool import ProviderPool
from payment.core.config import RpcProvider, Settings
from sandbox.chain.local import LocalChain, running_chain
from tests.payment.chain.conftest import Rig

pytestmark = pytest.mark.integration

BUYER = "0x52908400098527886E0F7030069857D2E4169EE7"


def signed_transfer(chain: LocalChain, to: str, amount: int, *, nonce: int) -> str:
    """A MUSD transfer from the treasury, signed locally."""
    data = "0xa9059cbb" + to[2:].lower().rjust(64, "0") + hex(amount)[2:].rjust(64, "0")
    account = Account.from_key(chain.treasury_key)
    tx: dict[str, Any] = {
        "chainId": chain.chain_id,
        "to": chain.musd_address,
        "data": data,
        "value": 0,
        "gas": 100_000,
        "gasPrice": chain.w3.eth.gas_price,
        "nonce": nonce,
    }
    return str(account.sign_transaction(tx).raw_transaction.to_0x_hex())


def test_reads_are_decoded(rig: Rig) -> None:
    client = ChainClient(rig.pool())
    chain = rig.chain
    assert rig.run(client.chain_id()) == 31611
    assert rig.run(client.block_number()) == chain.block_number()
    assert rig.run(client.gas_price()) > 0
    assert rig.run(client.get_balance(chain.treasury_address)) == chain.btc_balance(chain.treasury_address)
    assert rig.run(client.get_balance(BUYER.lower())) == 0  # any address form is accepted
    assert rig.run(client.erc20_balance(chain.musd_address, chain.treasury_address)) == chain.musd_balance(
        chain.treasury_address
    )
    assert rig.run(client.erc20_balance(chain.musd_address, BUYER)) == 0
    pending = chain.w3.eth.get_transaction_count(chain.treasury_address, "pending")
    assert rig.run(client.get_transaction_count(chain.treasury_address)) == pending
    assert rig.run(client.get_transaction_count(chain.treasury_address, 0)) == 0


def test_a_transfer_sent_then_its_receipt_and_transaction(rig: Rig) -> None:
    chain = rig.chain
    client = ChainClient(rig.pool())
    nonce = rig.run(client.get_transaction_count(chain.treasury_address))
    raw = signed_transfer(chain, BUYER, 5 * 10**18, nonce=nonce)

    tx_hash = rig.run(client.send_raw_transaction(raw))

    assert tx_hash == encode_hex(keccak(hexstr=raw))
    receipt = rig.run(client.get_transaction_receipt(tx_hash))
    assert receipt is not None
    assert receipt["status"] == 1
    assert receipt["transactionHash"] == tx_hash
    assert isinstance(receipt["blockNumber"], int)
    assert isinstance(receipt["gasUsed"], int)
    assert receipt["from"] == chain.treasury_address
    assert receipt["to"] == chain.musd_address
    (transfer_log,) = receipt["logs"]
    assert transfer_log["address"] == chain.musd_address
    assert isinstance(transfer_log["logIndex"], int)
    transaction = rig.run(client.get_transaction(tx_hash.upper().replace("0X", "0x")))
    assert transaction is not None
    assert transaction["nonce"] == nonce
    assert transaction["from"] == chain.treasury_address
    assert transaction["value"] == 0
    assert rig.run(client.erc20_balance(chain.musd_address, BUYER)) == 5 * 10**18

    # The same transaction again: its nonce is spent, which is the node's answer, not retried elsewhere.
    rig.reset_stats()
    with pytest.raises(RpcError) as caught:
        rig.run(client.send_raw_transaction(raw))
    assert caught.value.kind is RpcErrorKind.jsonrpc_error
    assert not caught.value.retryable
    assert rig.calls(rig.public) == 0


def test_unknown_transactions_are_none(rig: Rig) -> None:
    client = ChainClient(rig.pool())
    unknown = "0x" + "ab" * 32
    assert rig.run(client.get_transaction_receipt(unknown)) is None
    assert rig.run(client.get_transaction(unknown)) is None
    with pytest.raises(ValueError, match="not a transaction hash"):
        rig.run(client.get_transaction("0x1234"))


def test_erc20_balance_of_an_address_without_code_is_an_invalid_response(rig: Rig) -> None:
    client = ChainClient(rig.pool())
    with pytest.raises(RpcError) as caught:
        rig.run(client.erc20_balance(BUYER, rig.chain.treasury_address))
    assert caught.value.kind is RpcErrorKind.invalid_response


def test_a_transaction_the_node_already_has_returns_its_hash() -> None:
    from tests.sandbox.chain.support import require_anvil

    require_anvil()
    with running_chain(automine=False) as chain:
        settings = Settings(environment="test", rpc_providers=[RpcProvider(name="local", url=SecretStr(chain.rpc_url))])

        async def scenario() -> tuple[str, str]:
            async with ProviderPool.from_settings(settings) as pool:
                client = ChainClient(pool)
                nonce = await client.get_transaction_count(chain.treasury_address)
                raw = signed_transfer(chain, BUYER, 1, nonce=nonce)
                first = await client.send_raw_transaction(raw)
                again = await client.send_raw_transaction(bytes.fromhex(raw[2:]))  # anvil: "already imported"
                return first, again

        first, again = asyncio.run(scenario())
        assert first == again
