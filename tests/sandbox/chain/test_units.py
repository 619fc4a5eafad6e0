"""Amount conversion, without a chain."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sandbox.chain.anvil import anvil_arguments
from sandbox.chain.musd import to_units

MUSD = 10**18


@pytest.mark.parametrize(
    ("amount", "units"),
    [("98.50", 98_500_000_000_000_000_000), ("0.000000000000000001", 1), (Decimal("1e3"), 1000 * MUSD)],
)
def test_to_units_is_exact(amount: str | Decimal, units: int) -> None:
    assert to_units(amount) == units


@pytest.mark.parametrize("amount", ["0", "-1", "abc", "NaN", "Infinity", "0.0000000000000000001"])
def test_to_units_refuses_what_it_cannot_represent(amount: str) -> None:
    with pytest.raises(ValueError, match="amount"):
        to_units(amount)


@pytest.mark.parametrize(
    ("automine", "block_time", "mode"),
    [(True, None, []), (False, None, ["--no-mining"]), (True, 2.0, ["--block-time", "2", "--mixed-mining"]),
     (False, 0.5, ["--block-time", "0.5"])],
)  # fmt: skip
def test_mining_modes_map_to_anvil_flags(automine: bool, block_time: float | None, mode: list[str]) -> None:
    args = anvil_arguments(host="127.0.0.1", port=0, chain_id=31611, automine=automine, block_time=block_time)
    assert args == ["--host", "127.0.0.1", "--port", "0", "--chain-id", "31611", *mode]
