"""The local stack as separate processes on free loopback ports: the Stripe emulator and the payment API."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import stripe

from tests.support.auth import JWT_KEYS
from tests.support.services import ChildProcess, free_port, musdpay_command, start_process, wait_http_ok

__all__ = ["API_KEY", "WEBHOOK_SECRET", "Emulator", "PaymentApi", "running_api", "running_emulator"]

API_KEY = "sk_test_musdpay_stack_tests"
WEBHOOK_SECRET = "whsec_musdpay_stack_tests_0123"


@dataclass
class Emulator:
    url: str
    process: ChildProcess

    def sdk(self, *, timeout: float = 10.0) -> stripe.StripeClient:
        return stripe.StripeClient(
            API_KEY,
            base_addresses={"api": self.url},
            http_client=stripe.HTTPXClient(timeout=timeout, allow_sync_methods=True),
        )

    def control(self, method: str, path: str, json: Any = None) -> Any:
        response = httpx.request(method, f"{self.url}{path}", json=json, timeout=10)
        response.raise_for_status()
        return response.json()

    def set_faults(self, **faults: Any) -> None:
        self.control("PUT", "/_sandbox/faults", faults)

    def advance(self, stripe_session_id: str, status: str) -> Any:
        return self.control("POST", f"/_sandbox/onramp_sessions/{stripe_session_id}/advance", {"status": status})

    def sessions(self) -> list[dict[str, Any]]:
        """Every onramp session the emulator holds (its List API, all pages)."""
        return self._all("/v1/crypto/onramp_sessions")

    def events(self) -> list[dict[str, Any]]:
        """Every event the emulator created (List Events, all pages)."""
        return self._all("/v1/events")

    def _all(self, path: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 100}
        while True:
            page = self.sdk().raw_request("get", path, **params).data
            found.extend(page["data"])
            if not page["has_more"]:
                return found
            params["starting_after"] = page["data"][-1]["id"]

    def deliveries(self) -> list[dict[str, Any]]:
        result: Any = self.control("GET", "/_sandbox/deliveries")
        return list(result["data"] if isinstance(result, dict) else result)


# One operator key per database, shared by every PaymentApi on it (a restarted API, concurrent clients): the
# Idempotency-Key scope is the caller, so the same caller must come back after a restart.
_OPERATOR_KEYS: dict[str, str] = {}
_OPERATOR_KEYS_LOCK = threading.Lock()


def operator_key(database_url: str) -> str:
    """An operator API key in this database (created on first use, once an API has migrated it)."""
    with _OPERATOR_KEYS_LOCK:
        if database_url not in _OPERATOR_KEYS:
            from payment.auth.principal import Role
            from payment.core.config import Settings
            from payment.core.db import create_db_engine, make_session_factory
            from tests.support.auth import api_key

            engine = create_db_engine(Settings(database_url=database_url))
            try:
                _OPERATOR_KEYS[database_url] = api_key(make_session_factory(engine), Role.operator, "stack tests")
            finally:
                engine.dispose()
        return _OPERATOR_KEYS[database_url]


@dataclass
class PaymentApi:
    url: str
    process: ChildProcess
    env: dict[str, str] = field(default_factory=dict)

    @property
    def operator_key(self) -> str:
        return operator_key(self.env["MUSDPAY_DATABASE_URL"])

    def client(self, timeout: float = 30.0, *, authenticated: bool = True) -> httpx.Client:
        """A client of the API, as an operator (API key) unless `authenticated=False`."""
        headers = {"Authorization": f"Bearer {self.operator_key}"} if authenticated else {}
        return httpx.Client(base_url=self.url, timeout=timeout, headers=headers)


@contextmanager
def running_emulator(tmp_path: Path, *, webhook_port: int | None, extra: list[str] | None = None) -> Iterator[Emulator]:
    port = free_port()
    args = ["sandbox", "stripe", "--port", str(port), "--api-key", API_KEY]
    if webhook_port is not None:
        args += ["--webhook-url", f"http://127.0.0.1:{webhook_port}/api/v1/webhooks/stripe"]
        args += ["--webhook-secret", WEBHOOK_SECRET]
    process = start_process(musdpay_command(*args, *(extra or [])), env={}, log_path=tmp_path / f"emulator-{port}.log")
    emulator = Emulator(url=f"http://127.0.0.1:{port}", process=process)
    try:
        wait_http_ok(f"{emulator.url}/_sandbox/faults", process)
        yield emulator
    finally:
        process.stop()


def api_environment(database_url: str, stripe_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "MUSDPAY_ENVIRONMENT": "test",
        "MUSDPAY_DATABASE_URL": database_url,
        "MUSDPAY_AUTO_MIGRATE": "true",
        "MUSDPAY_STRIPE_API_BASE": stripe_url,
        "MUSDPAY_STRIPE_SECRET_KEY": API_KEY,
        "MUSDPAY_STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "MUSDPAY_STRIPE_TIMEOUT_SECONDS": "5",
        "MUSDPAY_JWT_KEYS": JWT_KEYS,
    }
    env.update({f"MUSDPAY_{name.upper()}": value for name, value in overrides.items()})
    return env


def start_api(tmp_path: Path, port: int, env: dict[str, str], *, wait: bool = True) -> PaymentApi:
    process = start_process(
        musdpay_command("serve", "--port", str(port)), env=env, log_path=tmp_path / f"api-{port}-{id(env)}.log"
    )
    api = PaymentApi(url=f"http://127.0.0.1:{port}", process=process, env=env)
    if wait:
        wait_http_ok(f"{api.url}/healthz", process)
    return api


@contextmanager
def running_api(tmp_path: Path, port: int, env: dict[str, str]) -> Iterator[PaymentApi]:
    api = start_api(tmp_path, port, env)
    try:
        yield api
    finally:
        api.process.stop()
