"""Orders on the web: find or register a patient, start a course with its signed attestations,
open a dose by signing its order, and a patient page with the course, its doses and the next.

Each form posts to one route that calls the same service command as the CLI (``patient add``,
``course start``, ``case new`` + the order's signature); the service decides everything.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from workflow.core.errors import InputError
from workflow.service.vocabulary import COURSE_ACTIVE, Course, Patient

from .context import Web, web_of
from .formdata import FORM
from .forms import form_echo, user_id_of, values_from_form, widgets
from .present import local, pending_json, zone_name
from .security import Viewer, check_csrf, signing_proof
from .settings import CLINICAL

router = APIRouter(include_in_schema=False)

# Registration fields, as the service (and its InputErrors) name them.
PATIENT_FIELDS = ("mrn", "family_name", "given_name", "date_of_birth")
MAX_SEARCH = 100


def _orders(web: Web) -> tuple[str, ...]:
    return web.bedside.order_roles()


def _text(form: FormData, name: str) -> str:
    return str(form.get(name, "") or "")


@router.get("/patients")
def patients(request: Request, q: str = "") -> Response:
    web = web_of(request)
    viewer = web.viewer(request, CLINICAL)
    return web.templates.TemplateResponse(request, "patients.html", _list_context(web, viewer, q))


def _list_context(
    web: Web, viewer: Viewer, q: str, typed: dict[str, str] | None = None
) -> dict[str, Any]:
    q = q.strip()[:MAX_SEARCH]
    return {
        "viewer": viewer,
        "title": "Patients",
        "q": q,
        "patients": web.bedside.search_patients(q),
        "may_order": viewer.has_any(_orders(web)),
        "typed": typed or {},
    }


@router.post("/patients")
def register(request: Request, form: FormData = FORM) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, _orders(web))
    check_csrf(viewer, _text(form, "csrf_token"))
    typed = {k: _text(form, k) for k in PATIENT_FIELDS}
    request.state.retry = ("patients.html", _list_context(web, viewer, "", typed))
    patient = web.bedside.register_patient(
        mrn=typed["mrn"],
        family_name=typed["family_name"],
        given_name=typed["given_name"],
        date_of_birth=typed["date_of_birth"],
        by=viewer.user.username,
        confirm_mixed_script=_text(form, "confirm_mixed_script") == "on",
    )
    return RedirectResponse(f"/patients/{patient.id}", status_code=303)


def patient_context(
    web: Web,
    viewer: Viewer,
    patient: Patient,
    echo: dict[str, Any] | None = None,
    typed: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Everything the patient page shows: identifiers, courses, the active course's doses, the
    next dose (due time or why not), and the forms this viewer may sign."""
    b = web.bedside
    tz = b.tz
    now = b.clock.now()
    courses = b.patient_courses(patient.id)
    active = next((c for c in courses if c.status == COURSE_ACTIVE), None)
    doses = _doses(web, active.id) if active is not None else []
    due = _next_due(web, active.id) if active is not None else None
    spec = b.protocol.course_start
    block = b.retreatment_block_for(patient.id) if active is None else None
    order_step = b.protocol.step(b.protocol.initial)
    may_order = viewer.has_any(_orders(web))
    return {
        "viewer": viewer,
        "title": patient.display_name,
        "zone": zone_name(tz, now),
        "patient": {
            "id": patient.id,
            "mrn": patient.mrn,
            "name": patient.display_name,
            "date_of_birth": patient.date_of_birth.isoformat(),
        },
        "courses": [_course_row(c, tz) for c in courses],
        "pending": [pending_json(o, tz) for o in b.pending_orders(patient.id)],
        "active": active,
        "doses": doses,
        "due": due,
        "may_start": may_order and active is None and viewer.has_any(_start_roles(web)),
        "may_open": may_order and viewer.has_any(order_step.roles),
        "attestations": list(spec.items) if spec else [],
        "attested": typed or {},
        "override_reason": (typed or {}).get("override_reason", ""),
        "block": block.describe() if block else None,
        "block_source": (spec.retreatment.source if spec and spec.retreatment else ""),
        "may_override": bool(spec and spec.retreatment and spec.retreatment.override_roles),
        "order_step": {
            "id": order_step.id,
            "title": order_step.title,
            "meaning": order_step.meaning,
        },
        "widgets": widgets(order_step, echo),
        "ask_username": viewer.signing_lapsed,
    }


