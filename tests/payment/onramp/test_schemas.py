from __future__ import annotations

from decimal import Decimal

import pytest

from payment.onramp.schemas import normalize_wallet_address, parse_amount

CHECKSUMMED = "0x52908400098527886E0F7030069857D2E4169EE7"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (CHECKSUMMED, CHECKSUMMED),
        (CHECKSUMMED.lower(), CHECKSUMMED),
        ("0x" + CHECKSUMMED[2:].upper(), CHECKSUMMED),
    ],
)
def test_addresses_are_returned_in_eip55_form(given: str, expected: str) -> None:
    assert normalize_wallet_address(given) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("0x52908400098527886E0F7030069857D2E4169Ee7", "checksum"),  # one letter's case flipped
        ("0x52908400098527886E0F7030069857D2E4169EE", "20-byte"),  # 39 hex digits
        ("52908400098527886E0F7030069857D2E4169EE7", "20-byte"),  # no 0x
        ("0xZZ908400098527886E0F7030069857D2E4169EE7", "20-byte"),
        ("0x" + "0" * 40, "zero address"),
        ("", "20-byte"),
    ],
)
def test_bad_addresses_are_refused_with_the_reason(given: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalize_wallet_address(given)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("25", Decimal("25")), ("25.5", Decimal("25.5")), ("25.50", Decimal("25.50")), (25.5, Decimal("25.5")),
     (100, Decimal("100")), (0.1, Decimal("0.1")), (" 7.25 ", Decimal("7.25"))],
)  # fmt: skip
def test_amounts_are_exact_decimals(given: object, expected: Decimal) -> None:
    result = parse_amount(given)
    assert result == expected
    assert isinstance(result, Decimal)


@pytest.mark.parametrize(
    "given", ["1.001", "-5", "1e3", "NaN", "Infinity", "", "12,50", True, None, [], {}, 1.005, "0x10", "+5"]
)
def test_amounts_that_are_not_plain_two_place_decimals_are_refused(given: object) -> None:
    with pytest.raises(ValueError, match="decimal"):
        parse_amount(given)
