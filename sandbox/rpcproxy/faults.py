"""Injected faults, set at run time through `PUT`/`PATCH /_proxy/faults` (or `RunningProxy.set_faults`).

HTTP-level faults (latency, drop, timeout, 429, 5xx) apply to a whole HTTP request, a batch included;
`rpc_error_rate` is decided per JSON-RPC call, so a batch can come back partly failed as from a real node.
When `methods` is non-empty the rate faults and the latency only touch requests calling one of those methods
(e.g. only `eth_sendRawTransaction`); `stall`, `chain_id` and `down` always apply.

Every random decision comes from one `random.Random` seeded from `seed`, drawn only for active faults and in
a fixed order (drop, timeout, rate limit, HTTP error, jitter, then one per call for JSON-RPC errors), so a
test that sets the seed sees the same decisions for the same sequence of requests.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from sandbox.faultspec import FaultsError, merge_faults

__all__ = ["MAX_HOLD_MS", "Faults", "FaultsError", "HttpDecision", "Injector"]

MAX_HOLD_MS = 600_000.0  # a held ("timeout") request is closed after at most ten minutes
_RATES = ("http_error_rate", "rate_limit_rate", "rpc_error_rate", "timeout_rate", "drop_rate")
_DURATIONS = ("latency_ms", "jitter_ms", "timeout_ms")
_FLAGS = ("stall", "down", "drop_after_forward")


@dataclass(frozen=True, slots=True)
class Faults:
    latency_ms: float = 0.0  # added before forwarding
    jitter_ms: float = 0.0  # plus a uniform random extra in [0, jitter_ms)
    http_error_rate: float = 0.0  # fraction of requests answered with http_error_status
    http_error_status: int = 503
    rate_limit_rate: float = 0.0  # fraction answered 429 (1: always)
    retry_after_seconds: int = 1  # Retry-After of a 429; 0 sends none
    rpc_error_rate: float = 0.0  # fraction of calls answered with a JSON-RPC error instead of forwarded
    rpc_error_code: int = -32603
    rpc_error_message: str = "internal error"
    timeout_rate: float = 0.0  # fraction held unanswered for timeout_ms, then closed without a response
    timeout_ms: float = 30_000.0
    drop_rate: float = 0.0  # fraction whose connection is closed without a response
    drop_after_forward: bool = False  # drop after the upstream ran the request: the answer is what is lost
    stall: bool = False  # the head stays where it was when the stall began
    chain_id: int | None = None  # eth_chainId / net_version answer this instead of the upstream's
    down: bool = False  # the RPC port refuses connections (the control port stays up)
    methods: tuple[str, ...] = ()  # rate faults and latency only for these methods; empty: all
    seed: int = 0

    @classmethod
    def from_json(cls, data: object, *, base: Faults | None = None) -> Faults:
        """Validate a JSON body; fields it leaves out come from `base` (or the defaults)."""
        return merge_faults(cls, data, base, _validated)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["methods"] = list(self.methods)
        return data

    def touches(self, method: str) -> bool:
        return not self.methods or method in self.methods


def _validated(name: str, value: Any) -> Any:
    def number() -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FaultsError(f"{name} must be a number")
        return float(value)

    def integer() -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FaultsError(f"{name} must be an integer")
        return value

    if name in _RATES:
        rate = number()
        if not 0 <= rate <= 1:
            raise FaultsError(f"{name} must be between 0 and 1")
        return rate
    if name in _DURATIONS:
        ms = number()
        if not 0 <= ms <= MAX_HOLD_MS:
            raise FaultsError(f"{name} must be between 0 and {MAX_HOLD_MS:g}")
        return ms
    if name in _FLAGS:
        if not isinstance(value, bool):
            raise FaultsError(f"{name} must be a boolean")
        return value
    if name == "http_error_status":
        status = integer()
        if not 500 <= status <= 599:
            raise FaultsError("http_error_status must be a 5xx status")
        return status
    if name == "retry_after_seconds":
        seconds = integer()
        if seconds < 0:
            raise FaultsError("retry_after_seconds must be >= 0")
        return seconds
    if name == "chain_id":
        if value is None:
            return None
        chain_id = integer()
        if chain_id <= 0:
            raise FaultsError("chain_id must be a positive integer or null")
        return chain_id
    if name == "rpc_error_message":
        if not isinstance(value, str):
            raise FaultsError("rpc_error_message must be a string")
        return value
    if name == "methods":
        if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
            raise FaultsError("methods must be a list of method names")
        return tuple(value)
    return integer()  # rpc_error_code, seed


@dataclass(frozen=True, slots=True)
class HttpDecision:
    """What happens to one HTTP request before (or instead of) forwarding it."""

    delay: float = 0.0  # seconds
    outcome: str | None = None  # "drop", "timeout", "rate_limit", "http_error" or None (forward)


class Injector:
    def __init__(self, seed: int = 0) -> None:
        self.faults = Faults(seed=seed)
        self.random = random.Random(seed)

    def set(self, faults: Faults, *, reseed: bool) -> None:
        self.faults = faults
        if reseed:
            self.random.seed(faults.seed)

    def _hit(self, rate: float) -> bool:
        return bool(rate) and self.random.random() < rate

    def http(self, methods: list[str]) -> HttpDecision:
        faults = self.faults
        if faults.methods and not any(m in faults.methods for m in methods):
            return HttpDecision()
        outcome = None
        if self._hit(faults.drop_rate):
            outcome = "drop"
        elif self._hit(faults.timeout_rate):
            outcome = "timeout"
        elif self._hit(faults.rate_limit_rate):
            outcome = "rate_limit"
        elif self._hit(faults.http_error_rate):
            outcome = "http_error"
        jitter = self.random.random() * faults.jitter_ms if faults.jitter_ms else 0.0
        return HttpDecision((faults.latency_ms + jitter) / 1000, outcome)

    def rpc_error(self, method: str) -> bool:
        faults = self.faults
        return faults.touches(method) and self._hit(faults.rpc_error_rate)
