"""Webhook endpoints, events and the Stripe-Signature scheme.

Signature, as Stripe documents it and the official SDKs verify it: `t=<unix seconds>,v1=<hex>` where hex is
HMAC-SHA256 keyed with the endpoint secret (the whole `whsec_...` string, as UTF-8) over
`f"{t}.{payload}"`. Each attempt is signed afresh, so a retry carries a current timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sandbox.stripe.errors import invalid_request
from sandbox.stripe.forms import Params
from sandbox.stripe.ids import new_id, new_webhook_secret

__all__ = [
    "SESSION_UPDATED",
    "WebhookEndpoint",
    "build_event",
    "create_endpoint",
    "sign",
    "update_endpoint",
]

SESSION_UPDATED = "crypto.onramp_session_updated"
_EVENT_TYPE = re.compile(r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)$")


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass(slots=True)
class WebhookEndpoint:
    obj: dict[str, Any]  # public object; the secret is only shown in the create response
    secret: str

    @property
    def id(self) -> str:
        return str(self.obj["id"])

    @property
    def url(self) -> str:
        return str(self.obj["url"])

    def wants(self, event_type: str) -> bool:
        if self.obj["status"] != "enabled":
            return False
        for pattern in self.obj["enabled_events"]:
            if pattern in ("*", event_type):
                return True
            if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
                return True
        return False

    def created_view(self) -> dict[str, Any]:
        return {**self.obj, "secret": self.secret}


_CREATE = frozenset({"url", "enabled_events", "description", "metadata", "api_version"})
_UPDATE = frozenset({"url", "enabled_events", "description", "metadata", "disabled"})


def create_endpoint(params: Params, *, secret: str | None = None) -> WebhookEndpoint:
    params.reject_unknown(_CREATE)
    url = _url(params, required=True)
    events = _enabled_events(params, required=True)
    obj: dict[str, Any] = {
        "id": new_id("we_"),
        "object": "webhook_endpoint",
        "api_version": params.string("api_version"),
        "application": None,
        "created": int(time.time()),
        "description": params.string("description"),
        "enabled_events": events,
        "livemode": False,
        "metadata": params.string_hash("metadata") or {},
        "status": "enabled",
        "url": url,
    }
    return WebhookEndpoint(obj=obj, secret=secret or new_webhook_secret())


def update_endpoint(endpoint: WebhookEndpoint, params: Params) -> None:
    params.reject_unknown(_UPDATE)
    url = _url(params, required=False)
    events = _enabled_events(params, required=False)
    disabled = params.boolean("disabled")
    if url is not None:
        endpoint.obj["url"] = url
    if events is not None:
        endpoint.obj["enabled_events"] = events
    if params.has("description"):
        endpoint.obj["description"] = params.string("description")
    metadata = params.string_hash("metadata")
    if metadata is not None:
        endpoint.obj["metadata"] = {**endpoint.obj["metadata"], **metadata}
    if disabled is not None:
        endpoint.obj["status"] = "disabled" if disabled else "enabled"


def _url(params: Params, *, required: bool) -> str | None:
    url = params.string("url", required=required)
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_request(f"Invalid URL: {url}", code="url_invalid", param="url")
    return url


def _enabled_events(params: Params, *, required: bool) -> list[str] | None:
    events = params.array("enabled_events")
    if events is None:
        if required:
            raise invalid_request(
                "Missing required param: enabled_events.", code="parameter_missing", param="enabled_events"
            )
        return None
    for i, name in enumerate(events):
        if not _EVENT_TYPE.match(name):
            raise invalid_request(
                f"Invalid event type: {name}", code="parameter_invalid_string", param=f"enabled_events[{i}]"
            )
    return events


def build_event(
    event_type: str,
    snapshot: dict[str, Any],
    *,
    previous_attributes: dict[str, Any] | None,
    api_version: str,
    pending_webhooks: int,
    created: int | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": snapshot}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": new_id("evt_"),
        "object": "event",
        "api_version": api_version,
        "created": int(time.time()) if created is None else created,
        "data": data,
        "livemode": False,
        "pending_webhooks": pending_webhooks,
        # Status changes are Stripe-side (the customer paying, the chain confirming), so no API request
        # caused them: Stripe sends null id and key for such events.
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
