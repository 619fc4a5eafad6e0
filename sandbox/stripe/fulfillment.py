"""Who delivers the crypto when a session completes.

The emulator calls `Fulfiller.fulfill` exactly once per session, as it enters `fulfillment_complete`, and
puts the returned transaction hash in `transaction_details.transaction_id` for good. The default invents a
hash; a real one (an on-chain MUSD transfer to `transaction_details.wallet_address`) can be passed to
`create_app`. It is called in a worker thread, so a blocking implementation does not stall the API; if it
raises, the session stays in `fulfillment_processing` and the advance can be retried.
"""

from __future__ import annotations

from typing import Any, Protocol

from sandbox.stripe.ids import new_tx_hash

__all__ = ["Fulfiller", "RandomTxFulfiller"]


class Fulfiller(Protocol):
    def fulfill(self, session: dict[str, Any]) -> str:
        """Deliver the crypto for `session` (a copy of the session object) and return the tx hash."""
        ...


class RandomTxFulfiller:
    """Delivers nothing: returns a random 0x + 64 hex hash."""

    def fulfill(self, session: dict[str, Any]) -> str:
        del session
        return new_tx_hash()
