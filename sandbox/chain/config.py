"""Settings of one local chain.

The CLI builds a `ChainConfig` from its flags; tests build one directly. Nothing here reads the environment:
the local chain is a development stand-in and takes everything explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

__all__ = [
    "ANVIL_DEPLOYER_KEY",
    "ANVIL_TREASURY_KEY",
    "MEZO_MAINNET_CHAIN_ID",
    "MEZO_TESTNET_CHAIN_ID",
    "ChainConfig",
]

MEZO_MAINNET_CHAIN_ID = 31612
MEZO_TESTNET_CHAIN_ID = 31611

# Anvil's first two dev accounts (mnemonic "test test ... junk"): published keys, worthless anywhere but a
# local chain. Well-known keys let a developer import the treasury into a wallet once and keep it.
ANVIL_DEPLOYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ANVIL_TREASURY_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


@dataclass(frozen=True)
class ChainConfig:
    host: str = "127.0.0.1"
    port: int = 8545  # 0: a free port, reported in LocalChain.rpc_url
    # Testnet's id: the local chain stands in for testnet, and a wallet never confuses it with mainnet money.
    chain_id: int = MEZO_TESTNET_CHAIN_ID
    automine: bool = True  # a block per transaction, as soon as it arrives
    block_time: float | None = None  # seconds between interval blocks (with automine: empty blocks as well)
    deployer_key: str = ANVIL_DEPLOYER_KEY  # deploys MUSD and is its only minter
    treasury_key: str = ANVIL_TREASURY_KEY  # pays buyers (the fulfiller) and gas
    treasury_musd: Decimal = Decimal(1_000_000)
    treasury_btc: Decimal = Decimal(100)  # native balance, set with anvil_setBalance
    anvil_binary: Path | None = None  # default: found in node_modules
    start_timeout: float = 20.0
