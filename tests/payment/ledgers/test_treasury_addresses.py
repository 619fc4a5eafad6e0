"""Which accounts' outflows the ledger check must explain, by delivery mode."""

from __future__ import annotations

from eth_account import Account

from payment.core.config import Settings
from payment.ledgers.service import treasury_addresses

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil's published second dev key
OTHER = "0x00000000000000000000000000000000000000aa"


def test_the_treasury_key_counts_in_treasury_mode_only() -> None:
    address = Account.from_key(KEY).address.lower()
    treasury = Settings(delivery_mode="treasury", treasury_key=KEY, ledger_treasury_addresses=OTHER)
    assert treasury_addresses(treasury) == sorted({address, OTHER})
    onramp = Settings(delivery_mode="onramp", treasury_key=KEY, ledger_treasury_addresses=OTHER)
    assert treasury_addresses(onramp) == [OTHER]
    assert treasury_addresses(Settings(delivery_mode="onramp")) == []
