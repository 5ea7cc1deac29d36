"""Dangerous actions in two deliberate steps: a button on the case page opens a confirmation
page naming exactly what will happen; only the form there (a reason chosen, never pre-selected,
and a signature) does it. The case refuses an empty or unknown reason itself, so the JSON API
and the command line are held to the same rule."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from workflow.core.errors import NotFound
from workflow.service.vocabulary import AuthRefused

from . import actions
from .context import Web, web_of
from .formdata import FORM
from .forms import user_id_of
from .pages_clinical import _version, case_context, offered_exits
from .security import Viewer, check_csrf
from .settings import CLINICAL

router = APIRouter(include_in_schema=False)


def confirm_context(
    web: Web, viewer: Viewer, case_id: str, action: str, typed: dict[str, str] | None = None
) -> dict[str, Any]:
    """The case page's context (patient, timer, version) with the one exit to confirm."""
    view = web.bedside.load(case_id)
    context = case_context(web, viewer, case_id, None, view=view)
    chosen = next((x for x in offered_exits(view, viewer) if x["id"] == action), None)
    if chosen is None:
        raise NotFound(f"'{action}' is not an action you can take on this dose now")
    context.update(exit=chosen, typed=typed or {}, title=f"{chosen['title']}: confirm")
    return context


@router.get("/cases/{case_id}/exit/{action}")
def confirm_exit(request: Request, case_id: str, action: str) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, CLINICAL)
    context = confirm_context(web, viewer, case_id, action)
    return web.templates.TemplateResponse(request, "exit_confirm.html", context)


@router.post("/cases/{case_id}/exit")
def side_exit(request: Request, case_id: str, form: FormData = FORM) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, CLINICAL)
    check_csrf(viewer, str(form.get("csrf_token", "")))
    request.state.reload_url = f"/cases/{case_id}"
    action = str(form.get("action", ""))
    typed = {"reason": str(form.get("reason", "")), "note": str(form.get("note", ""))}

    def retry() -> tuple[str, dict[str, Any]]:
        # Shown again with what was typed (never the password) and the case's version now.
        try:
            return "exit_confirm.html", confirm_context(web, viewer, case_id, action, typed)
        except NotFound:
            return "case.html", case_context(web, viewer, case_id, None)

    request.state.retry = retry()
    try:
        view = actions.side_exit(
            web,
            viewer,
            case_id,
            _version(form),
            action,
            typed["reason"],
            typed["note"],
            str(form.get("password", "")),
            user_id_of(form) or None,
        )
    except AuthRefused:
        request.state.retry = retry()  # the refusal moved the case's version on
        raise
    return RedirectResponse(f"/cases/{case_id}?signed={view.case.events[-1].seq}", status_code=303)
