"""Showing an RPC URL without its credentials.

Providers put API keys in the path (Spectrum: ``https://spectrum-01.simplystaking.xyz/<KEY>/mezo/mainnet/``,
Infura, Alchemy, QuickNode, Ankr), in the query string (``?apikey=...``) or in the userinfo
(``https://user:key@host``). `redact_url` keeps what identifies the endpoint (scheme, host, port and the
word-like path segments) and replaces every credential with ``***``. It is used wherever a URL is shown or
labelled: logs, span attributes, `ProviderHealth.url`, error messages.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["MASK", "endpoint_of", "redact_url"]

MASK = "***"

_MIN_KEY_LENGTH = 16
# Characters of URL-safe tokens (base62, base64url, hex, UUIDs).
_TOKEN = re.compile(r"[A-Za-z0-9_~.\-]+")
# Hex keys, with or without UUID dashes: 16+ hex digits, even if they happen to spell only letters a-f.
_HEX = re.compile(r"(?:[0-9a-fA-F]-?){16,}")
# Readable segments kept even when long: lowercase words and short numbers joined by '-', '_' or '.'
# ("mezo-mainnet-01-archive"). A random base62 key of 16+ characters is almost never lowercase-only.
_WORDS = re.compile(r"(?:[a-z]+|[0-9]{1,4})(?:[-_.](?:[a-z]+|[0-9]{1,4}))*")


def _looks_like_key(segment: str) -> bool:
    if len(segment) < _MIN_KEY_LENGTH:
        return False
    if _HEX.fullmatch(segment):
        return True
    if not _TOKEN.fullmatch(segment):
        return True  # long and not a plain token (percent-encoded, odd characters): not worth the risk
    return not _WORDS.fullmatch(segment)


def redact_url(url: str) -> str:
    """`url` with key-like path segments, query values, userinfo and fragment replaced by ``***``.

    Anything that does not parse as ``scheme://host...`` comes back as ``***`` entirely.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return MASK
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = f"{MASK}@{hostport}" if at and userinfo else hostport
    path = "/".join(MASK if _looks_like_key(segment) else segment for segment in parts.path.split("/"))
    text = f"{parts.scheme}://{netloc}{path}"
    if parts.query:
        pairs = []
        for item in parts.query.split("&"):
            name, eq, _value = item.partition("=")
            pairs.append(f"{name}={MASK}" if eq else MASK)
        text += "?" + "&".join(pairs)
    if parts.fragment:
        text += "#" + MASK
    return text


def endpoint_of(url: str) -> tuple[str, int | None]:
    """(host, port) of a URL, for the `server.address` and `server.port` span attributes (never the path)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return "", None
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.hostname or "", port
