"""The control API under /_proxy/: JSON in and out, no auth, never subject to faults.

    GET     /_proxy/faults   -> current faults
    PUT     /_proxy/faults   replace faults (omitted ones reset: `{}` heals; seed kept unless given)
    PATCH   /_proxy/faults   change only the faults given
    GET     /_proxy/stats    {"requests", "calls", "forwarded", "methods": {...}, "faults": {...}, ...}
    DELETE  /_proxy/stats    reset the counters
    GET     /_proxy/health   {"status": "ok", "name", "upstream", "down", "stalledHead"}

Errors are {"error": {"message": ...}} with 400 (bad body), 404, 405, 409 (healing "down" found the port
taken), or 502 (the upstream could not tell its head when a stall was asked for).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from sandbox.rpcproxy.faults import Faults, FaultsError
from sandbox.rpcproxy.proxy import RpcProxy, UpstreamError
from sandbox.rpcproxy.stats import Stats

__all__ = ["PREFIX", "Controlled", "handle_control"]

PREFIX = "/_proxy/"


class Controlled(Protocol):
    """What the control API drives: the proxy, and the server that can stop and resume listening."""

    proxy: RpcProxy

    async def apply(self, faults: Faults, *, reseed: bool, request: web.BaseRequest) -> None: ...


class _ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def handle_control(target: Controlled, request: web.BaseRequest) -> web.Response:
    route = _ROUTES.get(request.path[len(PREFIX) :])
    try:
        if route is None:
            raise _ControlError(404, f"no such control endpoint: {request.path}")
        handler = route.get(request.method)
        if handler is None:
            raise _ControlError(405, f"{request.method} not allowed on {request.path}")
        payload = await handler(target, request)
    except _ControlError as exc:
        return web.json_response({"error": {"message": str(exc)}}, status=exc.status)
    return web.json_response(payload)


async def _get_faults(target: Controlled, request: web.BaseRequest) -> Any:
    del request
    return target.proxy.faults.to_json()


async def _set_faults(target: Controlled, request: web.BaseRequest) -> Any:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        raise _ControlError(400, "body must be valid JSON") from None
    current = target.proxy.faults
    # PUT replaces (a test starts from a clean slate) but keeps the generator's position unless a seed is
    # given; PATCH changes only what it names.
    base = current if request.method == "PATCH" else Faults(seed=current.seed)
    try:
        updated = Faults.from_json(body, base=base)
    except FaultsError as exc:
        raise _ControlError(400, str(exc)) from None
    try:
        await target.apply(updated, reseed=isinstance(body, dict) and "seed" in body, request=request)
    except UpstreamError as exc:
        raise _ControlError(502, f"cannot stall: the upstream's head is unknown ({exc})") from None
    except OSError as exc:
        raise _ControlError(409, f"cannot listen again on the JSON-RPC port: {exc}") from None
    return target.proxy.faults.to_json()


async def _get_stats(target: Controlled, request: web.BaseRequest) -> Any:
    del request
    return target.proxy.stats.to_json(target.proxy.config.name)


async def _reset_stats(target: Controlled, request: web.BaseRequest) -> Any:
    del request
    target.proxy.stats = Stats()
    return target.proxy.stats.to_json(target.proxy.config.name)


async def _health(target: Controlled, request: web.BaseRequest) -> Any:
    del request
    proxy = target.proxy
    return {
        "status": "ok",
        "name": proxy.config.name,
        "upstream": proxy.config.upstream,
        "down": proxy.faults.down,
        "stalledHead": proxy.stalled_head,
    }


_Handler = Callable[[Controlled, web.BaseRequest], Awaitable[Any]]
_ROUTES: dict[str, dict[str, _Handler]] = {
    "faults": {"GET": _get_faults, "PUT": _set_faults, "PATCH": _set_faults},
    "stats": {"GET": _get_stats, "DELETE": _reset_stats},
    "health": {"GET": _health},
}
