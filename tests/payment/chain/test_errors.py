"""Which failures are retried on another provider and which are the answer (classification only)."""

from __future__ import annotations

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from payment.chain.errors import RpcErrorKind, classify_exception, classify_rpc_error

SECRET_URL = "https://spectrum-01.simplystaking.xyz/Sk9vT3eXq7Lm2Rp4Wz8Yb6Nc/mezo/mainnet/"


@pytest.mark.parametrize(
    ("code", "message", "retryable"),
    [
        (-32005, "limit exceeded", True),
        (-32000, "rate limit reached, retry later", True),
        (429, "Too Many Requests", True),
        (-32603, "internal error", True),
        (-32002, "resource unavailable", True),
        (-32000, "header not found", True),
        (-32000, "missing trie node 4a5b... (path )", True),
        (-32000, "request timed out", True),
        (3, "execution reverted: ERC20InsufficientBalance", False),
        (-32000, "execution reverted", False),
        (-32603, "execution reverted", False),  # some nodes wrap reverts as internal errors
        (-32602, "invalid params", False),
        (-32602, "header not found", False),  # the request is malformed, whatever the message
        (-32601, "the method eth_foo does not exist/is not available", False),
        (-32600, "invalid request", False),
        (-32000, "nonce too low: next nonce 5, tx nonce 4", False),
        (-32000, "already known", False),
        (-32003, "transaction already imported", False),
        (-32000, "replacement transaction underpriced", False),
        (-32000, "insufficient funds for gas * price + value", False),
        (-32000, "something new and unexpected", False),  # unknown: the answer, not retried
        (None, "no code at all", False),
    ],
)
def test_jsonrpc_errors(code: int | None, message: str, retryable: bool) -> None:
    error = classify_rpc_error(
        {"code": code, "message": message, "data": "0x01"}, provider="spectrum", method="eth_call"
    )
    assert error.kind is RpcErrorKind.jsonrpc_error
    assert error.retryable is retryable
    assert error.code == code
    assert error.rpc_message == message
    assert error.data == "0x01"
    assert error.provider == "spectrum"


def test_a_malformed_error_object_is_an_invalid_response() -> None:
    error = classify_rpc_error("boom", provider="public", method="eth_call")
    assert error.kind is RpcErrorKind.invalid_response
    assert error.retryable


def _response_error(status: int) -> aiohttp.ClientResponseError:
    info = aiohttp.RequestInfo(URL(SECRET_URL), "POST", CIMultiDictProxy(CIMultiDict()), URL(SECRET_URL))
    return aiohttp.ClientResponseError(info, (), status=status, message="boom")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TimeoutError(), RpcErrorKind.timeout),
        (_response_error(429), RpcErrorKind.http_429),
        (_response_error(503), RpcErrorKind.http_5xx),
        (_response_error(401), RpcErrorKind.http_other),
        (aiohttp.ServerDisconnectedError(), RpcErrorKind.connect),
        (ConnectionResetError(104, "reset"), RpcErrorKind.connect),
        (aiohttp.ClientPayloadError("truncated"), RpcErrorKind.connect),
        (ValueError("Expecting value"), RpcErrorKind.invalid_response),
    ],
)
def test_transport_failures_are_retryable_and_name_no_url(exc: BaseException, kind: RpcErrorKind) -> None:
    assert SECRET_URL in str(_response_error(500))  # what aiohttp would have shown
    error = classify_exception(exc, provider="spectrum", method="eth_blockNumber", timeout=1.5)
    assert error is not None
    assert error.kind is kind
    assert error.retryable
    assert "Sk9vT3eXq7Lm2Rp4Wz8Yb6Nc" not in str(error)


def test_a_bug_is_not_classified() -> None:
    assert classify_exception(KeyError("x"), provider="spectrum", method="eth_call", timeout=1) is None
