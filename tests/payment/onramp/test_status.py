from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from payment.onramp.status import FINAL_STATUSES, SessionStatus, is_newer

S = SessionStatus


def test_forward_moves_apply_and_backward_moves_do_not() -> None:
    assert is_newer((S.initialized, 10, "evt_a"), (S.requires_payment, 11, "evt_b"))
    assert not is_newer((S.fulfillment_processing, 11, "evt_b"), (S.requires_payment, 12, "evt_c"))


def test_a_newer_snapshot_of_the_same_status_applies_and_an_older_one_does_not() -> None:
    assert is_newer((S.fulfillment_processing, 10, "evt_a"), (S.fulfillment_processing, 11, "evt_b"))
    assert not is_newer((S.fulfillment_processing, 11, "evt_b"), (S.fulfillment_processing, 10, "evt_a"))


def test_final_statuses_are_never_left() -> None:
    for final, other in itertools.permutations(FINAL_STATUSES, 2):
        assert not is_newer((final, 10, "evt_a"), (other, 99, "evt_z"))
    assert not is_newer((S.rejected, 10, "evt_a"), (S.fulfillment_processing, 99, "evt_z"))


@given(st.lists(st.tuples(st.sampled_from(list(S)[1:]), st.integers(0, 50), st.text(max_size=3)), min_size=1))
def test_the_applied_state_is_the_maximum_whatever_the_order(events: list[tuple[S, int, str]]) -> None:
    # Only events of one final status, as Stripe sends for one session.
    finals = {e[0] for e in events} & FINAL_STATUSES
    events = [e for e in events if e[0] not in finals or e[0] == min(finals, default=None)]
    results = set()
    for order in (events, list(reversed(events)), sorted(events, key=lambda e: e[2])):
        state = (S.initialized, -1, "")
        for event in order:
            if is_newer(state, event):
                state = event
        results.add(state)
    assert len(results) == 1
