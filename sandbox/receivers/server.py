"""Serving the capture receivers: `run` for the CLI (foreground), `running_receivers` for tests (a thread).

One event loop serves the HTTP endpoints and the SMTP server. `run` prints one JSON line first with the URLs to
configure Alertmanager with (`slackUrl`, `discordUrl`, `pagerdutyUrl`, `smtpSmarthost`, `heartbeatUrl`, `url`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from aiohttp import web

from sandbox.background import serve_until_signalled, serving_in_thread
from sandbox.receivers.faults import ReceiverFaults
from sandbox.receivers.heartbeat import DEFAULT_STALE_AFTER_SECONDS, HeartbeatState, HeartbeatStore
from sandbox.receivers.http import build_app
from sandbox.receivers.smtp import smtp_protocol_factory
from sandbox.receivers.store import Received, ReceivedStore

__all__ = ["ReceiversConfig", "ReceiversServer", "RunningReceivers", "run", "running_receivers"]

_START_TIMEOUT = 10.0


@dataclass(frozen=True)
class ReceiversConfig:
    host: str = "127.0.0.1"
    port: int = 0  # HTTP: webhooks, the JSON API and the page; 0: a free port
    smtp_port: int = 0
    smtp_credentials: tuple[str, str] | None = None  # require AUTH with these (login, password)
    heartbeat_stale_after: float = DEFAULT_STALE_AFTER_SECONDS  # no heartbeat for this long: stale


class ReceiversServer:
    def __init__(self, config: ReceiversConfig, store: ReceivedStore | None = None) -> None:
        self.config = config
        self.store = store or ReceivedStore()
        self.heartbeats = HeartbeatStore(config.heartbeat_stale_after)
        self.faults = ReceiverFaults()
        self.port = 0
        self.smtp_port = 0

    async def start(self) -> None:
        self._runner = web.AppRunner(build_app(self.store, self.heartbeats, self.faults), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        credentials = self.config.smtp_credentials
        self._smtp = await loop.create_server(
            lambda: smtp_protocol_factory(self.store, credentials), self.config.host, self.config.smtp_port
        )
        self.smtp_port = self._smtp.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._smtp.close()
        await self._smtp.wait_closed()
        await self._runner.cleanup()

    def urls(self) -> dict[str, str]:
        base = f"http://{self.config.host}:{self.port}"
        return {
            "url": base,
            "slackUrl": f"{base}/slack/services/T00000000/B00000000/capture",
            "discordUrl": f"{base}/discord/api/webhooks/000000000000000000/capture",
            "pagerdutyUrl": f"{base}/pagerduty/v2/enqueue",
            "smtpSmarthost": f"{self.config.host}:{self.smtp_port}",
            "heartbeatUrl": f"{base}/heartbeat",
        }


class RunningReceivers:
    """Receivers serving on a background thread, read through their JSON API (as a test would from outside)."""

    def __init__(self, server: ReceiversServer) -> None:
        urls = server.urls()
        self.url = urls["url"]
        self.slack_url = urls["slackUrl"]
        self.discord_url = urls["discordUrl"]
        self.pagerduty_url = urls["pagerdutyUrl"]
        self.smtp_host = server.config.host
        self.smtp_port = server.smtp_port
        self.smtp_smarthost = urls["smtpSmarthost"]
        self.heartbeat_url = urls["heartbeatUrl"]
        self.store = server.store
        self._heartbeats = server.heartbeats
        self._client = httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)

    def received(self, kind: str | None = None) -> list[dict[str, Any]]:
        response = self._client.get("/api/received", params={"kind": kind} if kind else None)
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def heartbeat(self) -> dict[str, Any]:
        """GET /api/heartbeat: lastSeen, count, stale, ..."""
        response = self._client.get("/api/heartbeat")
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def heartbeat_state(self) -> HeartbeatState:
        return self._heartbeats.state()

    def items(self, kind: str | None = None) -> list[Received]:
        return self.store.items(kind)

    def set_faults(self, **fail: int) -> dict[str, Any]:
        """PUT /api/faults: e.g. `set_faults(slack=500)` makes Slack answer 500; `set_faults()` heals."""
        response = self._client.put("/api/faults", json=fail)
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def faults(self) -> dict[str, Any]:
        """GET /api/faults: {"fail": {...}, "refused": {kind: requests refused}}."""
        response = self._client.get("/api/faults")
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def clear(self) -> None:
        self._client.delete("/api/received").raise_for_status()

    def close(self) -> None:
        self._client.close()


@contextmanager
def running_receivers(config: ReceiversConfig | None = None) -> Iterator[RunningReceivers]:
    server = ReceiversServer(config or ReceiversConfig())
    with serving_in_thread(server, name="capture-receivers", timeout=_START_TIMEOUT):
        running = RunningReceivers(server)
        try:
            yield running
        finally:
            running.close()


def run(config: ReceiversConfig) -> None:
    """Serve until SIGINT/SIGTERM, after printing the URLs as one JSON line."""
    asyncio.run(_serve_until_signalled(config))


async def _serve_until_signalled(config: ReceiversConfig) -> None:
    server = ReceiversServer(config)
    await serve_until_signalled(server, server.urls)
