"""The bedside tablet and the pharmacy bench: worklists, one step per screen, side exits, the
bag label and the case's signed records."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile

from workflow.board import STAGES
from workflow.core.blinding import blinded_pair, is_unprimed, refuse_while_blinded
from workflow.core.errors import InputError
from workflow.core.events import format_time
from workflow.core.photos import ACK_FIELD
from workflow.records.labels import bag_label_pdf
from workflow.vocabulary import AuthRefused

from . import actions, photos
from .context import Web, web_of
from .formdata import FORM, PHOTO_FORM
from .forms import form_echo, values_from_form, widgets
from .present import case_json, zone_name
from .security import Viewer, check_csrf
from .settings import CLINICAL, PHARMACY, RECORD_READERS, WARD

router = APIRouter(include_in_schema=False)


def _version(form: Any) -> int:
    raw = str(form.get("expected_version", ""))
    if not raw.isdigit():
        raise InputError("expected_version", "missing; reload the page")
    return int(raw)


@router.get("/ward")
def ward(request: Request) -> Response:
    """The ward board: every dose in every state, grouped by stage, in the site's time zone."""
    web = web_of(request)
    viewer = web.viewer(request, WARD)
    rows = actions.board_rows(
        web, viewer, web.bedside.ward_board(limit=web.settings.worklist_limit)
    )
    groups = [
        {"stage": stage, "title": title, "rows": [r for r in rows if r["stage"] == stage]}
        for stage, title in STAGES.items()
    ]
    return web.templates.TemplateResponse(
        request,
        "worklist.html",
        {
            "viewer": viewer,
            "rows": rows,
            "groups": [g for g in groups if g["rows"]],
            "title": "Ward board",
            "zone": zone_name(web.bedside.tz, web.bedside.clock.now()),
        },
    )


@router.get("/pharmacy")
def pharmacy(request: Request) -> Response:
    """The pharmacy queue: soonest due first, how long each dose has waited, counts per step."""
    web = web_of(request)
    viewer = web.viewer(request, PHARMACY)
    queue = web.bedside.pharmacy_queue(limit=web.settings.worklist_limit)
    rows = actions.board_rows(web, viewer, queue.rows)
    return web.templates.TemplateResponse(
        request,
        "pharmacy.html",
        {
            "viewer": viewer,
            "rows": rows,
            "per_step": queue.per_step,
            "title": "Compounding queue",
            "zone": zone_name(web.bedside.tz, web.bedside.clock.now()),
        },
    )


def case_context(
    web: Web,
    viewer: Viewer,
    case_id: str,
    wanted: str | None,
    echo: dict[str, Any] | None = None,
    view: Any = None,
) -> dict[str, Any]:
    view = view or web.bedside.load(case_id)
    # ``wanted`` (the ?step= of a link) only chooses which form; what is hidden follows the
    # viewer and the case's state.
    step_id = actions.pick_step(view, viewer, wanted)
    now = web.bedside.clock.now()
    blinding = actions.blinding_of(web, view, viewer)
    data = case_json(view, web.bedside.tz, now, blinding)
    context: dict[str, Any] = {
        "viewer": viewer,
        "case": data,
        "title": data["patient"]["name"],
        "now_iso": format_time(now),
    }
    if step_id is not None:
        step = view.case.protocol.step(step_id)
        n, m = view.case.step_number(step_id)
        fill = actions.prefill(view, step_id, blinding)
        if echo:
            fill.update({k: v for k, v in echo.items() if v is not None})
        context["step"] = {
            "id": step.id,
            "title": step.title,
            "n": n,
            "m": m,
            "instructions": step.instructions,
            "meaning": step.meaning,
            # An independent check: the signer works from the label and the wristband alone.
            "blinded": is_unprimed(view.case.protocol, step),
            "paired": blinded_pair(view.case.protocol, step) is not None,
            "second_checker": bool(step.blinded_against),
            "starts_infusion": step.starts_infusion,
            "stops_infusion": step.stops_infusion,
        }
        context["widgets"] = widgets(step, fill)
        context["photo_inputs"] = photos.photo_inputs(step)
        context["verified_photos"] = photos.verifier_panel(view, step, web.bedside.tz, blinding)
        # The blinded second checker signs with their own id on this tablet.
        context["ask_username"] = viewer.signing_lapsed or bool(step.blinded_against)
    # During a mismatch either checker may re-enter: one link each, by the step's title.
    context["reentry"] = [
        {"id": sid, "title": view.case.protocol.step(sid).title}
        for sid in view.case.allowed_steps()
    ]
    exits = []
    if not view.case.closed:
        for name, side in view.case.protocol.side_exits.items():
            if viewer.has_any(side.roles) and (name != "resume" or view.case.on_hold):
                exits.append({"id": name, "reasons": side.reasons, "meaning": side.meaning})
    context["exits"] = exits
    context["can_label"] = (
        viewer.has_any(PHARMACY)
        and view.case.beyond_use_at is not None
        and not view.case.closed
        and not blinding
    )
    context["records"] = web.bedside.search_archive(case_id=case_id) if view.case.closed else []
    context["pharmacy_screen"] = step_id is not None and view.case.protocol.step(step_id).phase in (
        "compounding",
    )
    return context


