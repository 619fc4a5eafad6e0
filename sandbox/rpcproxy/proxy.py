"""Forwarding JSON-RPC to the upstream, with the faults of `faults.Injector` applied on the way.

The common case costs one JSON parse (for the per-method stats) and one upstream exchange with the body as
received: the request is rewritten only when a fault needs it. Calls a fault answers locally (a JSON-RPC
error, the wrong chain id, the stalled head) are answered here; the rest are forwarded one by one and the
answers reassembled in request order, which keeps a batch's ids and order intact whatever the upstream does
with batches.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.rpcproxy.config import ProxyConfig
from sandbox.rpcproxy.faults import Faults, Injector
from sandbox.rpcproxy.stats import Stats

__all__ = ["RpcProxy", "UpstreamError"]

_JSON = "application/json"
_HEAD_TAGS = frozenset({"latest", "pending", "safe", "finalized"})  # one-block finality: all are the head
_RATE_LIMIT_CODE = -32005  # "limit exceeded" (EIP-1474), what hosted providers put in their 429 bodies


class UpstreamError(Exception):
    """The upstream could not be reached or did not answer in time."""


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = _JSON


class RpcProxy:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.injector = Injector(config.seed)
        self.stats = Stats()
        self.stalled_head: int | None = None  # block number frozen by the stall fault
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.upstream_connections),
            timeout=aiohttp.ClientTimeout(total=self.config.upstream_timeout),
            auto_decompress=False,  # bodies pass through untouched
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def faults(self) -> Faults:
        return self.injector.faults

    async def head(self) -> int:
        """The upstream's current block number (UpstreamError if it cannot tell)."""
        reply = await self._post(b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}')
        try:
            return int(json.loads(reply.body)["result"], 16)
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError(f"eth_blockNumber answered {reply.status}: {reply.body[:200]!r}") from exc

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        stats = self.stats
        stats.requests += 1
        if self.faults.down:  # a keep-alive connection opened before the proxy went down
            stats.faults["down"] += 1
            return _drop(request)
        calls, batch = _parse(body)
        if calls is None:
            stats.invalid += 1
            methods: list[str] = []
        else:
            methods = [_method(call) for call in calls]
            stats.calls += len(calls)
            stats.methods.update(methods)

        decision = self.injector.http(methods)
        if decision.delay:
            stats.faults["latency"] += 1
            await asyncio.sleep(decision.delay)
        faults = self.faults
        outcome = decision.outcome
        if outcome == "drop" and not faults.drop_after_forward:
            stats.faults["drop"] += 1
            return _drop(request)
        if outcome == "timeout":
            stats.faults["timeout"] += 1
            # Held without a word; aiohttp cancels this wait if the client gives up first.
            await asyncio.sleep(faults.timeout_ms / 1000)
            return _drop(request)
        if outcome == "rate_limit":
            stats.faults["rate_limit"] += 1
            return _rate_limited(faults)
        if outcome == "http_error":
            stats.faults["http_error"] += 1
            text = f"{faults.http_error_status} injected by rpc proxy {self.config.name}\n"
            return web.Response(status=faults.http_error_status, text=text)

        try:
            reply = await self._answer(body, calls, batch, faults)
        except UpstreamError as exc:
            stats.upstream_errors += 1
            return web.Response(status=502, text=f"upstream {self.config.upstream} failed: {exc}\n")
        if outcome == "drop":  # drop_after_forward: the upstream acted, the client never hears of it
            stats.faults["drop"] += 1
            return _drop(request)
        return web.Response(status=reply.status, body=reply.body, content_type=reply.content_type)

    async def _answer(self, body: bytes, calls: list[Any] | None, batch: bool, faults: Faults) -> _Reply:
        if calls is None or not (faults.rpc_error_rate or faults.chain_id is not None or self.stalled_head is not None):
            return await self._post(body)
        plans = [self._plan(call, faults) for call in calls]
        if all(answer is None and forward is call for call, (answer, forward) in zip(calls, plans, strict=True)):
            return await self._post(body)  # no fault touched these calls: forward the request as it came

        async def resolve(answer: Any, forward: Any) -> Any:
            if answer is not None:
                return answer
            reply = await self._post(json.dumps(forward).encode())
            if reply.status == 204 or (reply.status == 200 and not reply.body.strip()):
                return None  # a notification's (empty) answer
            if reply.status != 200:
                raise _Failed(reply)
            try:
                return json.loads(reply.body)
            except ValueError:
                raise _Failed(reply) from None  # not JSON: pass the upstream's answer on as it was

        try:
            results = await asyncio.gather(*(resolve(answer, forward) for answer, forward in plans))
        except _Failed as failed:
            return failed.reply
        # Notifications (no id) get no answer, in a batch or alone.
        replies = [result for call, result in zip(calls, results, strict=True) if not _is_notification(call)]
        if not replies:
            return _Reply(204, b"", "text/plain")  # as anvil answers notifications
        return _Reply(200, json.dumps(replies if batch else replies[0]).encode())

    def _plan(self, call: Any, faults: Faults) -> tuple[dict[str, Any] | None, Any]:
        """(local answer, None) for a call a fault answers, or (None, the call to forward, maybe rewritten)."""
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return None, call
        method: str = call["method"]
        stats = self.stats
        if self.injector.rpc_error(method):
            stats.faults["rpc_error"] += 1
            error = {"code": faults.rpc_error_code, "message": faults.rpc_error_message}
            return {"jsonrpc": "2.0", "id": call.get("id"), "error": error}, None
        if faults.chain_id is not None and method in ("eth_chainId", "net_version"):
            stats.faults["chain_id"] += 1
            value = hex(faults.chain_id) if method == "eth_chainId" else str(faults.chain_id)
            return _result(call, value), None
        head = self.stalled_head
        if head is not None:
            if method == "eth_blockNumber":
                stats.faults["stall"] += 1
                return _result(call, hex(head)), None
            if method == "eth_getBlockByNumber":
                params = call.get("params")
                if isinstance(params, list) and params and isinstance(params[0], str):
                    tag = params[0]
                    if tag in _HEAD_TAGS:
                        stats.faults["stall"] += 1
                        return None, {**call, "params": [hex(head), *params[1:]]}
                    if _block_number(tag) > head:  # a stalled node knows no later block
                        stats.faults["stall"] += 1
                        return _result(call, None), None
        return None, call

    async def _post(self, body: bytes) -> _Reply:
        assert self._session is not None, "start() first"
        self.stats.forwarded += 1
        try:
            async with self._session.post(self.config.upstream, data=body, headers={"Content-Type": _JSON}) as response:
                content = await response.read()
                return _Reply(response.status, content, response.content_type or _JSON)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"{type(exc).__name__}: {exc}") from exc


