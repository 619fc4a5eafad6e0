"""Injected faults, set at run time through `PUT /_sandbox/faults`.

Every random decision (which API call fails, which delivery is doubled, how a window is permuted, retry
jitter) comes from `random.Random` instances seeded from one seed, so a test that sets the seed sees the
same decisions for the same sequence of calls. API calls and webhook deliveries draw from separate
generators so that background deliveries do not shift which API call gets the fault.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from sandbox.faultspec import FaultsError, merge_faults
from sandbox.stripe.errors import ONRAMP_UNAVAILABLE_MESSAGES, StripeError, onramp_unavailable

__all__ = ["FaultInjector", "Faults", "FaultsError"]

DEFAULT_SEED = 0


@dataclass(frozen=True, slots=True)
class Faults:
    latency_ms: float = 0.0  # added to every Stripe API call
    error_rate: float = 0.0  # fraction of API calls answered 500 api_error
    rate_limit_rate: float = 0.0  # fraction of API calls answered 429 rate_limit
    down: bool = False  # every API call answered 503
    duplicate_rate: float = 0.0  # fraction of webhook deliveries sent twice
    shuffle: bool = False  # pending webhook deliveries sent in a random order
    # Stripe's code refusing every session creation and quote (an onramp disabled by an incident, an account not
    # set up): one of errors.ONRAMP_UNAVAILABLE_MESSAGES, answered 400 as Stripe does; None: off.
    onramp_unavailable: str | None = None
    seed: int = DEFAULT_SEED

    @classmethod
    def from_json(cls, data: object, *, base: Faults | None = None) -> Faults:
        """Validate a JSON body; fields it leaves out come from `base` (or the defaults)."""
        return merge_faults(cls, data, base, _validated)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _validated(name: str, value: Any) -> Any:
    if name in ("down", "shuffle"):
        if not isinstance(value, bool):
            raise FaultsError(f"{name} must be a boolean")
        return value
    if name == "onramp_unavailable":
        if value is not None and value not in ONRAMP_UNAVAILABLE_MESSAGES:
            raise FaultsError(f"onramp_unavailable must be null or one of: {', '.join(ONRAMP_UNAVAILABLE_MESSAGES)}")
        return value
    if name == "seed":
        if isinstance(value, bool) or not isinstance(value, int):
            raise FaultsError("seed must be an integer")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultsError(f"{name} must be a number")
    if value < 0 or (name != "latency_ms" and value > 1):
        limits = ">= 0" if name == "latency_ms" else "between 0 and 1"
        raise FaultsError(f"{name} must be {limits}")
    return float(value)


class FaultInjector:
    def __init__(self) -> None:
        self.faults = Faults()
        self.api_random = random.Random(DEFAULT_SEED)
        self.delivery_random = random.Random(DEFAULT_SEED + 1)

    def set(self, faults: Faults, *, reseed: bool) -> None:
        self.faults = faults
        if reseed:
            self.api_random.seed(faults.seed)
            self.delivery_random.seed(faults.seed + 1)

    def api_outcome(self) -> str | None:
        """'rate_limit', 'error' or None for one authenticated API call ('down' is checked before auth)."""
        faults = self.faults
        # Draw only for active faults, so enabling one does not change the other's sequence.
        if faults.rate_limit_rate and self.api_random.random() < faults.rate_limit_rate:
            return "rate_limit"
        if faults.error_rate and self.api_random.random() < faults.error_rate:
            return "error"
        return None

    def onramp_refusal(self) -> StripeError | None:
        """Stripe's refusal of every onramp session and quote while the onramp_unavailable fault is set."""
        code = self.faults.onramp_unavailable
        return onramp_unavailable(code) if code is not None else None

    def duplicate_delivery(self) -> bool:
        rate = self.faults.duplicate_rate
        return bool(rate) and self.delivery_random.random() < rate
