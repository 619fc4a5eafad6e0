"""Serving the proxy: `run` for the CLI (foreground), `running_proxy` for tests (a background thread).

Two listeners: the JSON-RPC port (which also answers the control API) and a control-only port. "down"
closes the JSON-RPC listener, so new connections are refused as by a dead node, and closes the connections
already open; the control port stays up so the proxy can be healed. Healing binds the same port again.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from aiohttp import web

from sandbox.background import serve_until_signalled, serving_in_thread
from sandbox.rpcproxy.config import ProxyConfig
from sandbox.rpcproxy.control import PREFIX, handle_control
from sandbox.rpcproxy.faults import Faults
from sandbox.rpcproxy.proxy import RpcProxy

__all__ = ["ProxyServer", "RunningProxy", "run", "running_proxy"]

_START_TIMEOUT = 10.0
_SHUTDOWN_SECONDS = 1.0  # requests still held (timeout fault) when the proxy stops are cut after this


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ProxyServer:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.proxy = RpcProxy(config)
        self.url = ""
        self.control_url = ""
        self._address: tuple[str, int] = (config.host, config.port)
        self._rpc_site: web.SockSite | None = None

    async def start(self) -> None:
        # aiohttp servers bind to the running loop, so they are made here rather than in __init__.
        # handler_cancellation: a client that gives up on a held request frees it at once.
        self._rpc_server = web.Server(self._serve_rpc_port, handler_cancellation=True, access_log=None)
        self._control_server = web.Server(self._serve_control_port, access_log=None)
        self._rpc_runner = web.ServerRunner(self._rpc_server, shutdown_timeout=_SHUTDOWN_SECONDS)
        self._control_runner = web.ServerRunner(self._control_server, shutdown_timeout=_SHUTDOWN_SECONDS)
        await self.proxy.start()
        await self._rpc_runner.setup()
        await self._control_runner.setup()
        rpc_sock = _bind(self.config.host, self.config.port)
        self._address = (self.config.host, rpc_sock.getsockname()[1])  # port 0 resolved, kept for healing
        self.url = _url(rpc_sock)
        await self._listen(rpc_sock)
        control_sock = _bind(self.config.host, self.config.control_port)
        self.control_url = _url(control_sock)
        await web.SockSite(self._control_runner, control_sock).start()

    async def stop(self) -> None:
        await self._rpc_runner.cleanup()
        await self._control_runner.cleanup()
        await self.proxy.close()

    async def apply(self, faults: Faults, *, reseed: bool, request: web.BaseRequest) -> None:
        """Install new faults, freezing the head when a stall begins and closing/reopening the port for down."""
        proxy = self.proxy
        previous = proxy.faults
        head = proxy.stalled_head
        if faults.stall and head is None:
            head = await proxy.head()  # may raise UpstreamError: then nothing changes
        # Bound before anything changes, so a port taken meanwhile (OSError) leaves the proxy as it was.
        coming_up = _bind(*self._address) if previous.down and not faults.down else None
        # No await between these lines: requests see the faults and the frozen head change together.
        proxy.injector.set(faults, reseed=reseed)
        proxy.stalled_head = head if faults.stall else None
        if faults.down and not previous.down:
            await self._go_down(request)
        elif coming_up is not None:
            await self._listen(coming_up)

    async def _listen(self, sock: socket.socket) -> None:
        self._rpc_site = web.SockSite(self._rpc_runner, sock)
        await self._rpc_site.start()

    async def _go_down(self, request: web.BaseRequest) -> None:
        if self._rpc_site is not None:
            await self._rpc_site.stop()  # closes the listening socket: new connections are refused
            self._rpc_site = None
        for connection in self._rpc_server.connections:
            if connection is request.protocol:
                connection.close()  # the control request asking for "down": answered, then closed
            else:
                connection.force_close()

    async def _serve_rpc_port(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith(PREFIX):
            response = await handle_control(self, request)
            if self.proxy.faults.down:
                response.force_close()  # "Connection: close", so the client does not reuse this connection
            return response
        if request.method != "POST":
            return web.Response(status=405, text="JSON-RPC is POSTed\n", headers={"Allow": "POST"})
        return await self.proxy.handle(request)

    async def _serve_control_port(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith(PREFIX):
            return await handle_control(self, request)
        return web.json_response({"error": {"message": "the control port serves only /_proxy/"}}, status=404)


def run(config: ProxyConfig) -> None:
    """Serve until SIGINT/SIGTERM. Prints one JSON line first: {"url", "controlUrl", "name", "upstream"}."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve_until_signalled(config))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it comes with uvicorn[standard]): it roughly halves the proxy's own overhead."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve_until_signalled(config: ProxyConfig) -> None:
    server = ProxyServer(config)
    await serve_until_signalled(
        server,
        lambda: {"url": server.url, "controlUrl": server.control_url, "name": config.name, "upstream": config.upstream},
    )


class RunningProxy:
    """A proxy serving on a background thread; its faults are driven through the control API."""

    def __init__(self, server: ProxyServer) -> None:
        self.url = server.url
        self.control_url = server.control_url
        self.name = server.config.name
        self.upstream = server.config.upstream
        self._control = httpx.Client(base_url=server.control_url, timeout=10.0, trust_env=False)

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Replace the faults (those not given reset to none; the seed is kept unless given)."""
        return self._call("PUT", "/_proxy/faults", faults)

    def patch_faults(self, **faults: Any) -> dict[str, Any]:
        """Change only the faults given."""
        return self._call("PATCH", "/_proxy/faults", faults)

    def heal(self) -> dict[str, Any]:
        return self.set_faults()

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/_proxy/faults")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_proxy/stats")

    def reset_stats(self) -> dict[str, Any]:
        return self._call("DELETE", "/_proxy/stats")

    def close(self) -> None:
        self._control.close()

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = self._control.request(method, path, json=body)
        if response.status_code != 200:
            raise ValueError(f"{method} {path} -> {response.status_code}: {response.text}")
        result: dict[str, Any] = response.json()
        return result


@contextmanager
def running_proxy(
    upstream: str, port: int = 0, *, name: str = "rpc", seed: int = 0, control_port: int = 0
) -> Iterator[RunningProxy]:
    """A proxy in front of `upstream` on a loopback port (0: a free one) for the duration of the block."""
    config = ProxyConfig(upstream=upstream, port=port, control_port=control_port, name=name, seed=seed)
    server = ProxyServer(config)
    loop = (_loop_factory() or asyncio.new_event_loop)()
    with serving_in_thread(server, name=f"rpcproxy-{name}", loop=loop, timeout=_START_TIMEOUT):
        running = RunningProxy(server)
        try:
            yield running
        finally:
            running.close()
