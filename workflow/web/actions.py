"""Operations the pages and the API share, so both follow the same rules.

Each takes the signed-in viewer and plain values and asks the service; a signature goes as a
TabletProof of the viewer's session, which the service records (11.200 continuity) with the
signed event in one transaction. Nothing clinical is decided here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any

from workflow.core.blinding import Blinding, blinding_for, is_unprimed, refuse_while_blinded
from workflow.core.dosing import order_proposals
from workflow.core.errors import InputError, NotFound
from workflow.core.events import format_decimal
from workflow.core.items import rounded
from workflow.core.protocol.model import Step
from workflow.service import BoardRow, CaseView, SittingEntry
from workflow.service.vocabulary import ArchivedRecord, TabletProof, User

from .context import Web
from .present import board_row
from .security import Viewer, signing_proof


def blinding_of(
    web: Web, view: CaseView, viewer: Viewer, others: list[CaseView] | None = None
) -> Blinding:
    """What this viewer may not see of this case now (workflow.core.blinding decides), counting the
    patient's other open doses: ``others`` when the caller has them (a worklist's rows), else
    read from the store."""
    if others is None:
        others = open_doses_of(web, view)
    return blinding_for(view.case, viewer.user.roles, [o.case for o in others])


def open_doses_of(web: Web, view: CaseView) -> list[CaseView]:
    """The patient's other doses that are not finished (usually none: one dose at a time)."""
    final = view.case.protocol.final_states
    return [
        web.bedside.load(r.id)
        for r in web.bedside.list_cases(patient_id=view.record.patient_id)
        if r.id != view.case.case_id and r.state not in final
    ]


def worklist_blinding(web: Web, views: list[CaseView], viewer: Viewer) -> list[Blinding]:
    """Each row's blinding, the rows themselves standing for the patients' open doses (every
    dose at a bedside check is on the ward's list), without a query per row."""
    by_patient: dict[str, list[CaseView]] = {}
    for v in views:
        by_patient.setdefault(v.record.patient_id, []).append(v)
    return [blinding_of(web, v, viewer, others=by_patient[v.record.patient_id]) for v in views]


def _signed(
    web: Web,
    viewer: Viewer,
    case_id: str,
    step_id: str | None,
    password: str,
    username: str | None,
    act: Callable[[TabletProof], CaseView],
) -> CaseView:
    # The service checks the proof, appends the event and records the signature in this
    # session in one transaction.
    return act(signing_proof(viewer, password, username))


def sign_step(
    web: Web,
    viewer: Viewer,
    case_id: str,
    step_id: str,
    expected_version: int,
    values: dict[str, Any],
    password: str,
    username: str | None,
    photos: dict[str, bytes] | None = None,
    acknowledge_barcodes: bool = False,
    balance: dict[str, dict[str, str]] | None = None,
) -> CaseView:
    # A bag scanned for another dose is named by the service (Bench.naming_the_bag).
    return _signed(
        web,
        viewer,
        case_id,
        step_id,
        password,
        username,
        lambda proof: web.bedside.sign_step(
            case_id,
            expected_version,
            step_id,
            values,
            proof,
            photos,
            acknowledge_barcodes,
            balance,
        ),
    )


def sign_sitting(
    web: Web,
    viewer: Viewer,
    case_id: str,
    expected_version: int,
    entries: list[SittingEntry],
    password: str,
    username: str | None,
    acknowledge_barcodes: bool = False,
) -> CaseView:
    """One step, or the steps of a sitting, with one signature (Bedside.sign_sitting)."""
    return _signed(
        web,
        viewer,
        case_id,
        entries[0].step_id if entries else None,
        password,
        username,
        lambda proof: web.bedside.sign_sitting(
            case_id, expected_version, entries, proof, acknowledge_barcodes
        ),
    )


def side_exit(
    web: Web,
    viewer: Viewer,
    case_id: str,
    expected_version: int,
    action: str,
    reason: str,
    note: str,
    password: str,
    username: str | None,
) -> CaseView:
    return _signed(
        web,
        viewer,
        case_id,
        None,
        password,
        username,
        lambda proof: web.bedside.side_exit(case_id, expected_version, action, reason, note, proof),
    )


