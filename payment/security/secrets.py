"""The configured secrets, scrubbed from every log line by value.

`payment.core.logs.redact` removes what looks like a credential (Stripe keys, bearer tokens, URL passwords);
this removes what *is* one: each configured secret value (SECRET_FIELDS), whatever its shape (an RPC URL whose
API key is a path segment, a hex treasury key, a JWT secret). It wraps the formatter of each root handler, so it
sees the final text of every record, exception tracebacks included.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

from payment.core.config import SECRET_FIELDS, Settings

__all__ = ["ScrubbingFormatter", "install_secret_scrubber", "secret_values"]

REPLACEMENT = "[REDACTED]"
_MIN_LENGTH = 8  # shorter values (a port, "postgres") would scrub ordinary words
_TOKEN = re.compile(r"[A-Za-z0-9_\-.~]{16,}")


def _values(value: object) -> Iterable[str]:
    if value is None:
        return
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _values(item)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:  # RpcProvider.url, JwtKey.secret, ...
            field_value = getattr(value, name)
            if isinstance(field_value, SecretStr):
                yield field_value.get_secret_value()


def _parts(secret: str) -> Iterable[str]:
    """The value, and the secret parts of a URL: its password and long tokens of its path and query."""
    yield secret
    if "://" not in secret:
        if secret.startswith("0x"):
            yield secret[2:]  # a hex key is also printed without its prefix
        return
    try:
        parts = urlsplit(secret)
    except ValueError:
        return
    if parts.password:
        yield parts.password
    yield from _TOKEN.findall(f"{parts.path}?{parts.query}")


def secret_values(settings: Settings) -> list[str]:
    """Every configured secret value worth scrubbing, longest first (so no part of one survives another)."""
    found: set[str] = set()
    for name in SECRET_FIELDS:
        for value in _values(getattr(settings, name, None)):
            found.update(part for part in _parts(value) if len(part) >= _MIN_LENGTH)
    if settings.database_url.startswith("sqlite"):
        found.discard(settings.database_url)  # a file path, not a credential
    return sorted(found, key=len, reverse=True)


class ScrubbingFormatter(logging.Formatter):
    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REPLACEMENT)
        return text


def install_secret_scrubber(settings: Settings, logger: logging.Logger | None = None) -> None:
    """Scrub the configured secrets from everything the root logger's handlers write (idempotent)."""
    secrets = secret_values(settings)
    for handler in (logger or logging.getLogger()).handlers:
        formatter = handler.formatter or logging.Formatter()
        if isinstance(formatter, ScrubbingFormatter):
            formatter.secrets = sorted(set(formatter.secrets) | set(secrets), key=len, reverse=True)
        else:
            handler.setFormatter(ScrubbingFormatter(formatter, secrets))
