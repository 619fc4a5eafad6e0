"""Delivery statuses and which of them are settled.

``pending``: not yet checked, or waiting (for Stripe's transaction id, the treasury transfer to be mined, or
confirmations). ``held``: a treasury transfer over a cap or a minimum balance, waiting for room or an operator.
``verified``: the MUSD is in the wallet, checked on chain. ``mismatch``: a mined transaction that does not pay
the wallet what it should (wrong recipient, token or amount). ``not_found``: no such transaction on chain (yet;
re-checked until the deadline). ``failed``: the transaction reverted, or never confirmed before the deadline.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["RECHECKED_STATUSES", "SETTLED_STATUSES", "DeliveryStatus"]


class DeliveryStatus(StrEnum):
    pending = "pending"
    held = "held"
    verified = "verified"
    mismatch = "mismatch"
    not_found = "not_found"
    failed = "failed"


# The worker looks at these again (with backoff); the others wait for an operator.
RECHECKED_STATUSES = frozenset({DeliveryStatus.pending, DeliveryStatus.held, DeliveryStatus.not_found})
SETTLED_STATUSES = frozenset({DeliveryStatus.verified, DeliveryStatus.mismatch, DeliveryStatus.failed})
