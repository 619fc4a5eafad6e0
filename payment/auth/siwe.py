"""Sign-In with Ethereum (EIP-4361) messages: a strict parser of the ABNF, a builder, and the checks.

    [ scheme "://" ] domain " wants you to sign in with your Ethereum account:" LF
    address LF
    LF
    [ statement LF ]
    LF
    "URI: " uri LF
    "Version: 1" LF
    "Chain ID: " chain-id LF
    "Nonce: " nonce LF
    "Issued At: " issued-at
    [ LF "Expiration Time: " expiration-time ]
    [ LF "Not Before: " not-before ]
    [ LF "Request ID: " request-id ]
    [ LF "Resources:" *( LF "- " uri ) ]

Anything else (a missing or extra line, fields out of order, a trailing newline, a non-EIP-55 address) is
refused: the signature covers these exact bytes, so there is nothing to gain from being lenient and a lot
from being unambiguous. The `siwe` package was not used: its releases pin web3 and eth-account versions older
than this project's, and the format is small enough to parse here, to the letter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from eth_utils.address import is_checksum_address

from payment.auth.errors import Unauthorized

__all__ = ["SiweMessage", "check_message", "parse_message"]

_HEADER_SUFFIX = " wants you to sign in with your Ethereum account:"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
# host (reg-name or IPv4; IPv6 literal in brackets) and an optional port; no userinfo (a phishing vector).
_AUTHORITY = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(:[0-9]{1,5})?$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
# statement = 1*( reserved / unreserved / " " ) (RFC 3986 character classes)
_STATEMENT = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;= ]+$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7e]+$")  # visible ASCII, no spaces
_CHAIN_ID = re.compile(r"^[1-9][0-9]{0,18}$")
_NONCE = re.compile(r"^[A-Za-z0-9]{8,64}$")
_DATETIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$")  # *pchar
MAX_MESSAGE_LENGTH = 4096


@dataclass(frozen=True)
class SiweMessage:
    domain: str
    address: str
    uri: str
    chain_id: int
    nonce: str
    issued_at: datetime
    scheme: str | None = None
    statement: str | None = None
    version: str = "1"
    expiration_time: datetime | None = None
    not_before: datetime | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = field(default_factory=tuple)

    def prepare(self) -> str:
        """The message text to sign (what a dApp's SIWE library produces for these fields)."""
        prefix = f"{self.scheme}://{self.domain}" if self.scheme else self.domain
        lines = [prefix + _HEADER_SUFFIX, self.address, ""]
        if self.statement is not None:
            lines.append(self.statement)
        lines += [
            "",
            f"URI: {self.uri}",
            f"Version: {self.version}",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {_format_time(self.issued_at)}",
        ]
        if self.expiration_time is not None:
            lines.append(f"Expiration Time: {_format_time(self.expiration_time)}")
        if self.not_before is not None:
            lines.append(f"Not Before: {_format_time(self.not_before)}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        if self.resources:
            lines.append("Resources:")
            lines += [f"- {resource}" for resource in self.resources]
        return "\n".join(lines)


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _invalid(detail: str) -> Unauthorized:
    return Unauthorized("invalid-siwe-message", f"The sign-in message is not valid EIP-4361: {detail}.")


def _time(text: str, name: str) -> datetime:
    if not _DATETIME.fullmatch(text):
        raise _invalid(f"{name} is not an RFC 3339 date-time")
    try:
        # Python parses at most 6 fractional digits; RFC 3339 allows more, which add nothing here.
        text = re.sub(r"(\.[0-9]{6})[0-9]+", r"\1", text)
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as exc:
        raise _invalid(f"{name} is not a valid date-time") from exc


class _Lines:
    def __init__(self, lines: list[str]) -> None:
        self._lines = lines
        self._at = 0

    def peek(self) -> str | None:
        return self._lines[self._at] if self._at < len(self._lines) else None

    def take(self, what: str) -> str:
        line = self.peek()
        if line is None:
            raise _invalid(f"the message ends before {what}")
        self._at += 1
        return line

    def field(self, tag: str) -> str:
        line = self.take(f"the {tag!r} line")
        if not line.startswith(f"{tag}: "):
            raise _invalid(f"expected the {tag!r} line")
        return line[len(tag) + 2 :]

    def optional(self, tag: str) -> str | None:
        line = self.peek()
        if line is not None and line.startswith(f"{tag}: "):
            return self.field(tag)
        return None

    @property
    def done(self) -> bool:
        return self._at >= len(self._lines)


def parse_message(text: str) -> SiweMessage:
    """Parse an EIP-4361 message exactly; raises Unauthorized(invalid-siwe-message)."""
    if len(text) > MAX_MESSAGE_LENGTH or "\r" in text:
        raise _invalid("too long, or contains carriage returns")
    lines = _Lines(text.split("\n"))
    header = lines.take("the header")
    if not header.endswith(_HEADER_SUFFIX):
        raise _invalid("the first line must end with 'wants you to sign in with your Ethereum account:'")
    origin = header[: -len(_HEADER_SUFFIX)]
    scheme, sep, domain = origin.partition("://")
    if not sep:
        scheme, domain = "", origin
    elif not _SCHEME.fullmatch(scheme):
        raise _invalid("the scheme is not valid")
    if not _AUTHORITY.fullmatch(domain):
        raise _invalid("the domain is not a host[:port]")
    address = lines.take("the address")
    if not _ADDRESS.fullmatch(address) or not is_checksum_address(address):
        raise _invalid("the address must be a 0x address in EIP-55 checksum case")
    if lines.take("the blank line after the address") != "":
        raise _invalid("a blank line must follow the address")
    statement: str | None = None
    line = lines.take("the statement or the blank line before 'URI:'")
    if line != "":
        if not _STATEMENT.fullmatch(line):
            raise _invalid("the statement contains characters outside RFC 3986 reserved/unreserved and space")
        statement = line
        if lines.take("the blank line after the statement") != "":
            raise _invalid("a blank line must follow the statement")
    uri = lines.field("URI")
    if not _URI.fullmatch(uri):
        raise _invalid("the URI is not an absolute RFC 3986 URI")
    if lines.field("Version") != "1":
        raise _invalid("the version must be 1")
    chain_id = lines.field("Chain ID")
    if not _CHAIN_ID.fullmatch(chain_id):
        raise _invalid("the chain id is not a number")
    nonce = lines.field("Nonce")
    if not _NONCE.fullmatch(nonce):
        raise _invalid("the nonce must be 8 to 64 letters or digits")
    issued_at = _time(lines.field("Issued At"), "Issued At")
    expiration = lines.optional("Expiration Time")
    not_before = lines.optional("Not Before")
    request_id = lines.optional("Request ID")
    if request_id is not None and not _REQUEST_ID.fullmatch(request_id):
        raise _invalid("the request id contains characters outside RFC 3986 pchar")
    resources: list[str] = []
    if lines.peek() == "Resources:":
        lines.take("Resources")
        while not lines.done:
            item = lines.take("a resource")
            if not item.startswith("- ") or not _URI.fullmatch(item[2:]):
                raise _invalid("each resource must be '- ' followed by a URI")
            resources.append(item[2:])
    if not lines.done:
        raise _invalid(f"unexpected line {lines.peek()!r}")
    return SiweMessage(
        domain=domain,
        address=address,
        uri=uri,
        chain_id=int(chain_id),
        nonce=nonce,
        issued_at=issued_at,
        scheme=scheme or None,
        statement=statement,
        expiration_time=_time(expiration, "Expiration Time") if expiration is not None else None,
        not_before=_time(not_before, "Not Before") if not_before is not None else None,
        request_id=request_id,
        resources=tuple(resources),
    )


def _is_local(host: str) -> bool:
    return host in {"localhost", "127.0.0.1", "[::1]"}


def check_message(
    message: SiweMessage,
    *,
    domains: list[str],
    chain_id: int,
    now: datetime,
    max_age: timedelta,
    skew: timedelta,
) -> None:
    """The checks that need no database or chain: domain and URI, chain, and the message's time window."""
    allowed = {domain.lower() for domain in domains}
    domain = message.domain.lower()
    if domain not in allowed:
        raise Unauthorized("siwe-domain-mismatch", f"The sign-in message is for {message.domain!r}, not this service.")
    host = domain.rsplit(":", 1)[0] if not domain.endswith("]") else domain
    if message.scheme is not None and message.scheme.lower() != "https" and not _is_local(host):
        raise Unauthorized("siwe-domain-mismatch", "The sign-in message's scheme must be https.")
    uri = urlsplit(message.uri)
    if uri.netloc.lower() != domain or uri.scheme.lower() not in {"https", "http"}:
        raise Unauthorized("siwe-domain-mismatch", "The sign-in message's URI is not on its domain.")
    if uri.scheme.lower() == "http" and not _is_local(host):
        raise Unauthorized("siwe-domain-mismatch", "The sign-in message's URI must be https.")
    if message.chain_id != chain_id:
        raise Unauthorized(
            "siwe-chain-mismatch", f"The sign-in message is for chain {message.chain_id}, this service is {chain_id}."
        )
    if message.issued_at > now + skew:
        raise Unauthorized("siwe-message-expired", "The sign-in message is issued in the future.")
    if message.issued_at < now - max_age - skew:
        raise Unauthorized("siwe-message-expired", "The sign-in message was issued too long ago.")
    if message.expiration_time is not None and message.expiration_time <= now:
        raise Unauthorized("siwe-message-expired", "The sign-in message has expired.")
    if message.not_before is not None and message.not_before > now + skew:
        raise Unauthorized("siwe-message-expired", "The sign-in message is not valid yet.")
