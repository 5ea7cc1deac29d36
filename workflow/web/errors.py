"""The one place errors become responses: the same shape for pages and the API.

Body (JSON) or page (HTML): ``{code, message, field?, details?}``. A route that wants a refused
form shown again with the message puts ``(template, context)`` in ``request.state.retry``; the
handler renders it with the error, so nothing is stored and nothing typed is lost.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from workflow.core.errors import (
    AuthError,
    BedsideError,
    ConflictError,
    InputError,
    IntegrityError,
    NotFound,
    ProtocolError,
    StepRefused,
    Unavailable,
)
from workflow.service.vocabulary import WRONG_ROLE, AuthRefused, SessionEnded

from .limits import BodyLimit
from .security import CsrfFailed, Forbidden, NotSignedIn

RELOAD = "this case changed, reload"


def status_of(exc: BedsideError) -> int:
    if isinstance(exc, NotSignedIn | SessionEnded):
        return 401
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, InputError | StepRefused):
        return 422
    if isinstance(exc, AuthRefused):
        return 403 if exc.reason == WRONG_ROLE else 401
    if isinstance(exc, CsrfFailed | Forbidden | AuthError):
        return 403
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Unavailable):
        return 503  # the database is down or restarting: try again, nothing was half-written
    if isinstance(exc, IntegrityError | ProtocolError):
        return 500
    return 400


def body_of(exc: BedsideError) -> dict[str, Any]:
    """The documented shape and nothing else: ``to_dict`` extras (an ``allowed`` range is
    already in the message; a protocol's ``issues``) are not part of it."""
    raw = exc.to_dict()
    body: dict[str, Any] = {
        "code": str(raw.get("code") or exc.code),
        "message": str(raw.get("message") or exc.message),
    }
    if isinstance(exc, ConflictError) and RELOAD not in exc.message:
        body["message"] = f"{RELOAD}: {exc.message}"
    field = getattr(exc, "field", None)
    if field:
        body["field"] = str(field)
    details = raw.get("details")
    if isinstance(exc, ProtocolError):
        details = [str(i) for i in exc.issues]
    if isinstance(details, list | tuple) and details:
        body["details"] = [str(d) for d in details]
    fields = raw.get("fields")
    if isinstance(fields, list | tuple) and len(fields) > 1:
        body["fields"] = [str(f) for f in fields]  # every entry at fault, in details' order
    return body


# Where pydantic names a union member or a dict key rather than a field ("values.x.str").
_NOT_A_FIELD = {"body", "query", "path", "form", "header", "cookie", "[key]", "str", "bool"}


def validation_body(exc: RequestValidationError) -> dict[str, Any]:
    """FastAPI's validation errors in the shared shape: the first names the field (and the
    message starts with it); every one of them, when several, goes in ``details``."""
    lines: list[str] = []
    fields: list[str | None] = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "")
            fields.append(None)
            lines.append(
                f"request body: not valid JSON ({reason})"
                if reason
                else "request body: not valid JSON"
            )
            continue
        where = error.get("loc", ())
        loc = [str(p) for p in where if p not in _NOT_A_FIELD and str(p)]
        field = ".".join(loc) or None
        fields.append(field)
        whole = "request body" if where[:1] == ("body",) else "request"
        lines.append(f"{field or whole}: {error.get('msg', 'invalid')}")
    body: dict[str, Any] = {
        "code": "invalid_input",
        "message": lines[0] if lines else "request: invalid",
    }
    if fields and fields[0]:
        body["field"] = fields[0]
    if len(set(lines)) > 1:
        body["details"] = list(dict.fromkeys(lines))
    return body


def http_body(exc: StarletteHTTPException) -> tuple[int, dict[str, Any]]:
    """Starlette's and FastAPI's own errors. A body that cannot be decoded at all (bad UTF-8,
    numbers past Python's digit limit, nesting past the recursion limit, a broken multipart
    form) comes as a 400 "error parsing the body": it is bad input like any other, so 422."""
    if exc.status_code == 400:
        cause = exc.__cause__
        if isinstance(cause, UnicodeDecodeError):
            reason = "not valid UTF-8"
        elif isinstance(cause, RecursionError):
            reason = "nested too deeply"
        elif isinstance(cause, ValueError):
            reason = f"not valid JSON ({cause})"
        else:
            reason = str(exc.detail)
        return 422, {"code": "invalid_input", "message": f"request body: {reason}"}
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.status_code, "http_error"
    )
    return exc.status_code, {"code": code, "message": str(exc.detail)}


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"


def install(app: FastAPI, templates: Jinja2Templates) -> None:
    def page(request: Request, status: int, body: dict[str, Any]) -> Response:
        retry = getattr(request.state, "retry", None)
        context: dict[str, Any] = {"error": body, "status": status}
        name = "error.html"
        if retry is not None and status != 409:
            name, extra = retry
            context = {**extra, **context}
        if status == 409:
            context["reload_url"] = getattr(request.state, "reload_url", str(request.url.path))
        viewer = getattr(request.state, "viewer", None)
        context.setdefault("viewer", viewer)
        return templates.TemplateResponse(request, name, context, status_code=status)

    @app.exception_handler(BedsideError)
    async def bedside_error(request: Request, exc: BedsideError) -> Response:
        status = status_of(exc)
        body = body_of(exc)
        headers = {"Retry-After": "5"} if status == 503 else None
        if wants_json(request):
            return JSONResponse(body, status_code=status, headers=headers)
        if isinstance(exc, SessionEnded):  # ended between the page and the signature
            exc = NotSignedIn("ended")
        if isinstance(exc, NotSignedIn):
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            if request.method != "GET":
                target = "/"
            return RedirectResponse(f"/login?next={quote(target)}&why={exc.why}", status_code=303)
        return page(request, status, body)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        body = validation_body(exc)
        if wants_json(request):
            return JSONResponse(body, status_code=422)
        return page(request, 422, body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        status, body = http_body(exc)
        if wants_json(request):
            return JSONResponse(body, status_code=status, headers=exc.headers)
        return page(request, status, body)

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> Response:
        # The database refused a value (PostgreSQL: a NUL character in text, an integer out of
        # range) that no route checked first: bad input, not a server fault.
        body = {"code": "invalid_input", "message": "request: a value the database cannot store"}
        if wants_json(request):
            return JSONResponse(body, status_code=422)
        return page(request, 422, body)

    # Bodies past the limit are refused as they arrive (413, this shape), never buffered whole.
    app.add_middleware(
        BodyLimit,
        max_bytes=app.state.web.settings.max_body_bytes,
        max_photo_bytes=app.state.web.settings.max_photo_body_bytes,
    )
