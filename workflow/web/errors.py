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
from starlette.exceptions import HTTPException as StarletteHTTPException

from workflow.errors import (
    AuthError,
    BedsideError,
    ConflictError,
    InputError,
    IntegrityError,
    NotFound,
    ProtocolError,
    StepRefused,
)
from workflow.identity import WRONG_ROLE, AuthRefused

from .security import CsrfFailed, Forbidden, NotSignedIn

RELOAD = "this case changed, reload"


def status_of(exc: BedsideError) -> int:
    if isinstance(exc, NotSignedIn):
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
    if isinstance(exc, IntegrityError | ProtocolError):
        return 500
    return 400


def body_of(exc: BedsideError) -> dict[str, Any]:
    body = exc.to_dict()
    body.setdefault("code", exc.code)
    body.setdefault("message", exc.message)
    if isinstance(exc, ConflictError) and RELOAD not in exc.message:
        body["message"] = f"{RELOAD}: {exc.message}"
    field = getattr(exc, "field", None)
    if field is not None:
        body["field"] = field
    return {k: v for k, v in body.items() if v is not None}


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
        if wants_json(request):
            return JSONResponse(body, status_code=status)
        if isinstance(exc, NotSignedIn):
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            if request.method != "GET":
                target = "/"
            return RedirectResponse(
                f"/login?next={quote(target)}&why={quote(exc.message)}", status_code=303
            )
        return page(request, status, body)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
        field = ".".join(loc) or None
        body: dict[str, Any] = {
            "code": "invalid_input",
            "message": f"{field or 'request'}: {first.get('msg', 'invalid')}",
        }
        if field:
            body["field"] = field
        if wants_json(request):
            return JSONResponse(body, status_code=422)
        return page(request, 422, body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = {"code": code, "message": str(exc.detail)}
        if wants_json(request):
            return JSONResponse(body, status_code=exc.status_code)
        return page(request, exc.status_code, body)
