"""The bedside tablet and the pharmacy bench: worklists, one step per screen, side exits, the
bag label and the case's signed records."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile

from workflow.core.blinding import Blinding, blinded_pair, is_unprimed, refuse_while_blinded
from workflow.core.errors import BedsideError, InputError, StepRefused
from workflow.core.events import format_time
from workflow.core.gs1 import parse_scan
from workflow.core.photos import ACK_FIELD
from workflow.core.protocol.model import Protocol, Step, common_roles
from workflow.core.titles import EXIT_CONSEQUENCES, exit_title
from workflow.records.labels import bag_label_pdf
from workflow.service import RECORDS_PENDING, CaseRecords, CaseView, SittingEntry
from workflow.service.board import STAGES
from workflow.service.vocabulary import AuthRefused

from . import actions, photos
from .balance import balance_context, readings_from_form, readings_to_sign, weight_fields
from .context import Web, web_of
from .evidence import evidence_json
from .formdata import PHOTO_FORM
from .forms import form_echo, grouped, user_id_of, values_from_form
from .pages_formulary import kind_names
from .present import case_json, pending_json, signed_flash, zone_name
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
            "pending": [pending_json(o, web.bedside.tz) for o in web.bedside.pending_orders()],
            "title": "Ward board",
            "zone": zone_name(web.bedside.tz, web.bedside.clock.now()),
        },
    )


@router.get("/pharmacy")
def pharmacy(request: Request, step: str | None = None) -> Response:
    """The pharmacy queue: soonest due first, how long each dose has waited, counts per step;
    ``step`` shows only the doses waiting at that step (each count links to its filter)."""
    web = web_of(request)
    viewer = web.viewer(request, PHARMACY)
    queue = web.bedside.pharmacy_queue(limit=web.settings.worklist_limit, step=step)
    rows = actions.board_rows(web, viewer, queue.rows)
    return web.templates.TemplateResponse(
        request,
        "pharmacy.html",
        {
            "viewer": viewer,
            "rows": rows,
            "per_step": queue.per_step,
            "showing": queue.showing,
            "interface_effects": interface_effects(web),
            "pending": [pending_json(o, web.bedside.tz) for o in web.bedside.pending_orders()],
            "title": "Compounding queue",
            "zone": zone_name(web.bedside.tz, web.bedside.clock.now()),
        },
    )


# What a discontinued or cancelled order from the hospital did, in words (issue 16.5): the
# queue page shows it, since a dose that silently vanished from the queue would be a question.
EFFECT_WORDS = {
    "removed": "Removed from the queue",
    "flagged_for_waste": "Already prepared: flagged for waste",
}


def interface_effects(web: Web, limit: int = 10) -> list[dict[str, Any]]:
    """The latest doses orders from the hospital took off the queue or flagged for waste."""
    tz = web.bedside.tz
    out = []
    for e in web.bedside.interface_events(limit=100):
        if e.effect not in EFFECT_WORDS:
            continue  # queued and re-queued doses are on the queue itself
        waste_open = e.effect == "flagged_for_waste" and e.open
        out.append(
            {
                "at_local": e.at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z"),
                "order": e.placer_order,
                "message": f"{e.kind} {e.control_id}".strip(),
                "effect": EFFECT_WORDS[e.effect]
                + (" (waste not yet recorded)" if waste_open else ""),
                "open": waste_open,
                "case_id": e.case_id,
                "detail": e.detail,
            }
        )
        if len(out) == limit:
            break
    return out


def offered_exits(view: CaseView, viewer: Viewer) -> list[dict[str, Any]]:
    """The side exits this viewer may take on this case now, in words. Waste is offered only
    once a bag was prepared and cancel only before (the case refuses the other way round)."""
    case = view.case
    if case.closed:
        return []
    out = []
    for name, side in case.protocol.side_exits.items():
        if not viewer.has_any(side.roles):
            continue
        if name == "resume" and not case.on_hold:
            continue
        if name == "waste" and not case.bag_prepared:
            continue
        if name == "cancel" and case.bag_prepared and not case.given:
            continue
        out.append(
            {
                "id": name,
                "title": exit_title(name),
                "consequence": EXIT_CONSEQUENCES.get(name, ""),
                "reasons": side.reasons,
                "meaning": side.meaning,
            }
        )
    return out


def case_context(
    web: Web,
    viewer: Viewer,
    case_id: str,
    wanted: str | None,
    echo: dict[str, Any] | None = None,
    view: Any = None,
    signed: int | None = None,
    invalid: Collection[str] = (),
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
        "flash": signed_flash(view.case, signed, web.bedside.tz, blinding),
    }
    if step_id is not None:
        context.update(_step_form(web, viewer, view, step_id, blinding, echo, invalid))
    # During a mismatch either checker may re-enter: one link each, by the step's title.
    context["reentry"] = [
        {"id": sid, "title": view.case.protocol.step(sid).title}
        for sid in view.case.allowed_steps()
    ]
    context["exits"] = offered_exits(view, viewer)
    context["can_label"] = (
        viewer.has_any(PHARMACY)
        and view.case.beyond_use_at is not None
        and not view.case.closed
        and not blinding
    )
    context["records"] = records = web.bedside.case_records(view)
    context["records_note"] = records_note(view, records, signed)
    context["balance"] = balance_context(web, view.case.protocol, step_id)  # _balance.html
    context["pharmacy_screen"] = step_id is not None and view.case.protocol.step(step_id).phase in (
        "compounding",
    )
    return context


@dataclass(frozen=True)
class RecordsNote:
    """What the confirmation of the step that ended the case adds about its records: the words
    while they are being made, and the words the page's script puts in their place once they
    are archived or failed (so the confirmation never contradicts the records section)."""

    pending: str
    archived: str
    failed: str


def records_note(view: CaseView, records: CaseRecords, signed: int | None) -> RecordsNote | None:
    """The note for the confirmation of the step that ended the case while its records are
    being made (they are signed just after the step, not inside it); None otherwise."""
    case = view.case
    if records.state != RECORDS_PENDING or not case.events or signed != case.events[-1].seq:
        return None
    ended = "is signed off" if case.state == "completed" else f"has ended ({case.state})"
    return RecordsNote(
        pending=(
            f"The dose {ended}. Its records are being signed and archived; "
            "their links appear below when they are ready."
        ),
        archived=f"The dose {ended}. Its records are signed and archived: their links are below.",
        failed=f"The dose {ended}. Its records could not be made now: see below.",
    )


def _step_form(
    web: Web,
    viewer: Viewer,
    view: CaseView,
    step_id: str,
    blinding: Blinding,
    echo: dict[str, Any] | None,
    invalid: Collection[str],
) -> dict[str, Any]:
    """The form of the step this viewer signs next: its fields filled with what the viewer
    may see, the evidence, the photos and the signature's fields."""
    tz, now = web.bedside.tz, web.bedside.clock.now()
    step = view.case.protocol.step(step_id)
    n, m = view.case.step_number(step_id)
    fill = _filled(web, view, step_id, blinding, echo)
    form: dict[str, Any] = {
        "step": {
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
    }
    form["groups"], form["widgets"] = grouped(step, fill, invalid, tz)
    # A wristband scan identifies the patient where the step asks for the MRN.
    form["wristband"] = any(it.expect == "patient.mrn" for it in step.items)
    earlier = (
        [c for c in web.bedside.course_cases(view.case.course_id) if c.case_id != view.case.case_id]
        if view.case.protocol.initial in step.verifies
        else []
    )
    form["evidence"] = evidence_json(view.case, step, viewer.user.id, tz, now, blinding, earlier)
    form["photo_inputs"] = photos.photo_inputs(step)
    form["verified_photos"] = photos.verifier_panel(view, step, tz, blinding)
    # The blinded second checker signs with their own id on this tablet.
    form["ask_username"] = viewer.signing_lapsed or bool(step.blinded_against)
    form["together"] = _sitting_sections(web, viewer, view, step_id, blinding, echo, invalid)
    return form


def _filled(
    web: Web, view: CaseView, step_id: str, blinding: Blinding, echo: dict[str, Any] | None
) -> dict[str, Any]:
    """What a step's fields show: the course's facts, the proposals and the pre-filled plan
    this viewer may see, then what they typed before a refusal."""
    tz, now = web.bedside.tz, web.bedside.clock.now()
    fill = actions.course_facts(web, view, step_id, blinding, tz)
    fill.update(actions.proposals(view, step_id, blinding, now, tz))
    fill.update(actions.prefill(view, step_id, blinding))
    if echo:
        fill.update({k: v for k, v in echo.items() if v is not None})
    return fill


def _sitting_sections(
    web: Web,
    viewer: Viewer,
    view: CaseView,
    step_id: str,
    blinding: Blinding,
    echo: dict[str, Any] | None,
    invalid: Collection[str],
) -> list[dict[str, Any]]:
    """The later steps of the sitting that starts at ``step_id`` (protocol ``sittings``),
    shown in the same form and signed by the same signature, when the case waits for this
    step and the viewer holds a role that may sign them all. Not offered where a later step
    reads weights from the balance (its readings are sealed to one step's form)."""
    protocol = view.case.protocol
    ids = protocol.sitting_from(step_id)
    waiting = view.case.next_step()
    if not ids or waiting is None or waiting.id != step_id:
        return []
    steps = [protocol.step(sid) for sid in ids]
    if not viewer.has_any(common_roles(steps)) or any(
        weight_fields(protocol, s.id) for s in steps[1:]
    ):
        return []
    tz = web.bedside.tz
    out = []
    for later in steps[1:]:
        groups, widgets = grouped(later, _filled(web, view, later.id, blinding, echo), invalid, tz)
        n, m = view.case.step_number(later.id)
        out.append(
            {
                "id": later.id,
                "title": later.title,
                "n": n,
                "m": m,
                "meaning": later.meaning,
                "instructions": later.instructions,
                "starts_infusion": later.starts_infusion,
                "groups": groups,
                "widgets": widgets,
                "photo_inputs": photos.photo_inputs(later),
            }
        )
    return out


@router.get("/cases/{case_id}")
def case_page(
    request: Request, case_id: str, step: str | None = None, signed: int | None = None
) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, CLINICAL)
    context = case_context(web, viewer, case_id, step, signed=signed)
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
    fields = {k: str(v) for k, v in form.items() if not isinstance(v, UploadFile)}
    steps = _posted_steps(view.case.protocol, step_id, fields)

    def shown_again(echo_view: CaseView | None, invalid: Collection[str] = ()) -> dict[str, Any]:
        return case_context(
            web, viewer, case_id, step_id, _echo(steps, fields), echo_view, invalid=invalid
        )

    request.state.retry = ("case.html", shown_again(view))
    values = [values_from_form(s, fields, web.bedside.tz) for s in steps]
    # A scan of a product the formulary does not list will be refused: say so with the way
    # to list it (a pharmacist's signed entry), next to the refusal.
    offers = [
        o
        for s, v in zip(steps, values, strict=True)
        for o in formulary_offers(view.case.protocol, s, v)
    ]
    request.state.retry[1]["formulary_offers"] = offers
    actions.wristband_into(
        web, viewer, view, list(zip(steps, values, strict=True)), fields.get("scan_wristband")
    )
    entries = [
        SittingEntry(s.id, v, shot, readings_to_sign(view.case.protocol, s.id, fields, v))
        for s, v, shot in zip(steps, values, _photos_by_step(steps, form), strict=True)
    ]
    try:
        signed = actions.sign_sitting(
            web,
            viewer,
            case_id,
            _version(form),
            entries,
            fields.get("password", ""),
            user_id_of(fields) or None,
            fields.get(ACK_FIELD) == "on",
        )
    except AuthRefused:
        # The refused signature is in the case's trail, so its version moved on: the form shown
        # again must carry the new one, or the retry with the right password would be a 409.
        request.state.retry = ("case.html", shown_again(None))
        raise
    except BedsideError as exc:
        # Shown again with every refused field marked (aria-invalid, tied to the message).
        named: tuple[str, ...] = getattr(exc, "fields", ())
        bad = {str(f) for f in named} | {str(getattr(exc, "field", ""))}
        request.state.retry = ("case.html", shown_again(view, bad))
        request.state.retry[1]["formulary_offers"] = offers
        # The balance readings made on this form stay with it (hidden fields).
        request.state.retry[1]["balance"] = balance_context(
            web, view.case.protocol, step_id, readings_from_form(fields)
        )
        raise
    return _signed_redirect(case_id, signed)


