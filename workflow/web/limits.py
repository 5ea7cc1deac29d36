"""A request body size limit, checked as the body arrives.

A declared ``Content-Length`` past the limit is refused before a byte is read; a body without
one (chunked) is counted and refused the moment it passes the limit, so a 10 MB post never sits
in memory whole. The refusal is an ``HTTPException(413)`` raised where a route reads its body,
so the one error handler turns it into the usual ``{code, message}`` (JSON or page). A route
that never reads its body (a GET) is not concerned.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body: larger than the limit of {limit:,} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        too_big = declared.isdigit() and int(declared) > self.max_bytes
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            if too_big:
                raise BodyTooLarge(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)
