"""Onramp session statuses and the rule that moves a session only forward.

Stripe's statuses, in order: ``initialized -> requires_payment -> fulfillment_processing -> fulfillment_complete``;
``rejected`` may end any non-final one. ``creating`` is ours: the row exists but Stripe has not answered yet.

Webhooks come duplicated and out of order, and each carries a full snapshot of the session. A snapshot is applied
only if its *position* ``(rank, event created, event id)`` is greater than the last applied one; so the final state
is the maximum over all snapshots received, whatever their order or duplication.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FINAL_STATUSES", "OPEN_STATUSES", "SessionStatus", "rank"]


class SessionStatus(StrEnum):
    creating = "creating"
    initialized = "initialized"
    requires_payment = "requires_payment"
    fulfillment_processing = "fulfillment_processing"
    fulfillment_complete = "fulfillment_complete"
    rejected = "rejected"


_RANK: dict[SessionStatus, int] = {
    SessionStatus.creating: 0,
    SessionStatus.initialized: 1,
    SessionStatus.requires_payment: 2,
    SessionStatus.fulfillment_processing: 3,
    # Both final statuses share the top rank: neither can replace the other.
    SessionStatus.fulfillment_complete: 4,
    SessionStatus.rejected: 4,
}

FINAL_STATUSES = frozenset({SessionStatus.fulfillment_complete, SessionStatus.rejected})
OPEN_STATUSES = frozenset(set(SessionStatus) - FINAL_STATUSES - {SessionStatus.creating})


def rank(status: SessionStatus) -> int:
    return _RANK[status]


def is_newer(current: tuple[SessionStatus, int, str], candidate: tuple[SessionStatus, int, str]) -> bool:
    """Whether a snapshot at `candidate` (status, event created, event id) should replace `current`.

    A final status is never left, even for a later snapshot of the other final status.
    """
    cur_status, cur_created, cur_id = current
    new_status, new_created, new_id = candidate
    if cur_status in FINAL_STATUSES and new_status != cur_status:
        return False
    return (rank(new_status), new_created, new_id) > (rank(cur_status), cur_created, cur_id)
