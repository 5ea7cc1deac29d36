"""A request body size limit, checked as the body arrives.

A declared ``Content-Length`` past the limit is refused before a byte is read; a body without
one (chunked) is counted and refused the moment it passes the limit, so a 10 MB post never sits
in memory whole. The refusal is an ``HTTPException(413)`` raised where a route reads its body,
so the one error handler turns it into the usual ``{code, message}`` (JSON or page). A route
that never reads its body (a GET) is not concerned.
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body: larger than the limit of {limit:,} bytes")


# A step's form may carry the camera's photos (issue 16.2), also when posted to read the
# balance, and so may the API's step signed with photos: those posts get the larger limit.
STEP_POST = re.compile(
    r"^(/cases/[^/]+/steps/[^/]+(/balance)?|/api/cases/[^/]+/steps/[^/]+/with-photos)$"
)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, max_photo_bytes: int = 0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_photo_bytes = max(max_bytes, max_photo_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        photos = STEP_POST.match(scope["path"]) and headers.get("content-type", "").startswith(
            "multipart/form-data"
        )  # only a multipart form carries files: any other body keeps the usual limit
        limit = self.max_photo_bytes if photos else self.max_bytes
        declared = headers.get("content-length", "")
        too_big = declared.isdigit() and int(declared) > limit
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            if too_big:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)
