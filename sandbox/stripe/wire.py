"""What every /v1 call goes through, in Stripe's order, before and after its handler.

    latency fault -> down fault (503) -> API key (401) -> rate-limit / error faults (429 / 500)
    -> parse form (body for POST, query otherwise) -> idempotency replay or mismatch -> handler
    -> JSON body, stored for the idempotency key if it succeeded

Every response carries `Request-Id` and `Stripe-Version`; errors are rendered from StripeError in one
place. This is a plain function wrapper rather than Starlette middleware: BaseHTTPMiddleware costs more per
request than a whole session create, and only /v1 routes need it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sandbox.stripe.config import DEFAULT_API_VERSION
from sandbox.stripe.emulator import Emulator
from sandbox.stripe.errors import (
    StripeError,
    api_error,
    idempotency_error,
    invalid_request,
    rate_limited,
    unauthorized,
)
from sandbox.stripe.forms import Params, parse_form
from sandbox.stripe.idempotency import fingerprint
from sandbox.stripe.ids import new_id

__all__ = ["ApiCall", "ApiHandler", "authenticate", "stripe_endpoint"]

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json"
_MAX_IDEMPOTENCY_KEY = 255


@dataclass(slots=True)
class ApiCall:
    method: str
    path: str
    path_params: Mapping[str, Any]
    params: Params
    request_id: str
    idempotency_key: str | None


ApiHandler = Callable[[ApiCall], tuple[int, Any]]


def stripe_endpoint(emulator: Emulator, handler: ApiHandler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        request_id = new_id("req_", 14)
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": request.headers.get("stripe-version") or DEFAULT_API_VERSION,
        }
        try:
            return await _handle(emulator, handler, request, request_id, headers)
        except StripeError as err:
            headers.update(err.headers)
            return Response(err.render(request_id), err.status, headers=headers, media_type=JSON_TYPE)
        except Exception:
            logger.exception("unexpected error in %s %s", request.method, request.url.path)
            crash = api_error("An unexpected error occurred in the Stripe emulator.")
            return Response(crash.render(request_id), crash.status, headers=headers, media_type=JSON_TYPE)

    return endpoint


async def _handle(
    emulator: Emulator, handler: ApiHandler, request: Request, request_id: str, headers: dict[str, str]
) -> Response:
    faults = emulator.faults
    if faults.faults.latency_ms:
        await asyncio.sleep(faults.faults.latency_ms / 1000)
    if faults.faults.down:
        raise api_error("The Stripe API is temporarily unavailable (sandbox fault: down).", status=503)
    authenticate(request.headers.get("authorization"), emulator.config.api_key)
    outcome = faults.api_outcome()
    if outcome == "rate_limit":
        raise rate_limited()
    if outcome == "error":
        raise api_error("An unknown error occurred (sandbox fault: error_rate).")

    method = request.method
    path: str = request.scope["path"]
    raw = await request.body() if method == "POST" else request.scope["query_string"]
    form = parse_form(raw)
    key = request.headers.get("idempotency-key") if method == "POST" else None
    print_ = b""
    if key is not None:
        if len(key) > _MAX_IDEMPOTENCY_KEY:
            raise invalid_request(
                f"Idempotency-Key must be at most {_MAX_IDEMPOTENCY_KEY} characters.", param="Idempotency-Key"
            )
        headers["Idempotency-Key"] = key
        print_ = fingerprint(method, path, form)
        stored = emulator.idempotency.get(key)
        if stored is not None:
            if stored.fingerprint != print_:
                raise idempotency_error(
                    f"Keys for idempotent requests can only be used with the same parameters they were first "
                    f"used with. Try using a key other than '{key}' if you meant to execute a different request."
                )
            headers["Idempotent-Replayed"] = "true"
            return Response(stored.body, stored.status, headers=headers, media_type=JSON_TYPE)

    call = ApiCall(method, path, request.path_params, Params(form), request_id, key)
    status, payload = handler(call)
    body = json.dumps(payload, separators=(",", ":")).encode()
    if key is not None and 200 <= status < 300:
        emulator.idempotency.put(key, print_, status, body)
    return Response(body, status, headers=headers, media_type=JSON_TYPE)


_NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization header, using "
    "Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
)


def authenticate(header: str | None, required_key: str | None) -> str:
    """The API key of a request (Bearer, or Basic with the key as user name, as curl -u sends it)."""
    if not header:
        raise _unauthorized(_NO_KEY)
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        key = credentials.strip()
    elif scheme == "basic":
        try:
            key = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            raise _unauthorized("Invalid Basic authorization header.") from None
    else:
        raise _unauthorized(_NO_KEY)
    if not key:
        raise _unauthorized(_NO_KEY)
    if key.startswith(("sk_live_", "rk_live_")):
        raise _unauthorized("This is a test-mode emulator of Stripe: live API keys are refused. Use a sk_test_ key.")
    # Without a configured key any well-formed test key is accepted, as any key of any test account would be.
    valid = key == required_key if required_key is not None else key.startswith("sk_test_") and len(key) > 8
    if not valid:
        raise _unauthorized(f"Invalid API Key provided: {_redact(key)}")
    return key


def _unauthorized(message: str) -> StripeError:
    err = unauthorized(message)
    err.headers["WWW-Authenticate"] = 'Basic realm="Stripe"'
    return err


def _redact(key: str) -> str:
    prefix, sep, _ = key.rpartition("_")
    visible = key[-4:]
    return f"{prefix}{sep}{'*' * 4}{visible}" if sep else f"{'*' * 4}{visible}"
