"""JSON-RPC by hand, to see exactly what the proxy answers (web3 would retry, wrap or hide it)."""

from __future__ import annotations

from typing import Any

import httpx
from web3 import Web3

from sandbox.chain.transactions import connect

__all__ = ["call", "rpc", "web3_via"]


def call(method: str, params: list[Any] | None = None, id_: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params or []}


def rpc(client: httpx.Client, url: str, method: str, *params: Any, timeout: float = 10.0) -> Any:
    """The result of one call; AssertionError with the body on an HTTP or JSON-RPC error."""
    response = client.post(url, json=call(method, list(params)), timeout=timeout)
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    body = response.json()
    assert "error" not in body, body
    return body["result"]


def web3_via(url: str, timeout: float = 10.0) -> Web3:
    return connect(url, timeout=timeout)