def _posted_steps(protocol: Protocol, step_id: str, fields: dict[str, str]) -> list[Step]:
    """The step posted and, when the form showed its sitting and the person signed them all
    (not "Sign this step only"), the sitting's later steps; the service holds them to the
    protocol's sittings."""
    ids = [step_id]
    if not fields.get("only", "").strip():
        ids += fields.get("together", "").split()
    known = protocol.step_ids()
    for sid in ids:
        if sid not in known:
            raise InputError("step", f"'{sid}' is not a step of this case's protocol")
    return [protocol.step(sid) for sid in ids]


def _photos_by_step(steps: list[Step], form: FormData) -> list[dict[str, bytes]]:
    """The posted photos, each with the step that asks for it; one no step asks for goes with
    the first step, whose signing then refuses it naming the field."""
    taken = photos.uploads(form)
    out: list[dict[str, bytes]] = [{} for _ in steps]
    for photo_id, data in taken.items():
        owner = next((i for i, s in enumerate(steps) if any(p.id == photo_id for p in s.photos)), 0)
        out[owner][photo_id] = data
    return out


def _echo(steps: list[Step], fields: dict[str, str]) -> dict[str, Any]:
    """What was typed on every step of the form, to show again after a refusal."""
    echo: dict[str, Any] = {}
    for s in steps:
        echo.update(form_echo(s, fields))
    return echo


