"""Stripe's bracket form encoding, parsed as the official SDK writes it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stripe._encode import _api_encode  # the SDK's own encoder: what goes on the wire

from sandbox.stripe.errors import StripeError
from sandbox.stripe.forms import Params, parse_form


def sdk_encode(params: dict[str, Any]) -> str:
    # Exactly what stripe._api_requestor does to a v1 body or query string.
    return urlencode(list(_api_encode(params))).replace("%5B", "[").replace("%5D", "]")


def test_nested_hashes_indexed_arrays_and_plain_values() -> None:
    form = parse_form(
        "wallet_addresses[mezo]=0xabc&wallet_addresses[destination_tags][stellar]=42"
        "&destination_currencies[0]=musd&destination_currencies[1]=usdc&source_amount=10.00&metadata[order]=a%26b"
    )
    assert form == {
        "wallet_addresses": {"mezo": "0xabc", "destination_tags": {"stellar": "42"}},
        "destination_currencies": {"0": "musd", "1": "usdc"},
        "source_amount": "10.00",
        "metadata": {"order": "a&b"},
    }
    assert Params(form).array("destination_currencies") == ["musd", "usdc"]


def test_percent_encoded_brackets_and_legacy_append_arrays() -> None:
    form = parse_form(b"destination_networks%5B%5D=mezo&destination_networks[]=base&expand[]=x")
    assert form["destination_networks"] == ["mezo", "base"]
    assert Params(form).array("destination_networks") == ["mezo", "base"]


def test_indexed_arrays_are_ordered_by_index_not_arrival() -> None:
    form = parse_form("a[10]=k&a[2]=c&a[0]=a")
    assert Params(form).array("a") == ["a", "c", "k"]


def test_digit_keys_stay_a_hash_where_a_hash_is_expected() -> None:
    params = Params(parse_form("metadata[0]=zero&metadata[1]=one"))
    assert params.string_hash("metadata") == {"0": "zero", "1": "one"}


@pytest.mark.parametrize(
    "body",
    ["a=1&a[b]=2", "a[b]=2&a=1", "a=1&a=2", "a[]=1&a[b]=2", "a[][b]=1"],
)
def test_conflicting_or_repeated_keys_are_refused(body: str) -> None:
    with pytest.raises(StripeError) as raised:
        parse_form(body)
    assert raised.value.status == 400
    assert raised.value.param is not None


def test_malformed_brackets_surface_as_unknown_parameters() -> None:
    params = Params(parse_form("source_amount[=1&]x=2"))
    with pytest.raises(StripeError) as raised:
        params.reject_unknown({"source_amount"})
    assert raised.value.code == "parameter_unknown"


def test_typed_reads_raise_stripe_codes() -> None:
    params = Params(parse_form("empty=&amount=1.234&flag=yes&n=abc&arr=x&h=scalar"))
    cases = {
        "parameter_invalid_empty": lambda: params.string("empty"),
        "parameter_invalid_string": lambda: params.decimal("amount", places=2),
        "parameter_invalid_integer": lambda: params.integer("n", minimum=1, maximum=10),
        "parameter_missing": lambda: params.string("absent", required=True),
    }
    for code, read in cases.items():
        with pytest.raises(StripeError) as raised:
            read()
        assert raised.value.code == code
    with pytest.raises(StripeError, match="Invalid boolean"):
        params.boolean("flag")
    with pytest.raises(StripeError, match="Invalid array"):
        params.array("arr")
    with pytest.raises(StripeError, match="Invalid hash"):
        params.hash("h")


# Keys as a client would name them: no brackets (those are the encoding's own syntax) and not empty.
keys = st.text(st.characters(blacklist_characters="[]", blacklist_categories=("Cs",)), min_size=1, max_size=8)
leaves = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, min_size=1, max_size=4) | st.dictionaries(keys, inner, min_size=1, max_size=4),
    max_leaves=12,
)


def as_parsed(value: Any) -> Any:
    """What parse_form yields for a value: lists come back as digit-keyed hashes (see forms.py)."""
    if isinstance(value, list):
        return {str(i): as_parsed(v) for i, v in enumerate(value)}
    if isinstance(value, dict):
        return {k: as_parsed(v) for k, v in value.items()}
    return value


@given(st.dictionaries(keys, values, min_size=1, max_size=5))
def test_whatever_the_sdk_encodes_parses_back(params: dict[str, Any]) -> None:
    assert parse_form(sdk_encode(params)) == as_parsed(params)