def correct(
    web: Web,
    viewer: Viewer,
    case_id: str,
    expected_version: int,
    target_seq: int,
    values: dict[str, Any],
    reason: str,
    password: str,
    username: str | None,
) -> CaseView:
    return _signed(
        web,
        viewer,
        case_id,
        None,
        password,
        username,
        lambda proof: web.bedside.correct(
            case_id, expected_version, target_seq, values, reason, proof
        ),
    )


def board_rows(web: Web, viewer: Viewer, rows: list[BoardRow]) -> list[dict[str, Any]]:
    """The ward board's or pharmacy queue's rows as this viewer may see them (the same for the
    page and the JSON API)."""
    now = web.bedside.clock.now()
    blinded = worklist_blinding(web, [r.view for r in rows], viewer)
    return [board_row(r, web.bedside.tz, now, b) for r, b in zip(rows, blinded, strict=True)]


def from_wristband(
    web: Web, viewer: Viewer, view: CaseView, step: Step, scanned: str, values: dict[str, Any]
) -> None:
    """A wristband scan, checked against this dose's patient (a wrong patient is refused in
    words), stands for the MRN the step asks for; an MRN also typed must say the same."""
    hidden = blinding_of(web, view, viewer).hides("patient.mrn")
    mrn = web.bedside.check_wristband(view, scanned, show_dose_mrn=not hidden)
    for item in step.items:
        if item.expect != "patient.mrn":
            continue
        typed = values.get(item.id)
        if typed is None:
            values[item.id] = mrn
        elif " ".join(str(typed).split()).casefold() != mrn.casefold():
            raise InputError(
                item.id,
                f"typed '{typed}', but the wristband scan says {mrn}: clear one of them",
                label=item.label,
            )


def wristband_into(
    web: Web,
    viewer: Viewer,
    view: CaseView,
    entered: list[tuple[Step, dict[str, Any]]],
    scanned: str | None,
) -> None:
    """A wristband scan posted with a form or an API body, into each step that asks for the
    MRN (:func:`from_wristband`); nothing when no scan was posted."""
    if not scanned or not scanned.strip():
        return
    for step, values in entered:
        if any(it.expect == "patient.mrn" for it in step.items):
            from_wristband(web, viewer, view, step, scanned, values)


def pick_step(view: CaseView, viewer: Viewer, wanted: str | None) -> str | None:
    """The step this person may sign now (during a double-check mismatch, the one asked for)."""
    allowed = [
        s for s in view.case.allowed_steps() if viewer.has_any(view.case.protocol.step(s).roles)
    ]
    if wanted and wanted in allowed:
        return wanted
    if len(allowed) == 1:
        return allowed[0]
    return None  # none, or a mismatch: the page asks which checker re-enters


def prefill(view: CaseView, step_id: str, blinding: Blinding) -> dict[str, Any]:
    """What the form may show before typing: this step's current entry (a re-entry), less
    every value the viewer may not see (a blinded pair's entries, what a check asks for)."""
    if blinding.hides_entry(step_id):
        return {}
    step = view.case.protocol.step(step_id)
    out: dict[str, Any] = {}
    for k, v in view.case.blinded_values(step_id).items():
        item = step.item(k)
        if item is not None and not blinding.hides_value(step, item):
            out[k] = str(v)
    return out


