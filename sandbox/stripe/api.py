"""The Stripe /v1 routes this emulator answers, as thin handlers over `Emulator`.

    POST   /v1/crypto/onramp_sessions             GET /v1/crypto/onramp_sessions[/{id}]
    POST   /v1/webhook_endpoints[/{id}]           GET /v1/webhook_endpoints[/{id}]   DELETE /v1/webhook_endpoints/{id}
    GET    /v1/events[/{id}]    GET /v1/balance    GET /v1/refunds[/{id}]    GET /v1/disputes[/{id}]

Any other /v1 path gets Stripe's 404 "Unrecognized request URL".
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.routing import Route

from sandbox.stripe.emulator import Emulator, StoredEvent
from sandbox.stripe.errors import invalid_request, resource_missing
from sandbox.stripe.forms import Params
from sandbox.stripe.quotes import quotes_handler
from sandbox.stripe.store import Collection, UnknownCursor
from sandbox.stripe.webhooks import create_endpoint, update_endpoint
from sandbox.stripe.wire import ApiCall, ApiHandler, stripe_endpoint

__all__ = ["api_routes"]

T = TypeVar("T")
_LIST_PARAMS = frozenset({"limit", "starting_after", "ending_before", "created"})
_CREATED_OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def api_routes(emulator: Emulator) -> list[Route]:
    def route(path: str, handler: ApiHandler, methods: list[str]) -> Route:
        return Route(path, stripe_endpoint(emulator, handler), methods=methods)

    def create_session(call: ApiCall) -> tuple[int, Any]:
        return 200, emulator.create_session(call.params).obj

    def retrieve_session(call: ApiCall) -> tuple[int, Any]:
        call.params.reject_unknown(())
        return 200, emulator.session(call.path_params["id"]).obj

    def list_sessions(call: ApiCall) -> tuple[int, Any]:
        return 200, _list(
            emulator.sessions, call, "crypto onramp session", lambda r: r.obj, created_of=lambda r: r.obj["created"]
        )

    def create_webhook_endpoint(call: ApiCall) -> tuple[int, Any]:
        endpoint = create_endpoint(call.params)
        emulator.endpoints.add(endpoint.id, endpoint)
        return 200, endpoint.created_view()

    def webhook_endpoint(call: ApiCall) -> tuple[int, Any]:
        endpoint_id = call.path_params["id"]
        endpoint = emulator.endpoints.get(endpoint_id)
        if endpoint is None:
            raise resource_missing("webhook endpoint", endpoint_id)
        if call.method == "DELETE":
            emulator.endpoints.remove(endpoint_id)
            return 200, {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}
        if call.method == "POST":
            update_endpoint(endpoint, call.params)
        else:
            call.params.reject_unknown(())
        return 200, endpoint.obj

    def list_webhook_endpoints(call: ApiCall) -> tuple[int, Any]:
        return 200, _list(emulator.endpoints, call, "webhook endpoint", lambda e: e.obj)

    def list_events(call: ApiCall) -> tuple[int, Any]:
        # Stripe's filters: type or types[], created[gt|gte|lt|lte] (in _list), delivery_success; 30 days kept.
        emulator.expire_events()
        params = call.params
        if params.has("type") and params.has("types"):
            raise invalid_request(
                "You may only specify one of these parameters: type, types.", code="parameters_exclusive"
            )
        single = params.string("type")
        several = params.array("types")
        # true: delivered to every endpoint that wanted it; false: an endpoint's retries ran out without a 2xx.
        # An event still being retried is neither.
        delivery_success = params.boolean("delivery_success")

        def keep(event: StoredEvent) -> bool:
            event_type = event.type
            if delivery_success is True and (event.pending or event.failed):
                return False
            if delivery_success is False and not event.failed:
                return False
            if single is not None:  # Stripe allows one trailing wildcard: type=crypto.*
                return event_type.startswith(single[:-1]) if single.endswith("*") else event_type == single
            return several is None or event_type in several

        return 200, _list(
            emulator.events,
            call,
            "event",
            lambda e: e.obj,
            keep=keep,
            extra=("type", "types", "delivery_success"),
            created_of=lambda e: e.created,
        )

    def retrieve_event(call: ApiCall) -> tuple[int, Any]:
        call.params.reject_unknown(())
        event_id = call.path_params["id"]
        stored = emulator.events.get(event_id)
        if stored is None:
            raise resource_missing("event", event_id)
        return 200, stored.obj

    def balance(call: ApiCall) -> tuple[int, Any]:
        call.params.reject_unknown(())
        money = [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}]
        return 200, {"object": "balance", "available": money, "livemode": False, "pending": money}

    def reversal_list(collection: Collection[dict[str, Any]], kind: str) -> ApiHandler:
        def handler(call: ApiCall) -> tuple[int, Any]:
            params = call.params
            params.reject_unknown({*_LIST_PARAMS, "charge", "payment_intent"})
            charge = params.string("charge")
            intent = params.string("payment_intent")

            def keep(obj: dict[str, Any]) -> bool:
                return (charge is None or obj["charge"] == charge) and (
                    intent is None or obj["payment_intent"] == intent
                )

            return 200, _list(
                collection,
                call,
                kind,
                lambda o: o,
                keep=keep,
                extra=("charge", "payment_intent"),
                created_of=lambda o: o["created"],
            )

        return handler

    def reversal_get(collection: Collection[dict[str, Any]], kind: str) -> ApiHandler:
        def handler(call: ApiCall) -> tuple[int, Any]:
            call.params.reject_unknown(())
            obj = collection.get(call.path_params["id"])
            if obj is None:
                raise resource_missing(kind, call.path_params["id"])
            return 200, obj

        return handler

    def unrecognized(call: ApiCall) -> tuple[int, Any]:
        raise invalid_request(
            f"Unrecognized request URL ({call.method}: {call.path}). Please see https://stripe.com/docs or "
            "we can help at https://support.stripe.com/.",
            status=404,
        )

    return [
        route("/v1/crypto/onramp_sessions", create_session, ["POST"]),
        route("/v1/crypto/onramp_sessions", list_sessions, ["GET"]),
        route("/v1/crypto/onramp_sessions/{id}", retrieve_session, ["GET"]),
        route("/v1/crypto/onramp/quotes", quotes_handler(emulator), ["GET"]),
        route("/v1/webhook_endpoints", create_webhook_endpoint, ["POST"]),
        route("/v1/webhook_endpoints", list_webhook_endpoints, ["GET"]),
        route("/v1/webhook_endpoints/{id}", webhook_endpoint, ["GET", "POST", "DELETE"]),
        route("/v1/events", list_events, ["GET"]),
        route("/v1/events/{id}", retrieve_event, ["GET"]),
        route("/v1/balance", balance, ["GET"]),
        route("/v1/refunds", reversal_list(emulator.refunds, "refund"), ["GET"]),
        route("/v1/refunds/{id}", reversal_get(emulator.refunds, "refund"), ["GET"]),
        route("/v1/disputes", reversal_list(emulator.disputes, "dispute"), ["GET"]),
        route("/v1/disputes/{id}", reversal_get(emulator.disputes, "dispute"), ["GET"]),
        route("/v1/{rest:path}", unrecognized, ["GET", "POST", "DELETE", "PUT", "PATCH"]),
    ]


def _list(
    collection: Collection[T],
    call: ApiCall,
    kind: str,
    view: Callable[[T], dict[str, Any]],
    *,
    keep: Callable[[T], bool] | None = None,
    extra: tuple[str, ...] = (),
    created_of: Callable[[T], int] | None = None,
) -> dict[str, Any]:
    """A Stripe list object for `collection`, honouring limit, cursors and `created` filters."""
    params = call.params
    params.reject_unknown({*_LIST_PARAMS, *extra} if created_of else {*_LIST_PARAMS - {"created"}, *extra})
    limit = params.integer("limit", minimum=1, maximum=100) or 10
    starting_after = params.string("starting_after")
    ending_before = params.string("ending_before")
    if starting_after is not None and ending_before is not None:
        raise invalid_request(
            "You may only specify one of these parameters: starting_after, ending_before.",
            code="parameters_exclusive",
            param="ending_before",
        )
    window = _created_window(params) if created_of is not None else None
    if window is not None and created_of is not None:
        inner = keep

        def keep_created(item: T) -> bool:
            return window(created_of(item)) and (inner is None or inner(item))

        keep = keep_created
    try:
        items, has_more = collection.page(
            limit=limit, starting_after=starting_after, ending_before=ending_before, keep=keep
        )
    except UnknownCursor as exc:
        cursor = "starting_after" if starting_after is not None else "ending_before"
        raise resource_missing(kind, str(exc.args[0]), param=cursor, status=400) from None
    return {"object": "list", "data": [view(i) for i in items], "has_more": has_more, "url": call.path}


def _created_window(params: Params) -> Callable[[int], bool] | None:
    """`created=<ts>` or `created[gt|gte|lt|lte]=<ts>` as a predicate on a timestamp."""
    if not params.has("created"):
        return None
    raw = params.data["created"]
    if isinstance(raw, str):
        exact = params.integer("created", minimum=0, maximum=2**63)
        return lambda ts: ts == exact
    bounds = Params({f"created[{k}]": v for k, v in raw.items()} if isinstance(raw, dict) else {})
    checks: list[Callable[[int], bool]] = []
    for name in bounds.data:
        compare = _CREATED_OPERATORS.get(name[len("created[") : -1])
        if compare is None:
            raise invalid_request(f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
        value = bounds.integer(name, minimum=0, maximum=2**63)
        assert value is not None
        checks.append(_bound(compare, value))
    if not checks:
        raise invalid_request("Invalid created: expected a timestamp or a hash of gt/gte/lt/lte.", param="created")
    return lambda ts: all(check(ts) for check in checks)


def _bound(compare: Callable[[int, int], bool], value: int) -> Callable[[int], bool]:
    return lambda ts: compare(ts, value)
