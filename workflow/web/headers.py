"""Headers every answer carries: ``Server-Timing`` and the security headers (OWASP ASVS 14.4).

A plain ASGI middleware, not ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs
the app in a task of its own and passes the response through a memory stream, about a tenth of
a step request's CPU in the framework (bench/profile_step.py). This one only edits the
response's first message as it goes out.
"""

from __future__ import annotations

import time

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workflow.timing import recording

from . import pages_auth

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class ResponseHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        with recording() as timings:

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    # Where this request's time went (auth, load, rules, append, commit,
                    # records, render; workflow/timing.py), for developer tools and benches.
                    headers = MutableHeaders(scope=message)
                    headers["Server-Timing"] = timings.header(time.perf_counter() - started)
                    security_headers(Request(scope), headers)
                await send(message)

            await self.app(scope, receive, send_with_headers)


def security_headers(request: Request, headers: MutableHeaders) -> None:
    """Headers every answer carries (OWASP ASVS 14.4)."""
    # Clinical pages must not be kept by shared browsers or proxies.
    headers.setdefault("Cache-Control", "no-store")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Content-Security-Policy", CSP)
    if pages_auth.secure(request):
        # ASVS 14.4.5: once reached over HTTPS, never again over plain HTTP.
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if request.url.path.startswith("/api/") and headers.get("content-type", "").startswith(
        "application/json"
    ):
        # ASVS 14.4.2: an API answer opened in a browser is a download, never a page.
        headers.setdefault("Content-Disposition", 'attachment; filename="api.json"')
