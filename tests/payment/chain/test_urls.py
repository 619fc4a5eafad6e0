"""redact_url: what is kept and what is masked, provider by provider."""

from __future__ import annotations

import pytest

from payment.chain.urls import endpoint_of, redact_url

CASES = [
    # Spectrum: the key is a path segment
    (
        "https://spectrum-01.simplystaking.xyz/Sk9vT3eXq7Lm2Rp4Wz8Yb6Nc/mezo/mainnet/",
        "https://spectrum-01.simplystaking.xyz/***/mezo/mainnet/",
    ),
    ("https://spectrum-01.simplystaking.xyz/abcdefabcdefabcdef0123/mezo/testnet", None),
    # Mezo's public endpoints: nothing secret, nothing masked
    ("https://rpc.test.mezo.org", "https://rpc.test.mezo.org"),
    ("https://mainnet.mezo.public.validationcloud.io/", "https://mainnet.mezo.public.validationcloud.io/"),
    ("https://rpc-http.mezo.boar.network", "https://rpc-http.mezo.boar.network"),
    # keys of other providers: 32 hex (Infura), base62 with _ and - (Alchemy), 40 hex (QuickNode), UUID
    ("https://mainnet.infura.io/v3/9aa3d95b3bc440fa88ea12eaa4456161", "https://mainnet.infura.io/v3/***"),
    ("https://eth-mainnet.g.alchemy.com/v2/aB3_dE5-fG7hI9jK1lM3nO5", "https://eth-mainnet.g.alchemy.com/v2/***"),
    ("https://x.quiknode.pro/0123456789abcdef0123456789abcdef01234567/", "https://x.quiknode.pro/***/"),
    ("https://rpc.ankr.com/mezo/3f2504e0-4f89-11d3-9a0c-0305e82c3301", "https://rpc.ankr.com/mezo/***"),
    ("https://node.example/deadbeefdeadbeef", "https://node.example/***"),  # hex of letters only: still a key
    # query strings: every value, whatever the parameter's name
    ("https://rpc.example.com/rpc?apikey=s3cr3t&network=mezo", "https://rpc.example.com/rpc?apikey=***&network=***"),
    ("https://rpc.example.com/?token", "https://rpc.example.com/?***"),
    # userinfo, port, fragment
    ("https://user:pa55word@rpc.example.com:8545/", "https://***@rpc.example.com:8545/"),
    ("https://onlykey@rpc.example.com/", "https://***@rpc.example.com/"),
    ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
    ("http://[::1]:8545/mezo", "http://[::1]:8545/mezo"),
    ("https://rpc.example.com/mezo#Sk9vT3eXq7Lm2Rp4", "https://rpc.example.com/mezo#***"),
    # readable long segments stay; short ones always stay
    ("https://node.example/mezo-mainnet-01-archive/rpc", "https://node.example/mezo-mainnet-01-archive/rpc"),
    ("https://node.example/v1/mezo/abc123", "https://node.example/v1/mezo/abc123"),
    # not a URL: masked whole
    ("Sk9vT3eXq7Lm2Rp4Wz8Yb6Nc", "***"),
    ("", "***"),
    ("http://[::1", "***"),
]


@pytest.mark.parametrize(("url", "expected"), CASES)
def test_redact_url(url: str, expected: str | None) -> None:
    redacted = redact_url(url)
    if expected is not None:
        assert redacted == expected
    assert "Sk9vT3eXq7Lm2Rp4" not in redacted
    assert "abcdefabcdefabcdef0123" not in redacted


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://spectrum-01.simplystaking.xyz/KEY/mezo/", ("spectrum-01.simplystaking.xyz", 443)),
        ("http://user:pw@127.0.0.1:8545/x", ("127.0.0.1", 8545)),
        ("http://[::1]:9000", ("::1", 9000)),
        ("not a url", ("", None)),
    ],
)
def test_endpoint_is_host_and_port_only(url: str, endpoint: tuple[str, int | None]) -> None:
    assert endpoint_of(url) == endpoint
