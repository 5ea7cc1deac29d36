"""The auditor's archive (search, record view, one-click verification) and the admin's users."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from workflow.core.errors import InputError
from workflow.core.names import MixedScriptName
from workflow.core.titles import role_title
from workflow.service import Bedside
from workflow.service.vocabulary import ROLES

from . import actions
from .context import web_of
from .formdata import FORM
from .security import Viewer, check_csrf
from .settings import ADMIN, AUDIT

router = APIRouter(include_in_schema=False)


def parse_day(field: str, text: str | None, end: bool = False) -> datetime | None:
    """A search date (YYYY-MM-DD, site days) as a UTC bound; ``end`` makes it exclusive."""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InputError(field, f"'{text}' is not a date", "YYYY-MM-DD") from None
    if end:
        day += timedelta(days=1)
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


@router.get("/archive")
def archive(
    request: Request,
    q: str = "",
    mrn: str = "",
    date_from: str = "",
    date_to: str = "",
    lot: str = "",
    signer: str = "",
    state: str = "",
) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, AUDIT)
    query = {
        "q": q,
        "mrn": mrn,
        "date_from": date_from,
        "date_to": date_to,
        "lot": lot,
        "signer": signer,
        "state": state,
    }
    request.state.retry = ("archive.html", {"viewer": viewer, "rows": [], "query": query})
    rows = actions.search_archive(
        web,
        text=q,
        mrn=mrn,
        date_from=parse_day("date_from", date_from),
        date_to=parse_day("date_to", date_to, end=True),
        lot=lot,
        signer=signer,
        state=state,
    )
    return web.templates.TemplateResponse(
        request,
        "archive.html",
        {"viewer": viewer, "rows": rows, "query": query, "title": "Archive"},
    )


@router.get("/archive/{sha}")
def record_view(request: Request, sha: str) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, AUDIT)
    record, _pdf = actions.record_bytes(web, sha)
    return web.templates.TemplateResponse(
        request,
        "record.html",
        {"viewer": viewer, "record": record, "result": None, "title": "Record"},
    )


@router.post("/archive/{sha}/verify")
def verify(request: Request, sha: str, form: FormData = FORM) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, AUDIT)
    check_csrf(viewer, str(form.get("csrf_token", "")))
    record, _pdf = actions.record_bytes(web, sha)
    result = actions.verify_record(web, sha)
    return web.templates.TemplateResponse(
        request,
        "record.html",
        {"viewer": viewer, "record": record, "result": result, "title": "Record"},
    )


@router.get("/admin/users")
def users(request: Request) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, ADMIN)
    return web.templates.TemplateResponse(request, "users.html", users_context(request, viewer))


@router.get("/admin/wristband.pdf")
def wristband(request: Request, mrn: str = "") -> Response:
    """A test wristband for a patient (Code 128 of the MRN), to try the bedside scan."""
    return _test_print(
        request, "mrn", mrn, "type the patient's MRN", "wristband", lambda w, v: w.wristband_pdf(v)
    )


@router.get("/admin/badge.pdf")
def badge(request: Request, username: str = "") -> Response:
    """A test staff badge (Code 128 of the user id), to try signing in with a badge scan."""
    return _test_print(
        request,
        "username",
        username,
        "type the person's user id",
        "badge",
        lambda w, v: w.badge_pdf(v),
    )


# Prints one test barcode PDF through the service: (the service, the MRN or user id) -> PDF.
Printer = Callable[[Bedside, str], bytes]


def _test_print(
    request: Request, field: str, value: str, missing: str, kind: str, printed: Printer
) -> Response:
    """An admin's test print of a barcode (a wristband or a staff badge), inline as a PDF."""
    web = web_of(request)
    web.viewer(request, ADMIN)
    if not value.strip():
        raise InputError(field, missing)
    pdf = printed(web.bedside, value)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{kind}-test.pdf"'},
    )


def users_context(
    request: Request, viewer: Viewer, notice: str = "", typed: dict[str, object] | None = None
) -> dict[str, object]:
    web = web_of(request)

    return {
        "viewer": viewer,
        "users": [actions.user_json(u) for u in web.bedside.list_users()],
        "roles": sorted(ROLES),
        "role_titles": {r: role_title(web.bedside.protocol, r) for r in ROLES},
        "notice": notice,
        "title": "Users",
        # What the admin typed, shown again when the form is refused (never the password).
        "typed": typed or {},
    }


@router.post("/admin/users")
def add_user(request: Request, form: FormData = FORM) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, ADMIN)
    check_csrf(viewer, str(form.get("csrf_token", "")))
    typed: dict[str, object] = {
        "username": str(form.get("username", "")),
        "printed_name": str(form.get("printed_name", "")),
        "roles": [str(r) for r in form.getlist("roles")],
    }
    request.state.retry = ("users.html", users_context(request, viewer, typed=typed))
    try:
        web.bedside.add_user(
            str(typed["username"]),
            str(typed["printed_name"]),
            [str(r) for r in form.getlist("roles")],
            str(form.get("password", "")),
            by=viewer.user.id,
            must_change_password=True,
            confirm_mixed_script=form.get("confirm_mixed_script") == "on",
        )
    except MixedScriptName as warning:
        raise warning.confirm_with("tick the confirmation below and create again") from None
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/admin/users/{username}/deactivate")
def confirm_deactivate(request: Request, username: str) -> Response:
    """The first of two steps: a page naming whose account stops working, and what stays."""
    web = web_of(request)
    viewer = web.viewer(request, ADMIN)
    user = web.bedside.get_user(username)
    protocol = web.bedside.protocol
    target = {
        **actions.user_json(user),
        "role_titles": [role_title(protocol, r) for r in sorted(user.roles)],
    }
    return web.templates.TemplateResponse(
        request,
        "deactivate_confirm.html",
        {"viewer": viewer, "target": target, "title": f"Deactivate {user.username}"},
    )


@router.post("/admin/users/{username}/deactivate")
def deactivate(request: Request, username: str, form: FormData = FORM) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, ADMIN)
    check_csrf(viewer, str(form.get("csrf_token", "")))
    request.state.retry = ("users.html", users_context(request, viewer))
    web.bedside.deactivate_user(username, by=viewer.user.id)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/{username}/reset-password")
def reset_password(request: Request, username: str, form: FormData = FORM) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, ADMIN)
    check_csrf(viewer, str(form.get("csrf_token", "")))
    request.state.retry = ("users.html", users_context(request, viewer))
    web.bedside.reset_password(username, str(form.get("password", "")), by=viewer.user.id)
    return RedirectResponse("/admin/users", status_code=303)
