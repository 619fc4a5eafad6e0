"""Structured logs: one JSON object per line, with trace and request context, secrets redacted at the logger.

Redaction happens here, on the formatted record, so no call site has to remember it: Stripe keys, webhook
secrets, onramp client secrets, bearer tokens, API keys and passwords in URLs never reach the output.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

__all__ = ["REQUEST_CONTEXT", "JsonFormatter", "RequestContext", "configure_logging", "redact"]


@dataclass(frozen=True)
class RequestContext:
    """The request being served; the route is read from the ASGI scope once routing has matched it."""

    request_id: str
    scope: Any

    @property
    def route(self) -> str:
        path = getattr(self.scope.get("route"), "path", None)
        return path if isinstance(path, str) else "<unmatched>"


# Set by the HTTP middleware for the duration of a request.
REQUEST_CONTEXT: ContextVar[RequestContext | None] = ContextVar("musdpay_request_context", default=None)

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Onramp client secrets first: they start with an id prefix the next rule would otherwise keep.
    (re.compile(r"\bcos_[A-Za-z0-9]+_secret_[A-Za-z0-9]+"), "cos_***_secret_[REDACTED]"),
    (re.compile(r"\b(sk|rk|pk)_(test|live)_[A-Za-z0-9_]+"), r"\1_\2_[REDACTED]"),
    (re.compile(r"\bwhsec_[A-Za-z0-9_]+"), "whsec_[REDACTED]"),
    (re.compile(r"\bmpk_[A-Za-z0-9_]+"), "mpk_[REDACTED]"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [REDACTED]"),
    (
        re.compile(r"(?i)\b(x-api-key|authorization|stripe-signature)(['\"]?\s*[:=]\s*['\"]?)[^\s,'\"}]+"),
        r"\1\2[REDACTED]",
    ),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1[REDACTED]@"),
)


# Cheap substring checks first: most lines (the access log) contain none, and skip the regular expressions.
_MARKERS = ("sk_", "rk_", "pk_", "whsec_", "_secret_", "mpk_", "earer", "EARER", "://", "pi-key", "PI-KEY",
            "uthorization", "UTHORIZATION", "ignature", "IGNATURE")  # fmt: skip


def redact(text: str) -> str:
    if not any(marker in text for marker in _MARKERS):
        return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# Record attributes that are not user extras; `color_message` is uvicorn's ANSI-coloured copy of the message.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        context = REQUEST_CONTEXT.get()
        if context is not None:
            entry["request_id"] = context.request_id
            entry["route"] = context.route
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


def configure_logging(level: str = "INFO", *, json_output: bool = True, stream: Any = None) -> None:
    """Route every logger (ours, uvicorn's, SQLAlchemy's) through one JSON handler on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_output else logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # No line prints the caller's file and line, thread or process, so they are not collected for every record
    # (the Logging HOWTO's "Optimization" section): finding the caller walks the stack on each access log line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    # Our middleware writes the access log with route and trace ids; uvicorn's own would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True
    # The Stripe SDK and httpx log every request at INFO; our spans, metrics and access log already cover each
    # call, and formatting a second line per Stripe call costs measurable CPU on the hot path.
    for chatty in ("stripe", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
