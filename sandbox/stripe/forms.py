"""Stripe's form encoding: `a[b][c]=v`, `a[0]=v`, `a[]=v`, parsed into nested dicts and lists.

The official SDKs send every v1 request body (and GET query) this way: nested hashes as `key[sub]`, arrays
as `key[0]`, `key[1]` (older clients send `key[]`). `parse_form` builds the tree; `Params` reads typed
values out of it and raises the `parameter_*` errors Stripe gives for each kind of mistake.

Indexed arrays come out of the parser as dicts with digit keys (`{"0": .., "1": ..}`) because the parser
cannot tell `metadata[0]=x` (a hash key that happens to be a digit) from an array element; `Params.array`
turns them into lists where the parameter is known to be an array.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import TypeAlias
from urllib.parse import parse_qsl

from sandbox.stripe.errors import StripeError, invalid_request

__all__ = ["FormDict", "FormValue", "Params", "check_enum", "invalid_empty", "missing", "parse_form"]

FormValue: TypeAlias = "str | dict[str, FormValue] | list[FormValue]"
FormDict: TypeAlias = "dict[str, FormValue]"

# Parameters every Stripe endpoint accepts; this emulator never expands anything, so they are ignored.
_ALWAYS_ALLOWED = frozenset({"expand"})


def parse_form(raw: bytes | str) -> FormDict:
    """Parse an urlencoded body or query string into a tree. Raises StripeError on conflicting keys."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    root: FormDict = {}
    if not raw:
        return root
    for key, value in parse_qsl(raw, keep_blank_values=True):
        _insert(root, _split_key(key), value, key)
    return root


def _split_key(key: str) -> list[str]:
    head, bracket, rest = key.partition("[")
    if not bracket:
        return [key]
    if not head or not rest.endswith("]"):
        return [key]  # malformed: keep it literal so it surfaces as an unknown parameter
    segments = rest[:-1].split("][")
    if any("[" in s or "]" in s for s in segments):
        return [key]
    return [head, *segments]


def _insert(root: FormDict, path: list[str], value: str, key: str) -> None:
    node = root
    last = len(path) - 1
    for i, segment in enumerate(path):
        if i == last:
            if segment in node:
                raise invalid_request(f"Received the parameter {key} more than once.", param=key)
            node[segment] = value
            return
        if path[i + 1] == "":
            # `key[]=v` appends; only valid as the final segment.
            if i + 1 != last:
                raise invalid_request(f"Invalid array: {key}", param=key)
            existing = node.setdefault(segment, [])
            if not isinstance(existing, list):
                raise invalid_request(f"Invalid array: {key}", param=key)
            existing.append(value)
            return
        child = node.setdefault(segment, {})
        if not isinstance(child, dict):
            raise invalid_request(f"Invalid hash: {key}", param=key)
        node = child


_DECIMAL = re.compile(r"^\d+(?:\.(\d+))?$")
_INTEGER = re.compile(r"^-?\d+$")


class Params:
    """Typed reads over a parsed form; every failure is the StripeError Stripe would return."""

    def __init__(self, data: FormDict) -> None:
        self.data = data

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        allowed_set = set(allowed)
        for name in self.data:
            if name not in allowed_set and name not in _ALWAYS_ALLOWED:
                raise invalid_request(f"Received unknown parameter: {name}", code="parameter_unknown", param=name)

    def has(self, name: str) -> bool:
        return name in self.data

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise missing(name)
            return None
        return _leaf(value, name)

    def enum(self, name: str, allowed: Iterable[str], *, required: bool = False) -> str | None:
        value = self.string(name, required=required)
        if value is None:
            return None
        return check_enum(value, name, allowed)

    def boolean(self, name: str) -> bool | None:
        value = self.string(name)
        if value is None:
            return None
        if value in ("true", "false"):
            return value == "true"
        raise invalid_request(f"Invalid boolean: {value}", code="parameter_invalid_string", param=name)

    def integer(self, name: str, *, minimum: int, maximum: int) -> int | None:
        value = self.string(name)
        if value is None:
            return None
        if not _INTEGER.match(value):
            raise invalid_request(f"Invalid integer: {value}", code="parameter_invalid_integer", param=name)
        number = int(value)
        if not minimum <= number <= maximum:
            raise invalid_request(
                f"Invalid {name}: must be between {minimum} and {maximum}",
                code="parameter_invalid_integer",
                param=name,
            )
        return number

    def decimal(self, name: str, *, places: int) -> Decimal | None:
        value = self.string(name)
        if value is None:
            return None
        match = _DECIMAL.match(value)
        if match is None or (match.group(1) is not None and len(match.group(1)) > places):
            raise invalid_request(
                f"Invalid decimal: {value} (a positive number with at most {places} decimal places)",
                code="parameter_invalid_string",
                param=name,
            )
        return Decimal(value)

    def ip_address(self, name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        value = self.string(name)
        if value is None:
            return None
        try:
            return ipaddress.ip_address(value)
        except ValueError:
            raise invalid_request(f"Invalid IP address: {value}", code="parameter_invalid_string", param=name) from None

    def hash(self, name: str) -> dict[str, FormValue] | None:
        """A `name[key]=...` hash. `name=` (empty) means "no value", as Stripe uses it to unset."""
        value = self.data.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, dict):
            raise invalid_request(f"Invalid hash: {name}", param=name)
        return value

    def string_hash(self, name: str) -> dict[str, str] | None:
        value = self.hash(name)
        if value is None:
            return None
        return {key: _leaf(item, f"{name}[{key}]") for key, item in value.items()}

    def array(self, name: str) -> list[str] | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, dict):
            if not all(k.isdigit() for k in value):
                raise invalid_request(f"Invalid array: {name}", param=name)
            items = [value[k] for k in sorted(value, key=int)]
        elif isinstance(value, list):
            items = value
        elif value == "":
            raise invalid_empty(name)
        else:
            raise invalid_request(f"Invalid array: {name}", param=name)
        return [_leaf(item, f"{name}[{i}]") for i, item in enumerate(items)]


def _leaf(value: FormValue, name: str) -> str:
    if not isinstance(value, str):
        raise invalid_request(
            f"Invalid string: {name} must be a string, not a hash or array",
            code="parameter_invalid_string",
            param=name,
        )
    if value == "":
        raise invalid_empty(name)
    return value


def check_enum(value: str, name: str, allowed: Iterable[str]) -> str:
    options = tuple(allowed)
    if value not in options:
        raise invalid_request(
            f"Invalid {name}: must be one of {', '.join(options)}",
            code="parameter_invalid_string",
            param=name,
        )
    return value


def missing(name: str) -> StripeError:
    return invalid_request(f"Missing required param: {name}.", code="parameter_missing", param=name)


def invalid_empty(name: str) -> StripeError:
    return invalid_request(
        f"You passed an empty string for '{name}'. We assume empty values are an attempt to unset a "
        f"parameter; however '{name}' cannot be unset. You should remove '{name}' from your request or "
        "supply a non-empty value.",
        code="parameter_invalid_empty",
        param=name,
    )
