"""What the stand-ins' fault switches share: updating a frozen dataclass of faults from a JSON body.

Each stand-in (the Stripe emulator, the RPC fault proxy) declares its faults as a frozen dataclass and a
function that validates one field; this module merges a body into the current faults with both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any, TypeVar

__all__ = ["FaultsError", "merge_faults"]

F = TypeVar("F")


class FaultsError(ValueError):
    """A fault body that cannot be applied; its message is shown to the caller."""


def merge_faults(cls: type[F], data: object, base: F | None, validate: Callable[[str, Any], Any]) -> F:
    """`base` (or the defaults) with the fields `data` sets, each checked by `validate(name, value)`."""
    if not isinstance(data, dict):
        raise FaultsError("body must be a JSON object")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise FaultsError(f"unknown fault(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values: dict[str, Any] = asdict(base if base is not None else cls())  # type: ignore[call-overload]
    for name, value in data.items():
        values[name] = validate(name, value)
    return cls(**values)