def _signed_redirect(case_id: str, view: CaseView) -> Response:
    """Back to the case, naming the event just signed so the page confirms it once."""
    return RedirectResponse(f"/cases/{case_id}?signed={view.case.events[-1].seq}", status_code=303)


def formulary_offers(
    protocol: Protocol, step: Step, values: dict[str, Any]
) -> list[dict[str, str]]:
    """The scanned products on this form whose GTIN the formulary does not list."""
    listed = {p.gtin for p in protocol.formulary}
    names = kind_names(protocol)
    offers = []
    for spec in step.scans:
        code = values.get(f"{spec.kind}_scan")
        if values.get(f"{spec.kind}_entry") != "scanned" or not isinstance(code, str):
            continue
        try:
            gtin = parse_scan(code).gtin
        except StepRefused:
            continue  # unreadable: the refusal says so
        if gtin not in listed:
            offers.append({"gtin": gtin, "kind": spec.kind, "name": names[spec.kind]})
    return offers


@router.get("/cases/{case_id}/label.pdf")
def label(request: Request, case_id: str) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, PHARMACY)
    view = web.bedside.load(case_id)
    # Someone who may sign an independent check now reads the label on the bag; a reprint
    # would show what the label should say.
    refuse_while_blinded(actions.blinding_of(web, view, viewer), "The bag label")
    pdf = bag_label_pdf(view.case, web.bedside.tz, web.bedside.settings.label_symbology)
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