@router.get("/cases/{case_id}")
def case_page(request: Request, case_id: str, step: str | None = None) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, CLINICAL)
    context = case_context(web, viewer, case_id, step)
    return web.templates.TemplateResponse(request, "case.html", context)


@router.post("/cases/{case_id}/steps/{step_id}")
def sign_step(
    request: Request, case_id: str, step_id: str, form: FormData = PHOTO_FORM
) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, CLINICAL)
    check_csrf(viewer, str(form.get("csrf_token", "")))
    request.state.reload_url = f"/cases/{case_id}"
    view = web.bedside.load(case_id)
    step = view.case.protocol.step(step_id) if step_id in view.case.protocol.step_ids() else None
    if step is None:
        raise InputError("step", f"'{step_id}' is not a step of this case's protocol")
    fields = {k: str(v) for k, v in form.items() if not isinstance(v, UploadFile)}
    request.state.retry = (
        "case.html",
        case_context(web, viewer, case_id, step_id, form_echo(step, fields), view=view),
    )
    values = values_from_form(step, fields, web.bedside.tz)
    try:
        actions.sign_step(
            web,
            viewer,
            case_id,
            step_id,
            _version(form),
            values,
            fields.get("password", ""),
            fields.get("username") or None,
            photos.uploads(form),
            fields.get(ACK_FIELD) == "on",
        )
    except AuthRefused:
        # The refused signature is in the case's trail, so its version moved on: the form shown
        # again must carry the new one, or the retry with the right password would be a 409.
        echo = form_echo(step, fields)
        request.state.retry = ("case.html", case_context(web, viewer, case_id, step_id, echo))
        raise
    return RedirectResponse(f"/cases/{case_id}", status_code=303)


@router.post("/cases/{case_id}/exit")
def side_exit(request: Request, case_id: str, form: FormData = FORM) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, CLINICAL)
    check_csrf(viewer, str(form.get("csrf_token", "")))
    request.state.reload_url = f"/cases/{case_id}"
    request.state.retry = ("case.html", case_context(web, viewer, case_id, None))
    try:
        actions.side_exit(
            web,
            viewer,
            case_id,
            _version(form),
            str(form.get("action", "")),
            str(form.get("reason", "")),
            str(form.get("note", "")),
            str(form.get("password", "")),
            str(form.get("username", "")) or None,
        )
    except AuthRefused:
        request.state.retry = ("case.html", case_context(web, viewer, case_id, None))  # new version
        raise
    return RedirectResponse(f"/cases/{case_id}", status_code=303)


@router.get("/cases/{case_id}/label.pdf")
def label(request: Request, case_id: str) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, PHARMACY)
    view = web.bedside.load(case_id)
    # Someone who may sign an independent check now reads the label on the bag; a reprint
    # would show what the label should say.
    refuse_while_blinded(actions.blinding_of(web, view, viewer), "The bag label")
    pdf = bag_label_pdf(view.case, web.bedside.tz)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="label-{case_id[:8]}.pdf"'},
    )


@router.get("/records/{sha}.pdf")
def record_pdf(request: Request, sha: str, download: int = 0) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, RECORD_READERS)
    record, pdf = actions.record_for(web, viewer, sha)
    how = "attachment" if download else "inline"
    name = f"{record.kind}-{record.case_id[:8]}-{sha[:8]}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'{how}; filename="{name}"'},
    )
