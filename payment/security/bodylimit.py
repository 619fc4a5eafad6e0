"""Request body size limit: 413 problem, whether the size is declared (Content-Length) or streamed (chunked).

A declared size above the limit is refused before any byte is read. Otherwise the bytes are counted as the
application reads them; the read that crosses the limit raises `BodyTooLarge` (an HTTPException, which FastAPI
passes through its body parsing to the problem handlers), and if it escapes every handler this middleware
answers 413 itself, as long as no response has started.
"""

from __future__ import annotations

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payment.core.problems import Problem, problem_response

__all__ = ["BodyLimitMiddleware", "BodyTooLarge"]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes.", headers={"Connection": "close"})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:  # the server refuses these before we see them; be safe anyway
                    declared = limit + 1
                if declared > limit:
                    await self._refuse(scope, receive, send)
                    return
                break
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = Problem(
            status=413,
            slug="payload-too-large",
            title="Payload Too Large",
            detail=f"The request body is larger than {self.max_bytes} bytes.",
            headers={"Connection": "close"},  # the unread rest of the body is not worth draining
        )
        await problem_response(problem, Request(scope))(scope, receive, send)
