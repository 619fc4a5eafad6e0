"""Test helpers for the Stripe emulator: a handle on a running emulator, and a real webhook receiver.

The receiver is a real HTTP server on a free loopback port; it verifies every request with the official
SDK (`stripe.Webhook.construct_event`) as it arrives, and can be told to fail a number of requests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.stripe.config import EmulatorConfig
from sandbox.stripe.emulator import Emulator
from sandbox.stripe.fulfillment import Fulfiller
from sandbox.stripe.server import running_emulator, serve_in_thread
from tests.support.waiting import wait_until

API_KEY = "sk_test_sandbox_suite"
MEZO_WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"
ETH_WALLET = "0x" + "11" * 20
SESSIONS = "/v1/crypto/onramp_sessions"


def sdk(url: str, http_client: stripe.HTTPClient, api_key: str = API_KEY, **options: Any) -> stripe.StripeClient:
    """The official SDK pointed at the emulator; no retries, so each call sees exactly one answer."""
    options.setdefault("max_network_retries", 0)
    return stripe.StripeClient(api_key, base_addresses={"api": url}, http_client=http_client, **options)


@contextmanager
def http_client() -> Iterator[stripe.HTTPXClient]:
    client = stripe.HTTPXClient(timeout=10, allow_sync_methods=True)
    try:
        yield client
    finally:
        client.close()


@dataclass
class Sandbox:
    url: str
    emulator: Emulator
    stripe: stripe.StripeClient
    control: httpx.Client

    def create(self, **params: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.stripe.raw_request("post", SESSIONS, **params).data
        return data

    def create_mezo(self, **params: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "wallet_addresses": {"mezo": MEZO_WALLET},
            "source_amount": "100.00",
            "destination_currency": "musd",
            "destination_network": "mezo",
        }
        values.update(params)
        return self.create(**values)

    def retrieve(self, session_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.stripe.raw_request("get", f"{SESSIONS}/{session_id}").data
        return data

    def get(self, path: str, **params: Any) -> Any:
        return self.stripe.raw_request("get", path, **params).data

    def advance(self, session_id: str, status: str) -> httpx.Response:
        return self.control.post(f"/_sandbox/onramp_sessions/{session_id}/advance", json={"status": status})

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        response = self.control.put("/_sandbox/faults", json=faults)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def deliveries(self, **filters: str) -> list[dict[str, Any]]:
        response = self.control.get("/_sandbox/deliveries", params=filters)
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def add_endpoint(self, url: str, events: list[str] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = self.stripe.raw_request(
            "post", "/v1/webhook_endpoints", url=url, enabled_events=events or ["*"]
        ).data
        return data


@contextmanager
def sandbox(fulfiller: Fulfiller | None = None, **config: Any) -> Iterator[Sandbox]:
    config.setdefault("port", 0)
    # Fast retries keep the retry tests short; the schedule's shape is what they check.
    config.setdefault("delivery_backoff_base", 0.02)
    config.setdefault("delivery_max_attempts", 5)
    with (
        running_emulator(EmulatorConfig(**config), fulfiller=fulfiller) as running,
        http_client() as http,
        httpx.Client(base_url=running.url, timeout=10, trust_env=False) as control,
    ):
        yield Sandbox(running.url, running.emulator, sdk(running.url, http), control)


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    status: int  # what the receiver answered
    event: stripe.Event | None  # the verified event, None when verification failed
    error: str | None


@dataclass
class WebhookReceiver:
    url: str = ""
    secret: str | None = None
    fail_next: int = 0  # answer 500 to this many requests before accepting
    requests: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        event: stripe.Event | None = None
        error: str | None = None
        try:
            event = stripe.Webhook.construct_event(body, headers.get("stripe-signature"), self.secret)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            status = 500 if self.fail_next > 0 else 200
            if self.fail_next > 0:
                self.fail_next -= 1
            self.requests.append(Received(body, headers, status, event, error))
        return Response(status_code=status)

    @property
    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.status == 200]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        wait_until(lambda: len(self.accepted) >= count, timeout=timeout, what=f"{count} accepted webhooks")
        return self.accepted


@contextmanager
def webhook_receiver(path: str = "/hooks/stripe") -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    app = Starlette(routes=[Route(path, receiver.handle, methods=["POST"])])
    with serve_in_thread(app) as server:
        receiver.url = server.url + path
        yield receiver