def _doses(web: Web, course_id: str) -> list[dict[str, Any]]:
    """The active course's doses as the patient page lists them."""
    tz = web.bedside.tz
    rows = []
    for view in web.bedside.course_doses(course_id):
        c = view.case
        nxt = c.next_step()
        rows.append(
            {
                "id": c.case_id,
                "cycle": c.cycle,
                "dose_in_cycle": c.dose_in_cycle,
                "dose_in_course": c.dose_in_course,
                "due_local": local(view.record.scheduled_at, tz),
                "given_local": local(c.given_at, tz),
                "state": c.state.replace("_", " "),
                "next": nxt.title if nxt and not c.closed else "",
                "on_hold": c.on_hold,
                "closed": c.closed,
            }
        )
    return rows


def _next_due(web: Web, course_id: str) -> dict[str, Any]:
    """When the course's next dose is due (or why none can open), in the site's zone."""
    tz, now = web.bedside.tz, web.bedside.clock.now()
    nd = web.bedside.next_due(course_id)
    # Shown and prefilled to the minute, rounded up: never before the schedule allows.
    due_at = _ceil_minute(nd.due_at) if nd.due_at else None
    return {
        "at_local": local(due_at, tz),
        "time": due_at.astimezone(tz).strftime("%H:%M") if due_at else "",
        "input": due_at.astimezone(tz).strftime("%Y-%m-%dT%H:%M") if due_at else "",
        "now": nd.due_at is not None and nd.due_at <= now,
        "why_not": nd.why_not,
        "opens_now": nd.opens_now,
        "dose": nd.dose,
    }


def _course_row(c: Course, tz: tzinfo) -> dict[str, Any]:
    start = c.start_record or {}
    return {
        "id": c.id,
        "status": c.status,
        "started_local": local(c.started_at, tz),
        "protocol_version": c.protocol_version,
        "override": start.get("retreatment_override"),
        "signer": (start.get("by") or {}).get("name", ""),
    }


def _ceil_minute(at: datetime) -> datetime:
    whole = at.replace(second=0, microsecond=0)
    return whole if whole == at else whole + timedelta(minutes=1)


def _start_roles(web: Web) -> tuple[str, ...]:
    spec = web.bedside.protocol.course_start
    return spec.roles if spec else ("prescriber",)


@router.get("/patients/{patient_id}")
def patient_page(request: Request, patient_id: str) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, CLINICAL)
    patient = web.bedside.patient(patient_id)
    context = patient_context(web, viewer, patient)
    return web.templates.TemplateResponse(request, "patient.html", context)


@router.post("/patients/{patient_id}/courses")
def start_course(request: Request, patient_id: str, form: FormData = FORM) -> Response:
    """The prescriber's signed course start: each attestation ticked, and after a toxicity
    that contraindicates retreatment, the override's reason (the service judges both)."""
    web = web_of(request)
    viewer = web.viewer(request, _orders(web))
    check_csrf(viewer, _text(form, "csrf_token"))
    patient = web.bedside.patient(patient_id)
    spec = web.bedside.protocol.course_start
    attestations = {
        item.id: True
        for item in (spec.items if spec else ())
        if _text(form, f"a_{item.id}") == "on"
    }
    reason = _text(form, "override_reason")
    typed = {f"a_{k}": "on" for k in attestations} | {"override_reason": reason}
    request.state.retry = ("patient.html", patient_context(web, viewer, patient, typed=typed))
    proof = signing_proof(viewer, _text(form, "password"), user_id_of(form) or None)
    web.bedside.start_course(patient.id, proof, attestations, override_reason=reason)
    return RedirectResponse(f"/patients/{patient.id}", status_code=303)


@router.post("/patients/{patient_id}/doses")
def open_dose(request: Request, patient_id: str, form: FormData = FORM) -> Response:
    """Open the course's next dose by signing its order (one signature, judged whole)."""
    web = web_of(request)
    viewer = web.viewer(request, _orders(web))
    check_csrf(viewer, _text(form, "csrf_token"))
    b = web.bedside
    patient = b.patient(patient_id)
    step = b.protocol.step(b.protocol.initial)
    fields = {k: str(v) for k, v in form.items()}
    echo = form_echo(step, fields)
    request.state.retry = ("patient.html", patient_context(web, viewer, patient, echo=echo))
    course = b.active_course(patient.id)
    due_at = _due_at(web, _text(form, "due_at"))
    values = values_from_form(step, fields, b.tz)
    proof = signing_proof(viewer, fields.get("password", ""), user_id_of(fields) or None)
    view = b.open_dose(course.id, due_at, values, proof)
    return RedirectResponse(f"/patients/{patient.id}#dose-{view.case.case_id}", status_code=303)


def _due_at(web: Web, text: str) -> datetime:
    """The due time typed (the browser's datetime-local is wall time at the site), or now."""
    tz = web.bedside.tz
    if not text.strip():
        return web.bedside.clock.now()
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            "due_at", f"'{text}' is not a date and time", "YYYY-MM-DDTHH:MM, site time"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed
