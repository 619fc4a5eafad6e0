"""Stripe Crypto Onramp through the official SDK, with its failures turned into domain problems.

The SDK has no typed onramp resource, so sessions are created (and quotes read) with ``StripeClient.raw_request``.
The SDK's own retry (bounded by ``stripe_max_network_retries``) covers connection errors, 409 and 5xx and honours
``Stripe-Should-Retry``; every POST carries an idempotency key, so those retries never create twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import aiohttp
import httpx
import stripe
from opentelemetry.trace import Span, SpanKind

from payment.core.config import Settings
from payment.core.metrics import LabelSets
from payment.core.problems import Problem, UpstreamProblem
from payment.core.telemetry import Telemetry

__all__ = [
    "INTEGRATION_FAULT_CODES",
    "OPERATION",
    "OPERATIONS",
    "QUOTES_OPERATION",
    "OnrampGateway",
    "OnrampUnavailable",
    "StripeErrorType",
    "StripeOnrampGateway",
    "StripeRejected",
    "build_stripe_client",
    "metric_labels",
    "stripe_error_type",
]

log = logging.getLogger(__name__)

ONRAMP_SESSIONS_PATH = "/v1/crypto/onramp_sessions"
ONRAMP_QUOTES_PATH = "/v1/crypto/onramp/quotes"
# The `operation` label of the API's Stripe families: one per call the API makes.
OPERATION = "create_onramp_session"
QUOTES_OPERATION = "get_onramp_quotes"
OPERATIONS = (OPERATION, QUOTES_OPERATION)

# Stripe's crypto onramp codes that mean the integration, not the buyer, is at fault: no session can be created
# for anyone until Stripe or we act, so they are an outage (503 onramp-unavailable, alert OnrampUnavailable), not a
# refusal the buyer could act on (422 stripe-rejected). Stripe answers each with HTTP 400 invalid_request_error.
# Sources: Stripe's Onramp API reference, "Validation and errors" (https://docs.stripe.com/crypto/onramp/api-reference):
#   crypto_onramp_disabled                     "We're unable to mint new sessions because of an incident"
#   crypto_onramp_merchant_not_properly_setup  the business has not set business_name or business_url (Dashboard,
#                                              Settings > Public details)
# and Stripe's crypto onramp error codes (https://docs.stripe.com/crypto/onramp/embedded-components-error-codes):
#   crypto_onramp_invalid_merchant_configuration  "The merchant account is not properly configured for crypto
#                                                 onramp. Contact support."
# The buyer's codes (crypto_onramp_unsupported_country, crypto_onramp_unsupportable_customer, limits, ...) stay
# rejections.
INTEGRATION_FAULT_CODES = frozenset(
    {
        "crypto_onramp_disabled",
        "crypto_onramp_merchant_not_properly_setup",
        "crypto_onramp_invalid_merchant_configuration",
    }
)


class StripeErrorType(StrEnum):
    """The class of a failed Stripe call (`error_type` of `musdpay_stripe_errors_total`, and of the monitor's)."""

    timeout = "timeout"
    connection = "connection"
    rate_limited = "rate_limited"
    server_error = "server_error"
    authentication = "authentication"
    rejected = "rejected"  # Stripe refused the buyer (crypto_onramp_* codes)
    onramp_unavailable = "onramp_unavailable"  # Stripe refuses every session: INTEGRATION_FAULT_CODES
    invalid_request = "invalid_request"
    invalid_response = "invalid_response"  # answered, but not with what we asked for


def metric_labels() -> LabelSets:
    """The label tuples of the API's Stripe families, for `PaymentMetrics.initialise`."""
    return {
        "stripe_request_duration": [(operation,) for operation in OPERATIONS],
        "stripe_errors": [(operation, error_type.value) for operation in OPERATIONS for error_type in StripeErrorType],
    }


class StripeRejected(Problem):
    """Stripe refused to open the session for a reason the buyer or dApp can act on (a 4xx to the caller)."""

    def __init__(self, code: str, message: str, param: str | None) -> None:
        extensions: dict[str, Any] = {"code": code}
        if param:
            extensions["param"] = param
        super().__init__(
            status=422,
            slug="stripe-rejected",
            title="Stripe refused the onramp session",
            detail=message,
            extensions=extensions,
        )


class OnrampUnavailable(UpstreamProblem):
    """Stripe will not open onramp sessions for this integration (disabled, or the account is not set up): an
    outage on our side of the buyer, so a 503 the dApp retries later, never a rejection of the buyer."""

    def __init__(self, code: str) -> None:
        super().__init__(
            503,
            "onramp-unavailable",
            "The card onramp is unavailable right now; try again later.",
            retry_after=60,
            extensions={"code": code},
        )
        self.title = "Onramp unavailable"


class OnrampGateway(Protocol):
    def create_session(self, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]: ...

    async def create_session_async(self, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]: ...

    async def get_quotes_async(self, params: dict[str, Any]) -> dict[str, Any]: ...


def build_stripe_client(settings: Settings, *, asynchronous: bool = False) -> stripe.StripeClient | None:
    """A client over httpx for synchronous calls, or over aiohttp for the API's async path.

    Two clients because the SDK takes one HTTP client each and none is fast both ways: through the SDK, an
    async call costs about 0.33 ms of CPU with aiohttp against 1.1 ms with httpx's async client (measured
    against the emulator, 500 calls), and the API makes one per session created.
    """
    if settings.stripe_secret_key is None:
        return None
    # The SDK's own latency telemetry (an extra JSON header per request, built on every call) duplicates our
    # metrics and costs CPU on the hot path.
    stripe.enable_telemetry = False
    base_addresses: dict[str, str] = {}
    if settings.stripe_api_base:
        base_addresses["api"] = settings.stripe_api_base.rstrip("/")
    http_client: stripe.HTTPClient
    if asynchronous:
        http_client = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=settings.stripe_timeout_seconds))
    else:
        http_client = stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds, allow_sync_methods=True)
    return stripe.StripeClient(
        settings.stripe_secret_key.get_secret_value(),
        base_addresses=base_addresses,  # type: ignore[arg-type]
        stripe_version=settings.stripe_api_version,
        max_network_retries=settings.stripe_max_network_retries,
        http_client=http_client,
    )


