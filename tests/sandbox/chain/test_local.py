"""The local chain against real anvil: id, MUSD, treasury, transfers and their events, mining modes."""

from __future__ import annotations

import threading
import time

import pytest
from eth_account import Account
from web3 import Web3

from sandbox.chain.anvil import AnvilError
from sandbox.chain.config import ChainConfig
from sandbox.chain.local import LocalChain, running_chain, start_chain
from sandbox.chain.transactions import TransactionFailedError
from tests.sandbox.chain.support import require_anvil
from tests.support.services import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

BUYER = "0x52908400098527886E0F7030069857D2E4169EE7"
MUSD = 10**18


def test_the_chain_is_mezo_testnet_with_musd_and_a_funded_treasury(chain: LocalChain) -> None:
    assert chain.chain_id == 31611
    assert chain.w3.eth.chain_id == 31611
    assert chain.w3.net.version == "31611"
    assert chain.w3.eth.get_code(chain.musd_address) != b""
    assert chain.musd.call("name") == "Mezo USD"
    assert chain.musd.call("symbol") == "MUSD"
    assert chain.musd.call("decimals") == 18
    assert chain.musd.call("minter") == chain.deployer_address
    assert chain.musd.call("totalSupply") == 1_000_000 * MUSD
    assert chain.musd_balance(chain.treasury_address) == 1_000_000 * MUSD
    assert chain.btc_balance(chain.treasury_address) == 100 * 10**18
    assert chain.treasury_address != chain.deployer_address


def test_a_transfer_moves_musd_emits_transfer_and_costs_gas_in_btc(chain: LocalChain) -> None:
    btc_before = chain.btc_balance(chain.treasury_address)
    tx_hash = chain.transfer_musd(BUYER, 25 * MUSD)
    receipt = chain.w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    assert chain.musd.transfer_events(receipt) == [{"from": chain.treasury_address, "to": BUYER, "value": 25 * MUSD}]
    assert chain.musd_balance(BUYER) == 25 * MUSD
    assert chain.musd_balance(chain.treasury_address) == (1_000_000 - 25) * MUSD
    gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert gas_cost > 0
    assert chain.btc_balance(chain.treasury_address) == btc_before - gas_cost


def test_transferring_more_than_the_balance_reverts(chain: LocalChain) -> None:
    poor = Account.create()
    chain.set_btc_balance(poor.address, 10**18)  # gas, but no MUSD
    with pytest.raises(TransactionFailedError):
        chain.transfer_musd(BUYER, 1, from_key=poor.key.to_0x_hex())
    assert chain.musd_balance(BUYER) == 0


def test_only_the_deployer_mints(chain: LocalChain) -> None:
    with pytest.raises(TransactionFailedError):
        chain.musd.mint(BUYER, MUSD, key=chain.treasury_key)
    tx_hash = chain.mint_musd(BUYER, 7 * MUSD)
    events = chain.musd.transfer_events(chain.w3.eth.get_transaction_receipt(tx_hash))
    assert events == [{"from": "0x" + "00" * 20, "to": BUYER, "value": 7 * MUSD}]
    assert chain.musd.call("totalSupply") == 1_000_007 * MUSD


def test_permit_sets_an_allowance_from_a_signature_once(chain: LocalChain) -> None:
    owner = Account.from_key(chain.treasury_key)
    spender = chain.deployer_address
    deadline = chain.w3.eth.get_block("latest")["timestamp"] + 3600
    signed = Account.sign_typed_data(
        chain.treasury_key,
        domain_data={
            "name": "Mezo USD",
            "version": "1",
            "chainId": chain.chain_id,
            "verifyingContract": chain.musd_address,
        },
        message_types={
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ]
        },
        message_data={"owner": owner.address, "spender": spender, "value": 3 * MUSD, "nonce": 0, "deadline": deadline},
    )
    args = (owner.address, spender, 3 * MUSD, deadline, signed.v, signed.r.to_bytes(32), signed.s.to_bytes(32))
    chain.musd.send("permit", *args, key=chain.deployer_key)  # a relayer submits it, paying the gas
    assert chain.musd.call("allowance", owner.address, spender) == 3 * MUSD
    assert chain.musd.call("nonces", owner.address) == 1
    with pytest.raises(TransactionFailedError):  # the nonce moved on: a replay is refused
        chain.musd.send("permit", *args, key=chain.deployer_key)
    chain.musd.send("transferFrom", owner.address, BUYER, 2 * MUSD, key=chain.deployer_key)
    assert chain.musd_balance(BUYER) == 2 * MUSD
    assert chain.musd.call("allowance", owner.address, spender) == 1 * MUSD


def test_concurrent_transfers_from_one_key_all_land(chain: LocalChain) -> None:
    # Nonces are allocated by the client: threads sending at once must not replace each other's transfers.
    recipients = [Account.create().address for _ in range(12)]
    errors: list[BaseException] = []

    def send(to: str) -> None:
        try:
            chain.transfer_musd(to, MUSD)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(to,)) for to in recipients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert [chain.musd_balance(to) for to in recipients] == [MUSD] * len(recipients)


def test_without_automine_a_transfer_waits_for_a_block() -> None:
    require_anvil()
    with running_chain(automine=False) as chain:
        assert chain.musd_balance(chain.treasury_address) == 1_000_000 * MUSD  # set-up mined its own blocks
        head = chain.block_number()
        tx_hash = chain.transfer_musd(BUYER, MUSD, wait=False)
        assert chain.w3.eth.get_transaction(tx_hash)["blockNumber"] is None  # pending
        assert chain.block_number() == head
        assert chain.mine() == head + 1
        assert chain.sender.wait(tx_hash)["blockNumber"] == head + 1
        assert chain.musd_balance(BUYER) == MUSD
        assert chain.transfer_musd(BUYER, MUSD)  # wait=True mines the block itself
        assert chain.musd_balance(BUYER) == 2 * MUSD


def test_a_block_time_mines_empty_blocks_on_its_own() -> None:
    require_anvil()
    with running_chain(block_time=0.2) as chain:
        head = chain.block_number()
        wait_until(lambda: chain.block_number() >= head + 2, timeout=5, what="two interval blocks")
        started = time.monotonic()
        chain.transfer_musd(BUYER, MUSD)  # still automined: no wait for the next interval
        assert time.monotonic() - started < 0.2


def test_a_given_port_is_used_and_a_taken_one_is_an_error() -> None:
    require_anvil()
    port = free_port()
    with running_chain(port) as chain:
        assert chain.rpc_url == f"http://127.0.0.1:{port}"
        with pytest.raises(AnvilError, match="did not start listening"):
            start_chain(ChainConfig(port=port, start_timeout=10))


def test_another_process_can_attach_from_the_printed_info(chain: LocalChain) -> None:
    attached = LocalChain.attach(chain.info())
    # Both handles send from the treasury, each tracking nonces: the stale one recounts and still lands.
    for handle in (attached, chain, attached, chain):
        handle.transfer_musd(BUYER, MUSD)
    assert chain.musd_balance(BUYER) == 4 * MUSD
    attached.stop()  # not its anvil: nothing happens
    assert chain.anvil is not None
    assert chain.anvil.alive()


def test_the_chain_stops_and_frees_its_port() -> None:
    require_anvil()
    with running_chain() as chain:
        w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
        assert w3.is_connected()
    assert chain.anvil is not None
    assert not chain.anvil.alive()
    assert not Web3(Web3.HTTPProvider(chain.rpc_url, exception_retry_configuration=None)).is_connected()
