"""Errors in Stripe's wire shape.

One exception, `StripeError`, carries everything Stripe puts in an error body plus the HTTP status; the
functions below build the kinds this emulator answers with. Domain code raises them, and the one place that
writes responses (`wire.py`) renders them, so no handler formats an error body itself.

    StripeError
      status 400  invalid_request_error   parameter_missing, parameter_unknown, parameter_invalid_*, ...
      status 400  invalid_request_error   crypto_onramp_disabled, ... (the onramp refused to this account)
      status 400  idempotency_error
      status 401  invalid_request_error   (no or bad API key; Stripe uses this type for auth too)
      status 404  invalid_request_error   resource_missing
      status 429  invalid_request_error   rate_limit
      status 500  api_error
      status 503  api_error
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "ONRAMP_UNAVAILABLE_MESSAGES",
    "StripeError",
    "api_error",
    "idempotency_error",
    "invalid_request",
    "onramp_unavailable",
    "rate_limited",
    "resource_missing",
    "unauthorized",
]

_DOC_URL = "https://stripe.com/docs/error-codes/"
_LOG_URL = "https://dashboard.stripe.com/test/logs/"

# Codes with which Stripe refuses every onramp session of an account, whoever the buyer (HTTP 400, Stripe's Onramp
# API reference "Validation and errors", and its crypto onramp error codes), and the messages Stripe gives.
ONRAMP_UNAVAILABLE_MESSAGES: dict[str, str] = {
    "crypto_onramp_disabled": "We temporarily disabled the onramp service. Please try again later.",
    "crypto_onramp_merchant_not_properly_setup": (
        "An onramp session can't be created for the requesting merchant. business_name and business_url are required."
    ),
    "crypto_onramp_invalid_merchant_configuration": (
        "The merchant account is not properly configured for crypto onramp. Contact support."
    ),
}


class StripeError(Exception):
    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self, request_id: str | None) -> dict[str, Any]:
        # Every key is present, null when it does not apply, so clients can index without guards.
        return {
            "error": {
                "type": self.type,
                "code": self.code,
                "message": self.message,
                "param": self.param,
                "doc_url": _DOC_URL + self.code if self.code else None,
                "request_log_url": _LOG_URL + request_id if request_id else None,
            }
        }

    def render(self, request_id: str | None) -> bytes:
        return json.dumps(self.body(request_id), separators=(",", ":")).encode()


def invalid_request(
    message: str, *, code: str | None = None, param: str | None = None, status: int = 400
) -> StripeError:
    return StripeError(status, "invalid_request_error", message, code=code, param=param)


def onramp_unavailable(code: str) -> StripeError:
    """Stripe's answer when the onramp will not serve this account at all (one of ONRAMP_UNAVAILABLE_MESSAGES)."""
    return invalid_request(ONRAMP_UNAVAILABLE_MESSAGES[code], code=code)


def resource_missing(kind: str, object_id: str, *, param: str = "id", status: int = 404) -> StripeError:
    return invalid_request(f"No such {kind}: '{object_id}'", code="resource_missing", param=param, status=status)


def unauthorized(message: str) -> StripeError:
    return StripeError(401, "invalid_request_error", message)


def rate_limited() -> StripeError:
    return invalid_request(
        "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
        code="rate_limit",
        status=429,
    )


def idempotency_error(message: str) -> StripeError:
    return StripeError(400, "idempotency_error", message)


def api_error(message: str, *, status: int = 500, retry: bool | None = None) -> StripeError:
    headers = {} if retry is None else {"Stripe-Should-Retry": "true" if retry else "false"}
    return StripeError(status, "api_error", message, headers=headers)
