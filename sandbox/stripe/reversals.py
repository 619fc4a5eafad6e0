"""Refunds and disputes, created through the control API so `/v1/refunds` and `/v1/disputes` have rows.

Onramp sessions have no charge a client could refund, so these objects only exist to let a client's
reconciliation poller (`created[gte]`, paging) be exercised; their shape is Stripe's, trimmed to the fields
such a poller reads.
"""

from __future__ import annotations

import re
import time
from typing import Any

from sandbox.stripe.ids import new_id

__all__ = ["DISPUTE_STATUSES", "REFUND_STATUSES", "ReversalError", "dispute_from_json", "refund_from_json"]

REFUND_STATUSES = ("pending", "requires_action", "succeeded", "failed", "canceled")
DISPUTE_STATUSES = (
    "warning_needs_response",
    "warning_under_review",
    "warning_closed",
    "needs_response",
    "under_review",
    "won",
    "lost",
)
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
DISPUTE_REASONS = (
    "bank_cannot_process",
    "credit_not_processed",
    "customer_initiated",
    "duplicate",
    "fraudulent",
    "general",
    "product_not_received",
    "product_unacceptable",
    "subscription_canceled",
    "unrecognized",
)
_CURRENCY = re.compile(r"^[a-z]{3}$")


class ReversalError(ValueError):
    pass


def refund_from_json(data: object) -> dict[str, Any]:
    fields = _common(data, {"reason", "payment_intent", "charge"}, REFUND_STATUSES, "succeeded")
    reason = fields.pop("reason", None)
    if reason is not None and reason not in REFUND_REASONS:
        raise ReversalError(f"reason must be one of {', '.join(REFUND_REASONS)}")
    return {
        "id": new_id("re_"),
        "object": "refund",
        "amount": fields["amount"],
        "balance_transaction": new_id("txn_"),
        "charge": fields.get("charge") or new_id("ch_"),
        "created": fields["created"],
        "currency": fields["currency"],
        "metadata": fields["metadata"],
        "payment_intent": fields.get("payment_intent"),
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": fields["status"],
        "transfer_reversal": None,
    }


def dispute_from_json(data: object) -> dict[str, Any]:
    fields = _common(data, {"reason", "payment_intent", "charge"}, DISPUTE_STATUSES, "needs_response")
    reason = fields.pop("reason", None) or "fraudulent"
    if reason not in DISPUTE_REASONS:
        raise ReversalError(f"reason must be one of {', '.join(DISPUTE_REASONS)}")
    return {
        "id": new_id("dp_"),
        "object": "dispute",
        "amount": fields["amount"],
        "balance_transactions": [],
        "charge": fields.get("charge") or new_id("ch_"),
        "created": fields["created"],
        "currency": fields["currency"],
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": fields["metadata"],
        "payment_intent": fields.get("payment_intent"),
        "reason": reason,
        "status": fields["status"],
    }


def _common(data: object, extra: set[str], statuses: tuple[str, ...], default_status: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ReversalError("body must be a JSON object")
    allowed = {"amount", "currency", "status", "created", "metadata", *extra}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ReversalError(f"unknown field(s): {', '.join(unknown)}")
    amount = data.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ReversalError("amount must be a positive integer in minor units (cents)")
    currency = data.get("currency", "usd")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise ReversalError("currency must be a three-letter lowercase ISO code")
    status = data.get("status", default_status)
    if status not in statuses:
        raise ReversalError(f"status must be one of {', '.join(statuses)}")
    created = data.get("created", int(time.time()))
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        raise ReversalError("created must be a unix timestamp in seconds")
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ReversalError("metadata must be an object of strings")
    fields: dict[str, Any] = {
        "amount": amount,
        "currency": currency,
        "status": status,
        "created": created,
        "metadata": metadata,
    }
    for name in extra:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise ReversalError(f"{name} must be a string")
        if value is not None:
            fields[name] = value
    return fields
