"""What can go wrong with a JSON-RPC call, and whether another provider should be asked.

    RpcError(Exception)        every failure of the pool or of one provider; `kind` says which:
      timeout                  no answer within the per-call timeout                      retried
      connect                  refused, reset, dropped or truncated connection            retried
      http_429                 rate limited at the HTTP level                             retried
      http_5xx                 the provider's server failed                               retried
      http_other               another HTTP error (401/403/404: a key or path that        retried
                               this provider refuses; the request itself is sound)
      invalid_response         not JSON-RPC (HTML error page, garbage)                    retried
      jsonrpc_error            the node answered an error object: retried only for        see below
                               -32005 / "rate limit", -32603 internal, -32002 resource
                               unavailable, "header not found", "missing trie node", ...;
                               execution reverted, invalid params (-32602), method not
                               found (-32601), nonce too low, already known, ... are
                               answers about the request and propagate at once
      chain_id_mismatch        the provider serves another chain (never used), or every
                               provider does
      no_provider              every attempt failed; `attempts` lists each (provider, kind)

Messages carry provider names and redacted URLs only, never a raw URL: the underlying aiohttp exception
(whose text names the full URL, key included) is not chained.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import aiohttp

__all__ = ["RpcError", "RpcErrorKind", "classify_exception", "classify_rpc_error", "is_retryable_rpc_error"]


class RpcErrorKind(StrEnum):
    timeout = "timeout"
    connect = "connect"
    http_429 = "http_429"
    http_5xx = "http_5xx"
    http_other = "http_other"
    jsonrpc_error = "jsonrpc_error"
    invalid_response = "invalid_response"
    chain_id_mismatch = "chain_id_mismatch"
    no_provider = "no_provider"


class RpcError(Exception):
    """A failed JSON-RPC call. `code`, `rpc_message` and `data` are the node's error object, when it sent one."""

    def __init__(
        self,
        message: str,
        *,
        kind: RpcErrorKind,
        retryable: bool,
        provider: str | None = None,
        method: str | None = None,
        code: int | None = None,
        rpc_message: str | None = None,
        data: Any = None,
        attempts: Sequence[tuple[str, RpcErrorKind]] = (),
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.provider = provider
        self.method = method
        self.code = code
        self.rpc_message = rpc_message
        self.data = data
        self.attempts = tuple(attempts)

    def __repr__(self) -> str:
        return f"RpcError({str(self)!r}, kind={self.kind.value}, provider={self.provider!r}, code={self.code!r})"


# JSON-RPC codes that say the request itself is wrong: another provider would answer the same.
_REQUEST_CODES = frozenset({-32700, -32600, -32601, -32602})
# Codes that say the provider could not serve it now (EIP-1474: -32002 resource unavailable, -32005 limit
# exceeded; -32603 internal error).
_RETRYABLE_CODES = frozenset({-32002, -32005, -32603})
# Answers about the transaction or the call, whatever the code: retrying elsewhere gives the same answer or,
# for a send, a worse one.
_FINAL_MESSAGES = (
    "revert",
    "nonce too low",
    "nonce too high",
    "already known",
    "already imported",
    "known transaction",
    "replacement transaction underpriced",
    "transaction underpriced",
    "insufficient funds",
    "intrinsic gas too low",
    "gas too low",
    "exceeds block gas limit",
    "invalid sender",
    "max fee per gas less than block base fee",
    "invalid params",
    "invalid argument",
)
# A lagging, pruned or overloaded node: another one can answer.
_RETRYABLE_MESSAGES = (
    "rate limit",
    "too many requests",
    "limit exceeded",
    "header not found",
    "missing trie node",
    "unknown block",
    "request timed out",
    "timeout",
    "server busy",
    "temporarily unavailable",
    "try again",
)


def is_retryable_rpc_error(code: int | None, message: str) -> bool:
    """Whether a JSON-RPC error object means "ask another provider" rather than "this is the answer"."""
    if code in _REQUEST_CODES:
        return False
    lowered = message.lower()
    if any(marker in lowered for marker in _FINAL_MESSAGES):
        return False
    return code in _RETRYABLE_CODES or any(marker in lowered for marker in _RETRYABLE_MESSAGES)


def classify_rpc_error(error: Any, *, provider: str, method: str) -> RpcError:
    """The RpcError for the `error` member of a JSON-RPC response."""
    if not isinstance(error, dict):
        return RpcError(
            f"{method} on {provider}: malformed JSON-RPC error object",
            kind=RpcErrorKind.invalid_response,
            retryable=True,
            provider=provider,
            method=method,
        )
    raw_code = error.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    message = str(error.get("message", ""))
    return RpcError(
        f"{method} on {provider}: JSON-RPC error {code}: {message[:500]}",
        kind=RpcErrorKind.jsonrpc_error,
        retryable=is_retryable_rpc_error(code, message),
        provider=provider,
        method=method,
        code=code,
        rpc_message=message,
        data=error.get("data"),
    )


def classify_exception(exc: BaseException, *, provider: str, method: str, timeout: float) -> RpcError | None:
    """The RpcError for an exception of one HTTP exchange, or None for one that is not about the call (a bug).

    The message is built from the exception's type and status only: aiohttp's own text names the full URL.
    """
    kind: RpcErrorKind
    if isinstance(exc, TimeoutError):  # asyncio.timeout and aiohttp's own timeouts
        kind, detail = RpcErrorKind.timeout, f"no answer within {timeout:g} s"
    elif isinstance(exc, aiohttp.ClientResponseError):
        status = exc.status
        if status == 429:
            kind = RpcErrorKind.http_429
        elif 500 <= status <= 599:
            kind = RpcErrorKind.http_5xx
        else:
            kind = RpcErrorKind.http_other
        detail = f"HTTP {status}"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind, detail = RpcErrorKind.connect, f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    elif isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | ConnectionError):
        kind, detail = RpcErrorKind.connect, f"connection lost ({type(exc).__name__})"
    elif isinstance(exc, aiohttp.ClientError):
        kind, detail = RpcErrorKind.http_other, type(exc).__name__
    elif isinstance(exc, ValueError):  # web3's JSON decoding of the body
        kind, detail = RpcErrorKind.invalid_response, "the answer is not JSON"
    else:
        return None
    return RpcError(f"{method} on {provider}: {detail}", kind=kind, retryable=True, provider=provider, method=method)
