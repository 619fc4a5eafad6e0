"""Structured logs: one JSON object per line, with trace and request context, secrets redacted at the logger.

Redaction happens here, on the formatted record, so no call site has to remember it: Stripe keys, webhook
secrets, onramp client secrets, bearer tokens, API keys and passwords in URLs never reach the output.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

__all__ = [
    "REQUEST_CONTEXT",
    "AccessLog",
    "JsonFormatter",
    "JsonStreamHandler",
    "RequestContext",
    "TextFormatter",
    "configure_logging",
    "redact",
]


@dataclass(frozen=True, slots=True)
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


# Built once: json.dumps with any non-default option builds a new encoder on every call. Values are made JSON
# types before encoding (see _value), so no `default` is needed.
_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False)
_quote = json.encoder.encode_basestring_ascii  # a JSON string literal, quotes included (C)


def _value(value: Any) -> Any:
    """A JSON value with secrets redacted: text is scanned, anything else but numbers becomes scanned text."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class _Timestamps:
    """ISO 8601 UTC with milliseconds; the text of the current second is kept (lines come many per second)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._prefix}.{int((created - second) * 1000):03d}+00:00"


class JsonFormatter(logging.Formatter):
    """One JSON object per record. Fields other than the message, the exception and `extra` values are ours
    (times, names, ids, route templates), so only those three are scanned for secrets: scanning the whole line
    cost more than encoding it."""

    def __init__(self) -> None:
        super().__init__()
        self._timestamps = _Timestamps()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._timestamps.format(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        context = REQUEST_CONTEXT.get()
        if context is not None:
            entry["request_id"] = context.request_id
            entry["route"] = context.route
        attributes = record.__dict__
        for key in sorted(attributes.keys() - _RESERVED):
            if not key.startswith("_"):
                entry[key] = _value(attributes[key])
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return _ENCODER.encode(entry)


class TextFormatter(logging.Formatter):
    """One line a person reads, for a terminal (`MUSDPAY_LOG_FORMAT=text`, what `musdpay dev` uses there):
    `12:00:00.123 INFO  logger: message key=value ...`. Redacted like the JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        line = f"{created:%H:%M:%S}.{created.microsecond // 1000:03d} {record.levelname:<7} {record.name}: "
        line += redact(record.getMessage())
        attributes = record.__dict__
        extras = [
            f"{key}={_value(attributes[key])}"
            for key in sorted(attributes.keys() - _RESERVED)
            if not key.startswith("_")
        ]
        if extras:
            line += "  " + " ".join(extras)
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


class JsonStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler configure_logging installs for JSON output; the access log writes its finished lines here."""

    def write_line(self, line: str) -> None:
        self.acquire()
        try:
            self.stream.write(line + self.terminator)
            self.flush()
        except Exception:  # as logging does: a failing log stream never fails the request
            self.handleError(logging.makeLogRecord({"msg": line}))
        finally:
            self.release()


class AccessLog:
    """The access log: one line per request, as `musdpay.access` at INFO.

    Through `logging` a line costs about 20 microseconds (a record, the logger hierarchy, the general formatter),
    an eighth of a webhook's handling. So when logging is as configure_logging set it up (one JSON handler, no
    filters, nothing else listening), the line is encoded here, with the same fields JsonFormatter would give
    it, and written to that handler's stream. Every field is ours (method, route template, status, ids), so
    there is nothing to redact. Under any other set-up (text output, extra handlers, filters) the line goes
    through `logging` like any other, so nothing is lost and every listener sees it.
    """

    def __init__(self, name: str = "musdpay.access") -> None:
        self.logger = logging.getLogger(name)
        self._name = _quote(name)
        self._timestamps = _Timestamps()

    def write(self, *, method: str, route: str, status: int, duration_ms: float, request_id: str) -> None:
        logger = self.logger
        if logger.disabled or not logger.isEnabledFor(logging.INFO):
            return
        handler = self._direct_handler()
        if handler is None:
            extra = {"method": method, "status_code": status, "duration_ms": duration_ms}
            logger.info("%s %s %d", method, route, status, extra=extra)
            return
        span = trace.get_current_span().get_span_context()
        ids = f'"trace_id": "{span.trace_id:032x}", "span_id": "{span.span_id:016x}", ' if span.is_valid else ""
        # Built as text (a third of the cost of encoding a dict): the fields of JsonFormatter's line, in its
        # order; the strings that do not come from this module are JSON-quoted.
        method_text, route_text = _quote(method), _quote(route)
        handler.write_line(
            f'{{"time": "{self._timestamps.format(time.time())}", "level": "info", "logger": {self._name}, '
            f'"message": {_quote(f"{method} {route} {status}")}, {ids}"request_id": {_quote(request_id)}, '
            f'"route": {route_text}, "duration_ms": {float(duration_ms)!r}, "method": {method_text}, '
            f'"status_code": {int(status)}}}'
        )

    def _direct_handler(self) -> JsonStreamHandler | None:
        """The root's JSON handler, if it alone would receive this logger's records unfiltered."""
        root = logging.root
        node: logging.Logger | None = self.logger
        while node is not None and node is not root:
            if node.handlers or node.filters or not node.propagate:
                return None
            node = node.parent
        handlers = root.handlers
        if root.filters or len(handlers) != 1:
            return None
        handler = handlers[0]
        if type(handler) is not JsonStreamHandler or handler.filters or handler.level > logging.INFO:
            return None
        return handler


def configure_logging(level: str = "INFO", *, json_output: bool = True, stream: Any = None) -> None:
    """Route every logger (ours, uvicorn's, SQLAlchemy's) through one JSON handler on stderr."""
    handler: logging.Handler
    if json_output:
        handler = JsonStreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(TextFormatter())
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
