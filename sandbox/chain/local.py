"""A local Mezo stand-in: anvil with chain id 31611, MUSD deployed, and a funded treasury.

    with running_chain() as chain:               # port 0: a free port
        chain.transfer_musd(buyer, 5 * 10**18)   # from the treasury, mined before it returns
        chain.musd_balance(buyer)

`start_chain(config)` is the same without the `with` (the CLI uses it; call `stop()`), and
`LocalChain.attach(info)` drives a chain another process started, from the JSON line it printed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any

from eth_account import Account
from eth_typing import ChecksumAddress, HexStr
from web3 import Web3
from web3.types import RPCEndpoint

from sandbox.chain.anvil import Anvil, AnvilError, anvil_arguments, start_anvil
from sandbox.chain.artifact import musd_artifact
from sandbox.chain.config import ChainConfig
from sandbox.chain.musd import DECIMALS, MusdClient, to_units
from sandbox.chain.transactions import Sender, connect

__all__ = ["LocalChain", "running_chain", "start_chain"]

_DEPLOY_GAS = 3_000_000
_READY_TIMEOUT = 10.0


@dataclass
class LocalChain:
    rpc_url: str
    chain_id: int
    musd_address: ChecksumAddress
    deployer_address: ChecksumAddress
    deployer_key: str = field(repr=False)
    treasury_address: ChecksumAddress
    treasury_key: str = field(repr=False)
    automine: bool
    musd: MusdClient = field(repr=False)
    anvil: Anvil | None = field(default=None, repr=False)  # None when attached to someone else's chain

    @property
    def w3(self) -> Web3:
        return self.musd.w3

    @property
    def sender(self) -> Sender:
        return self.musd.sender

    def transfer_musd(self, to: str, amount_wei: int, *, from_key: str | None = None, wait: bool = True) -> HexStr:
        """Send MUSD (from the treasury unless `from_key`); with `wait`, return once mined (mining a block
        first when the chain does not automine)."""
        tx_hash = self.musd.transfer(to, amount_wei, key=from_key or self.treasury_key, wait=False)
        return self._settle(tx_hash, wait)

    def mint_musd(self, to: str, amount_wei: int, *, wait: bool = True) -> HexStr:
        tx_hash = self.musd.mint(to, amount_wei, key=self.deployer_key, wait=False)
        return self._settle(tx_hash, wait)

    def musd_balance(self, owner: str) -> int:
        return self.musd.balance_of(owner)

    def btc_balance(self, owner: str) -> int:
        """Native balance in wei (BTC has 18 decimals on Mezo)."""
        return self.w3.eth.get_balance(Web3.to_checksum_address(owner))

    def set_btc_balance(self, owner: str, amount_wei: int) -> None:
        self._rpc("anvil_setBalance", [Web3.to_checksum_address(owner), hex(amount_wei)])

    def block_number(self) -> int:
        return self.w3.eth.block_number

    def mine(self, blocks: int = 1) -> int:
        """Mine `blocks` blocks now (whatever the mining mode); returns the new head's number."""
        self._rpc("anvil_mine", [hex(blocks)])
        return self.block_number()

    def info(self) -> dict[str, Any]:
        """What `musdpay sandbox chain` prints: enough for another process to use the chain (dev keys included)."""
        return {
            "rpcUrl": self.rpc_url,
            "chainId": self.chain_id,
            "musdAddress": self.musd_address,
            "musdDecimals": DECIMALS,
            "treasuryAddress": self.treasury_address,
            "treasuryPrivateKey": self.treasury_key,
            "deployerAddress": self.deployer_address,
            "deployerPrivateKey": self.deployer_key,
            "automine": self.automine,
        }

    @classmethod
    def attach(cls, info: Mapping[str, Any]) -> LocalChain:
        """A handle on a chain started elsewhere, from its `info()` (e.g. the CLI's JSON line)."""
        sender = Sender(connect(info["rpcUrl"]), int(info["chainId"]))
        return cls(
            rpc_url=info["rpcUrl"],
            chain_id=int(info["chainId"]),
            musd_address=Web3.to_checksum_address(info["musdAddress"]),
            deployer_address=Web3.to_checksum_address(info["deployerAddress"]),
            deployer_key=info["deployerPrivateKey"],
            treasury_address=Web3.to_checksum_address(info["treasuryAddress"]),
            treasury_key=info["treasuryPrivateKey"],
            automine=bool(info.get("automine", True)),
            musd=MusdClient(sender, info["musdAddress"]),
        )

    def stop(self) -> None:
        """Stop anvil if this handle started it."""
        if self.anvil is not None:
            self.anvil.stop()

    def __enter__(self) -> LocalChain:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _settle(self, tx_hash: HexStr, wait: bool) -> HexStr:
        if wait:
            if not self.automine:
                self.mine()
            self.sender.wait(tx_hash)
        return tx_hash

    def _rpc(self, method: str, params: list[Any]) -> Any:
        response = self.w3.provider.make_request(RPCEndpoint(method), params)
        if "error" in response:
            raise AnvilError(f"{method} failed: {response['error']}")
        return response.get("result")