class _Failed(Exception):
    def __init__(self, reply: _Reply) -> None:
        self.reply = reply


def _parse(body: bytes) -> tuple[list[Any] | None, bool]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, False
    if isinstance(data, list):
        return (data, True) if data else (None, True)
    if isinstance(data, dict):
        return [data], False
    return None, False


def _method(call: Any) -> str:
    method = call.get("method") if isinstance(call, dict) else None
    return method if isinstance(method, str) else "(invalid)"


def _block_number(tag: str) -> int:
    """A hex block number, or -1 for anything else (a tag the upstream will judge)."""
    try:
        return int(tag, 16) if tag.startswith("0x") else -1
    except ValueError:
        return -1


def _is_notification(call: Any) -> bool:
    return isinstance(call, dict) and "id" not in call


def _result(call: dict[str, Any], value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call.get("id"), "result": value}


def _rate_limited(faults: Faults) -> web.Response:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": _RATE_LIMIT_CODE, "message": "rate limit exceeded"}}
    headers = {"Retry-After": str(faults.retry_after_seconds)} if faults.retry_after_seconds else None
    return web.json_response(body, status=429, headers=headers)


def _drop(request: web.BaseRequest) -> web.StreamResponse:
    """Close the connection without a response (RST): the answer written after this goes nowhere."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=204)
