"""The treasury's balances on Mezo: MUSD (what it pays buyers with) and BTC (its gas), in major units.

Read through the provider pool with failover (`ChainClient`): the balance is what matters here, not which
provider answers it; each provider's own health is the RPC probe's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from monitor.config import TreasuryConfig
from monitor.metrics import MonitorMetrics
from monitor.scheduler import ProbeFailed, ProbeJob
from payment.chain.client import ChainClient
from payment.chain.errors import RpcError

__all__ = ["TreasuryProbe"]

DECIMALS = 18  # MUSD and Mezo's native BTC


@dataclass
class TreasuryProbe:
    chain: ChainClient
    address: str
    musd_address: str
    config: TreasuryConfig
    metrics: MonitorMetrics
    min_musd: Decimal
    min_btc: Decimal

    def __post_init__(self) -> None:
        self.metrics.treasury_minimum.labels("musd").set(float(self.min_musd))
        self.metrics.treasury_minimum.labels("btc").set(float(self.min_btc))

    def job(self) -> ProbeJob:
        return ProbeJob("treasury", "treasury", self.config, self.probe)

    async def probe(self) -> None:
        try:
            musd = await self.chain.erc20_balance(self.musd_address, self.address)
            btc = await self.chain.get_balance(self.address)
        except RpcError as exc:
            raise ProbeFailed(exc.kind.value) from None
        scale = Decimal(10) ** DECIMALS
        self.metrics.treasury_balance.labels("musd").set(float(Decimal(musd) / scale))
        self.metrics.treasury_balance.labels("btc").set(float(Decimal(btc) / scale))