def start_chain(config: ChainConfig) -> LocalChain:
    """Start anvil, deploy MUSD and fund the treasury; the caller stops it (`stop()` or `with`)."""
    args = anvil_arguments(
        host=config.host,
        port=config.port,
        chain_id=config.chain_id,
        automine=config.automine,
        block_time=config.block_time,
    )
    anvil = start_anvil(args, binary=config.anvil_binary, timeout=config.start_timeout)
    try:
        return _set_up(anvil, config)
    except BaseException:
        anvil.stop()
        raise


@contextmanager
def running_chain(port: int = 0, *, automine: bool = True, block_time: float | None = None) -> Iterator[LocalChain]:
    """A fresh local chain for the duration of the block (other settings: `start_chain(ChainConfig(...))`)."""
    with start_chain(ChainConfig(port=port, automine=automine, block_time=block_time)) as chain:
        yield chain


def _set_up(anvil: Anvil, config: ChainConfig) -> LocalChain:
    w3 = connect(anvil.url)
    _wait_for_chain_id(w3, anvil, config.chain_id)
    sender = Sender(w3, config.chain_id)
    deployer = Account.from_key(config.deployer_key)
    treasury = Account.from_key(config.treasury_key)
    for address, btc in ((deployer.address, Decimal(10)), (treasury.address, config.treasury_btc)):
        w3.provider.make_request(RPCEndpoint("anvil_setBalance"), [address, hex(to_units(btc))])

    def mined(tx_hash: HexStr) -> None:
        if not config.automine:  # no block would come (or only at the next interval): mine it now
            w3.provider.make_request(RPCEndpoint("anvil_mine"), ["0x1"])
        sender.wait(tx_hash)

    deploy = sender.send(config.deployer_key, to=None, data=musd_artifact().bytecode, gas=_DEPLOY_GAS)
    mined(deploy)
    address = w3.eth.get_transaction_receipt(deploy)["contractAddress"]
    if address is None:
        raise AnvilError(f"MUSD deployment {deploy} created no contract")
    musd = MusdClient(sender, address)
    mined(musd.mint(treasury.address, to_units(config.treasury_musd), key=config.deployer_key, wait=False))
    return LocalChain(
        rpc_url=anvil.url,
        chain_id=config.chain_id,
        musd_address=musd.address,
        deployer_address=deployer.address,
        deployer_key=config.deployer_key,
        treasury_address=treasury.address,
        treasury_key=config.treasury_key,
        automine=config.automine,
        musd=musd,
        anvil=anvil,
    )


def _wait_for_chain_id(w3: Web3, anvil: Anvil, expected: int) -> None:
    # "Listening" is printed once the socket is bound; the first answer proves the RPC is being served.
    deadline = time.monotonic() + _READY_TIMEOUT
    while True:
        try:
            chain_id = w3.eth.chain_id
        except Exception as exc:  # connection refused/reset while anvil finishes starting
            if not anvil.alive() or time.monotonic() > deadline:
                raise AnvilError(f"anvil at {anvil.url} does not answer eth_chainId: {exc}\n{anvil.output()}") from exc
            time.sleep(0.01)
            continue
        if chain_id != expected:
            raise AnvilError(f"anvil answered chain id {chain_id}, expected {expected}")
        return
