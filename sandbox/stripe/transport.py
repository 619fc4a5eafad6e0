"""A lean plain-HTTP/1.1 transport for the webhook client.

Webhook deliveries go through an `httpx.AsyncClient`, but its default transport (httpcore + h11, pure
Python) costs about 0.5 ms of CPU per POST, and several times that with a few dozen requests in flight,
because its pool scans every waiting request on each hand-off. With auto-advance a session create causes
three deliveries, so in the payment API's benchmark loop that transport alone would take most of a core.
This one writes the request bytes itself, parses the answer with httptools (the C parser uvicorn uses)
and keeps idle keep-alive connections per host: around a tenth of the cost.

It speaks only what a webhook POST needs: http:// URLs (the client mounts httpx's own transport for
https://), bodies given in full, Content-Length, chunked or read-until-close responses. Failures are
raised as the httpx exceptions the default transport would raise, so callers cannot tell the difference.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httptools
import httpx

__all__ = ["PlainHTTPTransport"]

_READ_CHUNK = 65536


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        self.writer.close()


@dataclass(slots=True)
class _ResponseReader:
    """httptools callback target collecting one response."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    parser: httptools.HttpResponseParser | None = None
    headers_done: bool = False
    keep_alive: bool = False
    complete: bool = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # Asked here because the parser resets this flag once the message is complete.
        self.keep_alive = self.parser is not None and self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class PlainHTTPTransport(httpx.AsyncBaseTransport):
    def __init__(self, max_idle_per_host: int = 8) -> None:
        self._max_idle = max_idle_per_host
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"PlainHTTPTransport only speaks http://, not {url.scheme}://")
        timeouts = request.extensions.get("timeout", {})
        timeout = timeouts.get("read") or timeouts.get("connect")
        address = (url.host, url.port or 80)
        head = _request_head(request)
        body = await request.aread()
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange(address, head + body, request)
        except TimeoutError:
            raise httpx.ReadTimeout(f"no answer within {timeout}s", request=request) from None

    async def _exchange(self, address: tuple[str, int], data: bytes, request: httpx.Request) -> httpx.Response:
        idle = self._idle.get(address)
        while idle:
            # A kept-alive connection the server has since closed fails before any byte of an answer
            # comes back; such a request never reached the application, so it is safe to send again.
            connection = idle.pop()
            if connection.reader.at_eof():
                connection.close()
                continue
            try:
                return await self._send(connection, address, data, request)
            except _StaleConnection:
                continue
        try:
            reader, writer = await asyncio.open_connection(*address)
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from None
        try:
            return await self._send(_Connection(reader, writer), address, data, request)
        except _StaleConnection:
            raise httpx.RemoteProtocolError("server closed the connection without answering", request=request) from None

    async def _send(
        self, connection: _Connection, address: tuple[str, int], data: bytes, request: httpx.Request
    ) -> httpx.Response:
        collected = _ResponseReader()
        parser = httptools.HttpResponseParser(collected)
        collected.parser = parser
        received = False
        try:
            connection.writer.write(data)
            await connection.writer.drain()
            while not collected.complete:
                chunk = await connection.reader.read(_READ_CHUNK)
                if not chunk:
                    if collected.headers_done and not _has_length(collected.headers):
                        break  # read-until-close body: EOF ends it
                    if not received:
                        raise _StaleConnection
                    raise httpx.RemoteProtocolError("connection closed mid-response", request=request)
                received = True
                parser.feed_data(chunk)
        except (_StaleConnection, httpx.HTTPError):
            connection.close()
            raise
        except httptools.HttpParserError as exc:
            connection.close()
            raise httpx.RemoteProtocolError(f"malformed response: {exc}", request=request) from None
        except OSError as exc:
            connection.close()
            if not received:
                raise _StaleConnection from None
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from None
        except BaseException:
            connection.close()  # cancelled or timed out mid-exchange: the connection's state is unknown
            raise
        if collected.complete and collected.keep_alive:
            self._release(address, connection)
        else:
            connection.close()
        return httpx.Response(
            parser.get_status_code(), headers=collected.headers, content=b"".join(collected.body), request=request
        )

    def _release(self, address: tuple[str, int], connection: _Connection) -> None:
        idle = self._idle.setdefault(address, [])
        if len(idle) < self._max_idle:
            idle.append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()


class _StaleConnection(Exception):
    pass


def _request_head(request: httpx.Request) -> bytes:
    target = request.url.raw_path  # path and query, already percent-encoded
    lines = [request.method.encode() + b" " + target + b" HTTP/1.1"]
    lines.extend(name + b": " + value for name, value in request.headers.raw)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _has_length(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            return True
    return False
