"""The two Stripe reads of reconciliation, through the official SDK: retrieve a session, list events.

Failures become `StripeUnavailable` (with Stripe's Retry-After when it sent one) or `SessionMissing`; each call
is timed and its failures counted in the API's Stripe families under its own `operation`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import stripe
from opentelemetry.trace import SpanKind

from payment.core.config import Settings
from payment.core.metrics import LabelSets
from payment.core.telemetry import Telemetry
from payment.onramp.stripe_gateway import StripeErrorType, build_stripe_client, stripe_error_type

__all__ = [
    "LIST_EVENTS",
    "RETRIEVE_SESSION",
    "ReconcileStripe",
    "SessionMissing",
    "StripeUnavailable",
    "metric_labels",
]

RETRIEVE_SESSION = "retrieve_onramp_session"  # `operation` label values of the Stripe families
LIST_EVENTS = "list_events"
ONRAMP_SESSIONS_PATH = "/v1/crypto/onramp_sessions"
EVENTS_PATH = "/v1/events"


def metric_labels() -> LabelSets:
    operations = (RETRIEVE_SESSION, LIST_EVENTS)
    return {
        "stripe_request_duration": [(operation,) for operation in operations],
        "stripe_errors": [(operation, error_type.value) for operation in operations for error_type in StripeErrorType],
    }


class StripeUnavailable(Exception):
    """Stripe could not answer (unreachable, 5xx, 429, refused credentials, an unexpected answer): stop the pass."""

    def __init__(self, error_type: StripeErrorType, retry_after: float | None = None) -> None:
        super().__init__(f"Stripe call failed: {error_type.value}")
        self.error_type = error_type
        self.retry_after = retry_after

    @property
    def rate_limited(self) -> bool:
        return self.error_type is StripeErrorType.rate_limited


class SessionMissing(Exception):
    """Stripe does not know this session (404): nothing to reconcile it with."""


def _retry_after(exc: stripe.StripeError) -> float | None:
    headers = exc.headers
    try:
        value = float(str(headers.get("retry-after"))) if headers is not None else None
    except (TypeError, ValueError):
        return None
    return None if value is None else max(0.0, min(value, 3600.0))


@dataclass
class ReconcileStripe:
    client: stripe.StripeClient
    telemetry: Telemetry = field(default_factory=Telemetry)

    @classmethod
    def from_settings(cls, settings: Settings, telemetry: Telemetry) -> ReconcileStripe | None:
        client = build_stripe_client(settings)
        return None if client is None else cls(client=client, telemetry=telemetry)

    def retrieve_session(self, stripe_session_id: str) -> dict[str, Any]:
        data = self._get(RETRIEVE_SESSION, f"{ONRAMP_SESSIONS_PATH}/{stripe_session_id}", {})
        if data.get("object") != "crypto.onramp_session":
            self._count(RETRIEVE_SESSION, StripeErrorType.invalid_response)
            raise StripeUnavailable(StripeErrorType.invalid_response)
        return data

    def list_events(self, params: dict[str, Any]) -> dict[str, Any]:
        data = self._get(LIST_EVENTS, EVENTS_PATH, params)
        if data.get("object") != "list" or not isinstance(data.get("data"), list):
            self._count(LIST_EVENTS, StripeErrorType.invalid_response)
            raise StripeUnavailable(StripeErrorType.invalid_response)
        return data

    def _count(self, operation: str, error_type: StripeErrorType) -> None:
        self.telemetry.metrics.stripe_errors.labels(operation, error_type.value).inc()

    def _get(self, operation: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        metrics = self.telemetry.metrics
        started = time.perf_counter()
        attributes = {"peer.service": "stripe", "stripe.operation": operation, "http.request.method": "GET"}
        with self.telemetry.span(f"stripe GET {operation}", kind=SpanKind.CLIENT, attributes=attributes) as span:
            try:
                response = self.client.raw_request("get", path, **params)
            except stripe.StripeError as exc:
                error_type = stripe_error_type(exc)
                self._count(operation, error_type)
                span.set_attribute("error.type", error_type.value)
                if exc.http_status == 404 and operation == RETRIEVE_SESSION:
                    raise SessionMissing(path) from exc
                raise StripeUnavailable(error_type, _retry_after(exc)) from exc
            finally:
                metrics.stripe_request_duration.labels(operation).observe(time.perf_counter() - started)
        data = response.data
        if not isinstance(data, dict):
            self._count(operation, StripeErrorType.invalid_response)
            raise StripeUnavailable(StripeErrorType.invalid_response)
        return dict(data)