def proposals(
    view: CaseView, step_id: str, blinding: Blinding, now: datetime, tz: tzinfo
) -> dict[str, Any]:
    """What the system already knows, put in the form for the signer to confirm (issue 12.4):
    the label dose to the prescriber (core ``order_proposals``), the plan's numbers to the
    preparer, the only
    option of a one-option choice, "now" for the time a preparation starts its beyond-use
    clock. Never at an independent check (``is_unprimed``), nor a value the viewer's blinding
    hides: there the signer reads each value at its source."""
    protocol = view.case.protocol
    step = protocol.step(step_id)
    if is_unprimed(protocol, step):
        return {}
    out: dict[str, Any] = {} if blinding.plan else dict(order_proposals(protocol, step_id))
    for item in step.items:
        if item.expect and item.expect.startswith("plan.") and not blinding.hides(item.expect):
            value = view.case.expected(item.expect)
            if isinstance(value, Decimal):
                out[item.id] = format_decimal(rounded(item, value))
        elif item.type == "choice" and item.required and len(item.options) == 1:
            out[item.id] = item.options[0].id
        elif item.id == step.sets_beyond_use and item.type == "datetime":
            out[item.id] = now.astimezone(tz).strftime("%Y-%m-%dT%H:%M")
    return out


def course_facts(
    web: Web, view: CaseView, step_id: str, blinding: Blinding, tz: tzinfo
) -> dict[str, Any]:
    """Facts of the course rather than the dose, proposed from the latest earlier dose so
    they are asked once (issue 12.4): the order (dosing weight, its source and time) and the
    eligibility results. Never an acknowledgement's reason or an attestation (each signature
    gives its own), never to a viewer with anything hidden; the signer confirms or changes."""
    protocol = view.case.protocol
    if blinding or step_id not in (protocol.initial, protocol.eligibility.step):
        return {}
    step = protocol.step(step_id)
    acknowledged = {a.item for a in protocol.acknowledgements}
    out: dict[str, Any] = {}
    for key, value in web.bedside.earlier_entry(view, step_id).items():
        item = step.item(key)
        if item is None or key in acknowledged or item.must_be is not None:
            continue
        out[key] = form_text(value, tz)
    return out


def form_text(value: Any, tz: tzinfo) -> str:
    """A signed value as its form field shows it (a time in the site's zone, to the minute)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, datetime):
        return value.astimezone(tz).strftime("%Y-%m-%dT%H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def search_archive(
    web: Web,
    *,
    text: str | None,
    mrn: str | None,
    date_from: datetime | None,
    date_to: datetime | None,
    lot: str | None,
    signer: str | None,
    state: str | None,
    limit: int = 100,
) -> list[ArchivedRecord]:
    rows = web.bedside.search_archive(
        text=text or None,
        mrn=mrn or None,
        signed_from=date_from,
        signed_to=date_to,
        limit=500 if (lot or signer or state) else limit,
    )
    # Lot, signer and state are matched here: the index keeps them as display text.
    if lot:
        rows = [r for r in rows if lot.lower() in r.lots.lower()]
    if signer:
        rows = [r for r in rows if signer.lower() in r.signers.lower()]
    if state:
        rows = [r for r in rows if r.state == state]
    return rows[:limit]


def record_bytes(web: Web, sha: str) -> tuple[ArchivedRecord, bytes]:
    if web.archive is None:
        raise NotFound("this installation has no archive (run `bedside init`)")
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise InputError("sha256", "not a SHA-256 hex digest")
    return web.archive.get(sha)


def record_for(web: Web, viewer: Viewer, sha: str) -> tuple[ArchivedRecord, bytes]:
    """A signed record for someone who may be at a bedside check: a record shows the patient's
    identifiers and the dose plan, so it is refused (403 ``blinded``) while they may sign a
    check of one of this patient's doses."""
    record, pdf = record_bytes(web, sha)
    refuse_while_blinded(blinding_of(web, web.bedside.load(record.case_id), viewer), "This record")
    return record, pdf


def verify_record(web: Web, sha: str) -> dict[str, Any]:
    record, pdf = record_bytes(web, sha)
    assert web.archive is not None
    result = web.archive.verify_bytes(pdf).to_dict()
    result["sha256"] = record.sha256
    return result


def user_json(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "id": user.id,
        "printed_name": user.printed_name,
        "roles": sorted(user.roles),
        "active": user.active,
        "must_change_password": user.must_change_password,
        "locked": user.locked_until is not None,
    }
