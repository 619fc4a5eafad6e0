"""The sandbox control API under /_sandbox/: JSON in and out, no auth, no injected faults.

    POST      /_sandbox/onramp_sessions/{id}/advance   {"status": "<target>"} -> the session
    GET       /_sandbox/faults                         -> current faults
    PUT       /_sandbox/faults                         replace faults (omitted ones reset; seed kept unless given)
    PATCH     /_sandbox/faults                         change only the faults given
    POST      /_sandbox/refunds                        {"amount", "currency", "status", ...} -> refund
    POST      /_sandbox/disputes                       {"amount", "currency", "status", ...} -> dispute
    GET       /_sandbox/deliveries                     {"data": [attempt, ...]}; filters event_id, object_id, type
    GET       /_sandbox/health                         {"status": "ok", ...}

Errors use the same body shape as the Stripe API ({"error": {"type", "code", "message", ...}}).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.stripe.emulator import Emulator, FulfillmentError
from sandbox.stripe.errors import StripeError, api_error, invalid_request
from sandbox.stripe.faults import Faults, FaultsError
from sandbox.stripe.reversals import ReversalError, dispute_from_json, refund_from_json
from sandbox.stripe.sessions import TransitionError
from sandbox.stripe.store import Collection

__all__ = ["control_routes"]

ControlHandler = Callable[[Request], Awaitable[tuple[int, Any]]]


def control_routes(emulator: Emulator) -> list[Route]:
    async def advance(request: Request) -> tuple[int, Any]:
        body = await _json(request)
        target = body.get("status") if isinstance(body, dict) else None
        if not isinstance(target, str):
            raise invalid_request("Body must be a JSON object with a string 'status'.", param="status")
        try:
            record = await emulator.advance(request.path_params["id"], target)
        except TransitionError as exc:
            raise invalid_request(str(exc), code="invalid_status_transition", param="status") from None
        except FulfillmentError as exc:
            raise api_error(str(exc), status=502) from None
        return 200, record.obj

    async def faults(request: Request) -> tuple[int, Any]:
        if request.method != "GET":
            body = await _json(request)
            current = emulator.faults.faults
            # PUT replaces (so a test starts from a clean slate) but keeps the generator's position
            # unless a seed is given; PATCH changes only what it names.
            base = current if request.method == "PATCH" else Faults(seed=current.seed)
            try:
                updated = Faults.from_json(body, base=base)
            except FaultsError as exc:
                raise invalid_request(str(exc)) from None
            emulator.faults.set(updated, reseed=isinstance(body, dict) and "seed" in body)
        return 200, emulator.faults.faults.to_json()

    def reversal(create: Callable[[object], dict[str, Any]], store: Collection[dict[str, Any]]) -> ControlHandler:
        async def handler(request: Request) -> tuple[int, Any]:
            try:
                obj = create(await _json(request))
            except ReversalError as exc:
                raise invalid_request(str(exc)) from None
            store.add(obj["id"], obj)
            return 200, obj

        return handler

    async def deliveries(request: Request) -> tuple[int, Any]:
        query = request.query_params
        filters = {name: query[name] for name in ("event_id", "object_id", "type", "endpoint_id") if name in query}
        data = [d for d in emulator.delivery.log if all(d[k] == v for k, v in filters.items())]
        return 200, {"data": data, "pending": emulator.delivery.pending}

    async def health(request: Request) -> tuple[int, Any]:
        del request
        return 200, {
            "status": "ok",
            "sessions": len(emulator.sessions),
            "events": len(emulator.events),
            "pending_deliveries": emulator.delivery.pending,
        }

    def route(path: str, handler: ControlHandler, methods: list[str]) -> Route:
        return Route(path, _json_endpoint(handler), methods=methods)

    return [
        route("/_sandbox/onramp_sessions/{id}/advance", advance, ["POST"]),
        route("/_sandbox/faults", faults, ["GET", "PUT", "PATCH"]),
        route("/_sandbox/refunds", reversal(refund_from_json, emulator.refunds), ["POST"]),
        route("/_sandbox/disputes", reversal(dispute_from_json, emulator.disputes), ["POST"]),
        route("/_sandbox/deliveries", deliveries, ["GET"]),
        route("/_sandbox/health", health, ["GET"]),
    ]


def _json_endpoint(handler: ControlHandler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            status, payload = await handler(request)
            body = json.dumps(payload, separators=(",", ":")).encode()
        except StripeError as err:
            status, body = err.status, err.render(None)
        return Response(body, status, media_type="application/json")

    return endpoint


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise invalid_request("Body must be valid JSON.") from None