def _retry_after(headers: Any, default: int) -> int:
    try:
        value = int(str(headers.get("retry-after")))
    except (AttributeError, TypeError, ValueError):
        return default
    return max(1, min(value, 300))


@dataclass
class StripeOnrampGateway:
    client: stripe.StripeClient  # synchronous calls (the recovery sweep)
    async_client: stripe.StripeClient  # the API's calls, on the event loop
    telemetry: Telemetry = field(default_factory=Telemetry)

    @classmethod
    def from_settings(cls, settings: Settings, telemetry: Telemetry) -> StripeOnrampGateway | None:
        client = build_stripe_client(settings)
        async_client = build_stripe_client(settings, asynchronous=True)
        if client is None or async_client is None:
            return None
        return cls(client=client, async_client=async_client, telemetry=telemetry)

    async def aclose(self) -> None:
        """Close the aiohttp session (it belongs to the event loop that is ending)."""
        http = self.async_client._requestor._client
        if http is not None:
            await http.close_async()  # type: ignore[no-untyped-call]

    def create_session(self, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        with self._observed(OPERATION, "POST", ONRAMP_SESSIONS_PATH) as (span, on_error):
            try:
                response = self.client.raw_request(
                    "post", ONRAMP_SESSIONS_PATH, idempotency_key=idempotency_key, **params
                )
            except stripe.StripeError as exc:
                raise on_error(exc) from exc
            return _session_data(response, span, self.telemetry)

    async def create_session_async(self, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        with self._observed(OPERATION, "POST", ONRAMP_SESSIONS_PATH) as (span, on_error):
            try:
                response = await self.async_client.raw_request_async(
                    "post", ONRAMP_SESSIONS_PATH, idempotency_key=idempotency_key, **params
                )
            except stripe.StripeError as exc:
                raise on_error(exc) from exc
            return _session_data(response, span, self.telemetry)

    async def get_quotes_async(self, params: dict[str, Any]) -> dict[str, Any]:
        """Stripe's `crypto.onramp.quotes` object for these parameters (a GET: the SDK retries it without a key)."""
        with self._observed(QUOTES_OPERATION, "GET", ONRAMP_QUOTES_PATH) as (span, on_error):
            try:
                response = await self.async_client.raw_request_async("get", ONRAMP_QUOTES_PATH, **params)
            except stripe.StripeError as exc:
                raise on_error(exc) from exc
            return _quotes_data(response, span, self.telemetry)

    @contextmanager
    def _observed(
        self, operation: str, method: str, path: str
    ) -> Iterator[tuple[Span, Callable[[stripe.StripeError], Problem]]]:
        """The span, duration and error metrics of one call; yields a translator for SDK errors."""
        metrics = self.telemetry.metrics
        started = time.perf_counter()

        def on_error(exc: stripe.StripeError) -> Problem:
            error_type = stripe_error_type(exc).value
            metrics.stripe_errors.labels(operation, error_type).inc()
            span.set_attribute("error.type", error_type)
            return _translate(exc)

        with self.telemetry.span(
            f"stripe {method} {path}",
            kind=SpanKind.CLIENT,
            attributes={
                "peer.service": "stripe",
                "stripe.operation": operation,
                "http.request.method": method,
                "url.path": path,
            },
        ) as span:
            try:
                yield span, on_error
            finally:
                metrics.stripe_request_duration.labels(operation).observe(time.perf_counter() - started)


def _answered(response: Any, span: Span) -> None:
    span.set_attribute("http.response.status_code", response.code)
    if response.request_id:
        span.set_attribute("stripe.request_id", response.request_id)


def _session_data(response: Any, span: Span, telemetry: Telemetry) -> dict[str, Any]:
    data = response.data
    if not isinstance(data, dict) or not str(data.get("id", "")).startswith("cos_"):
        telemetry.metrics.stripe_errors.labels(OPERATION, StripeErrorType.invalid_response.value).inc()
        raise UpstreamProblem(502, "stripe-unavailable", "Stripe returned an unexpected response.")
    _answered(response, span)
    return dict(data)


# Stripe's reference names the object "crypto.onramp.quotes" in its example and "crypto.onramp_quotes" elsewhere.
_QUOTES_OBJECTS = frozenset({"crypto.onramp.quotes", "crypto.onramp_quotes"})


def _quotes_data(response: Any, span: Span, telemetry: Telemetry) -> dict[str, Any]:
    data = response.data
    if (
        not isinstance(data, dict)
        or data.get("object") not in _QUOTES_OBJECTS
        or not isinstance(data.get("destination_network_quotes"), dict)
    ):
        telemetry.metrics.stripe_errors.labels(QUOTES_OPERATION, StripeErrorType.invalid_response.value).inc()
        raise UpstreamProblem(502, "stripe-unavailable", "Stripe returned an unexpected response.")
    _answered(response, span)
    return dict(data)


def stripe_error_type(exc: stripe.StripeError) -> StripeErrorType:
    """A low-cardinality class of the failure, for metrics and spans (`musdpay_stripe_errors_total`; the monitor
    classifies its probes' failures with it too)."""
    if isinstance(exc, stripe.APIConnectionError):
        return StripeErrorType.timeout if _timed_out(exc) else StripeErrorType.connection
    status = exc.http_status or 0
    if status == 429:
        return StripeErrorType.rate_limited
    if status >= 500:
        return StripeErrorType.server_error
    if status in (401, 403):
        return StripeErrorType.authentication
    code = getattr(exc.error, "code", None) or exc.code or ""
    if code in INTEGRATION_FAULT_CODES:
        return StripeErrorType.onramp_unavailable
    if code.startswith("crypto_onramp_"):
        return StripeErrorType.rejected
    return StripeErrorType.invalid_request


def _timed_out(exc: stripe.APIConnectionError) -> bool:
    # httpx raises its TimeoutException; aiohttp raises asyncio's TimeoutError (ServerTimeoutError included).
    return isinstance(exc.__cause__, httpx.TimeoutException | TimeoutError)


def _translate(exc: stripe.StripeError) -> Problem:
    """Map an SDK error to what the dApp should do: fix the request (4xx) or retry later (502/503/504)."""
    status = exc.http_status
    error = exc.error
    code = getattr(error, "code", None) or exc.code or ""
    if isinstance(exc, stripe.APIConnectionError):
        timed_out = _timed_out(exc)
        log.warning("stripe unreachable: %s", "timeout" if timed_out else "connection error")
        if timed_out:
            return UpstreamProblem(504, "stripe-unavailable", "Stripe did not answer in time.", retry_after=5)
        return UpstreamProblem(503, "stripe-unavailable", "Stripe cannot be reached.", retry_after=5)
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        return UpstreamProblem(
            503,
            "stripe-rate-limited",
            "Stripe is rate limiting requests.",
            retry_after=_retry_after(exc.headers, 2),
        )
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        log.error("stripe refused our credentials (%s): check MUSDPAY_STRIPE_SECRET_KEY", status)
        return UpstreamProblem(503, "stripe-unavailable", "The payment provider is misconfigured.", retry_after=60)
    if status is not None and 400 <= status < 500 and code in INTEGRATION_FAULT_CODES:
        log.error("stripe refuses every onramp session for this account: code=%s (see OnrampUnavailable)", code)
        return OnrampUnavailable(code)
    if status is not None and 400 <= status < 500 and code.startswith("crypto_onramp_"):
        message = getattr(error, "message", None) or "Stripe refused to create the onramp session."
        return StripeRejected(code, str(message), getattr(error, "param", None))
    if status is not None and status >= 500:
        return UpstreamProblem(
            503, "stripe-unavailable", "Stripe is unavailable.", retry_after=_retry_after(exc.headers, 5)
        )
    # Any other 4xx means we sent something Stripe does not accept: our fault, not the caller's.
    log.error("stripe rejected our request: status=%s code=%s", status, code or "-")
    return UpstreamProblem(
        502, "stripe-unavailable", "The payment provider rejected the request.", extensions={"code": code}
    )
