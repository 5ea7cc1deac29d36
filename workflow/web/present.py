"""What pages and the API show of a case: plain data read off the replayed Case.

Shared by the templates and the JSON API so both show the same thing. What a viewer may not see
now is decided by ``workflow.core.blinding`` from who asks and the case's state; every function here
takes that decision and leaves out (``None`` or empty) whatever it hides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from workflow.core.blinding import Blinding, difference_labels
from workflow.core.errors import StepRefused
from workflow.core.events import format_time
from workflow.core.items import display
from workflow.core.machine import Case, Entry, Flag
from workflow.core.order_notice import refuse_if_discontinued
from workflow.core.photos import PhotoRef, photos_of
from workflow.core.protocol.model import Step
from workflow.core.titles import event_title, role_title
from workflow.service import BoardRow, CaseView, PendingOrderView
from workflow.service.board import is_overdue as past_schedule
from workflow.service.vocabulary import CaseRecord


def local(dt: datetime | None, tz: tzinfo) -> str:
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if dt else ""


def order_stopped(case: Case) -> str | None:
    """Why this dose must not be given, when its order was discontinued after the bag was
    made: the core's own refusal text, so the page says what a signature would be told."""
    try:
        refuse_if_discontinued(case)
    except StepRefused as exc:
        return exc.message
    return None


def pending_json(pending: PendingOrderView, tz: tzinfo) -> dict[str, Any]:
    """An order from the hospital waiting for the prescriber to start the patient's course:
    whose, who ordered it and when, the dose as ordered, when it is due."""
    o = pending.order
    return {
        "placer_order": o.placer_order,
        "patient_id": pending.patient.id,
        "patient": pending.patient.display_name,
        "mrn": pending.patient.mrn,
        "stat": o.priority == "stat",
        "priority": o.priority,
        "orderer": o.orderer,
        "channel": o.channel,
        "received_at": o.received_at.isoformat(),
        "received_local": local(o.received_at, tz),
        "due_at": pending.scheduled_at.isoformat(),
        "due_local": local(pending.scheduled_at, tz),
        "dose": pending.dose,
        "waiting_for": "the prescriber to start the course",
    }


def entry_json(case: Case, entry: Entry, tz: tzinfo, blinding: Blinding) -> dict[str, Any]:
    step = case.protocol.step(entry.step)
    shown = []
    withheld = 0
    for item in step.items:
        if item.id in entry.values and blinding.hides_value(step, item):
            withheld += 1
        elif item.id in entry.values:
            shown.append(
                {
                    "id": item.id,
                    "label": item.label,
                    "value": display(item, entry.values[item.id], tz),
                }
            )
    return {
        "seq": entry.seq,
        "step": entry.step,
        "title": step.title,
        "signer": entry.signer.name,
        # Printed names need not be unique over time (a leaver's name may be taken again):
        # the account id beside it says which person signed.
        "signer_id": entry.signer.user_id,
        "role": entry.signer.role,
        "role_title": role_title(case.protocol, entry.signer.role),
        "meaning": entry.meaning,
        "at": format_time(entry.at),
        "at_local": local(entry.at, tz),
        "corrects": entry.corrects,
        "superseded_by": entry.superseded_by,
        "values": shown,
        "withheld": withheld,  # values not shown during an independent check
    }


def photo_json(case: Case, step_id: str, ref: PhotoRef) -> dict[str, Any]:
    """One photo of a signed entry: its label, hash, where to fetch it and the barcode read."""
    labels = {p.id: p.label for p in case.protocol.step(step_id).photos}
    return {
        "id": ref.id,
        "label": labels.get(ref.id, ref.id),
        "sha256": ref.sha256,
        "url": f"/cases/{case.case_id}/photos/{ref.sha256}",
        "barcode": ref.barcode,
        "barcode_agrees": ref.barcode_agrees,
        "barcode_note": ref.barcode_note,
    }


def entry_photos(case: Case, entry: Entry, blinding: Blinding) -> list[dict[str, Any]]:
    """The photos signed with ``entry``; none for a viewer who may sign an independent check
    of the case now (a label in a photo shows what the check asks for)."""
    if blinding:
        return []
    event = next((e for e in case.events if e.seq == entry.seq), None)
    return [photo_json(case, entry.step, ref) for ref in photos_of(event.data if event else {})]


def findings(case: Case, values: Mapping[str, Any], tz: tzinfo) -> list[dict[str, str]]:
    """A rule's values as the nurse entered them, in words: the item's label and the value
    with its unit or option label ("Oxygen saturation (SpO2): 88 %"), not the item ids."""
    judged = [s for s in case.protocol.steps if s.evaluates_rules]
    out = []
    for item_id, value in values.items():
        item = next((it for s in judged if (it := s.item(item_id)) is not None), None)
        if item is None:
            out.append({"label": item_id, "value": str(value)})
            continue
        text = display(item, value, tz)
        if item.unit and item.type in ("number", "integer") and not isinstance(value, Decimal):
            text = f"{text} {item.unit}"  # a replayed value is text: display adds no unit
        out.append({"label": item.label, "value": text})
    return out


def step_json(case: Case, step: Step) -> dict[str, Any]:
    n, m = case.step_number(step.id)
    return {
        "id": step.id,
        "title": step.title,
        "phase": step.phase,
        "roles": list(step.roles),
        "role_titles": [role_title(case.protocol, r) for r in step.roles],
        "meaning": step.meaning,
        "number": n,
        "of": m,
        "instructions": list(step.instructions),
        "blinded": bool(step.blinded_against),
    }


def is_overdue(record: CaseRecord, case: Case, now: datetime) -> bool:
    """Past its scheduled minute and not given (``service.board`` decides, for every screen)."""
    return past_schedule(case, record.scheduled_at, now)


def flag_json(case: Case, flag: Flag, blinding: Blinding) -> dict[str, Any]:
    """A warning; one raised by a step whose values are withheld (the order's plan warnings
    name the weight and the concentration) keeps its code and loses its numbers."""
    source = next((e for e in case.history if e.seq == flag.seq), None)
    if source is not None and (
        blinding.hides_entry(source.step) or source.step in blinding.withheld_steps
    ):
        title = case.protocol.step(source.step).title
        return {
            "code": flag.code,
            "message": f"A warning ({flag.code}) was recorded at '{title}'; its values are "
            "not shown during an independent check.",
            "seq": flag.seq,
        }
    return flag.to_json()


def _identifier(blinding: Blinding, ref: str, value: Any) -> Any:
    return None if blinding.hides(ref) else value


def case_json(view: CaseView, tz: tzinfo, now: datetime, blinding: Blinding) -> dict[str, Any]:
    """Everything a screen shows of a case, less what ``blinding`` hides from this viewer."""
    case = view.case
    b = blinding
    plan = case.plan if not b.plan else None
    patient = case.patient
    per_cycle = int(case.protocol.schedule.max_doses_per_cycle.value)
    nxt = case.next_step()
    beyond_use = case.beyond_use_at if not b.hides("case.beyond_use_at") else None
    mismatch = bool(case.differences) and len(case.allowed_steps()) > 1
    return {
        "id": case.case_id,
        "version": view.version,
        "state": case.state,
        "patient": {
            "name": (patient.name if patient else "") if not b.hides("patient.name") else "",
            "mrn": (patient.mrn if patient else "") if not b.hides("patient.mrn") else "",
            "date_of_birth": (patient.date_of_birth.isoformat() if patient else "")
            if not b.hides("patient.date_of_birth")
            else "",
        },
        "course_id": case.course_id,
        "cycle": _identifier(b, "case.cycle", case.cycle),
        "dose_in_cycle": _identifier(b, "case.dose_in_cycle", case.dose_in_cycle),
        "doses_per_cycle": per_cycle,
        "dose_in_course": _identifier(b, "case.dose_in_course", case.dose_in_course),
        "scheduled_at": format_time(view.record.scheduled_at),
        "scheduled_local": local(view.record.scheduled_at, tz),
        "overdue": is_overdue(view.record, case, now),
        "on_hold": case.on_hold,
        "closed": case.closed,
        "next_step": step_json(case, nxt) if nxt else None,
        "allowed_steps": list(case.allowed_steps()),
        "blinded_steps": list(b.at_steps),
        "hidden": b.hidden(),
        "plan": plan.to_json() if plan else None,
        # The same numbers in words (rounded as the CLI and the record show them): pages
        # print these, never the 4-decimal JSON numbers above.
        "plan_words": plan.words() if plan else None,
        "beyond_use_at": format_time(beyond_use) if beyond_use else None,
        "beyond_use_local": local(beyond_use, tz),
        "holds": [
            {
                "rule_id": f.rule_id,
                "action": f.action,
                "text": f.text,
                "source": f.source,
                "confirmed": f.confirmed,
                "reason": f.reason,
                "values": {k: str(v) for k, v in f.values.items()},
                "findings": findings(case, f.values, tz),
                "description": f.describe(),
            }
            for f in case.active_holds
        ],
        # Which items differ, by label, for everyone; the values (both checkers' and the
        # expected) only for those who will not re-enter them.
        "differences": difference_labels(case) if case.differences else [],
        "difference_items": list(case.difference_items),
        "difference_details": list(case.differences) if not b.differences else [],
        "mismatch": mismatch,
        # The hospital discontinued the order after the bag was made (core/order_notice.py).
        "order_stopped": order_stopped(case),
        "flags": [flag_json(case, f, b) for f in case.flags],
        "infusion_started_at": format_time(case.given_at) if case.given_at else None,
        "infusion_started_local": local(case.given_at, tz),
        "infusion_stopped_at": format_time(case.stopped_at) if case.stopped_at else None,
        "infusion_stopped_local": local(case.stopped_at, tz),
        "infusion_minutes": str(case.protocol.dosing.infusion_duration.value) if not b.plan else "",
        "timer": timer_json(case, tz, now, b),
        "end": case.end,
        "entries": [
            {**entry_json(case, e, tz, b), "photos": entry_photos(case, e, b)}
            for e in sorted(case.current.values(), key=lambda e: e.seq)
            if not b.hides_entry(e.step)
        ],
    }


def signed_flash(case: Case, seq: int | None, tz: tzinfo, blinding: Blinding) -> str | None:
    """The confirmation after a signature ("Signed: Order verification by Ann Pharm at 14:05"),
    read off the case's own event ``seq`` (a link cannot make it say anything else). None when
    there is no such signed event or the viewer may not see that step's entry now."""
    event = next((e for e in case.events if e.seq == seq), None) if seq is not None else None
    if event is None or event.actor is None or event.meaning is None:
        return None
    if event.step is not None and blinding.hides_entry(event.step):
        return None
    at = event.at.astimezone(tz).strftime("%H:%M")
    # A sitting's steps were signed by this one signature: name them all.
    together = [
        e
        for e in case.events
        if event.data.get("sitting")
        and e.data.get("sitting") == event.data["sitting"]
        and e.at == event.at
        and e.seq <= event.seq
    ] or [event]
    titles = " and ".join(event_title(case.protocol, e) for e in together)
    return f"Signed: {titles} by {event.actor.name} at {at}"


def timer_json(case: Case, tz: tzinfo, now: datetime, blinding: Blinding) -> dict[str, Any] | None:
    """The infusion timer every page of a running (or stopped) infusion shows: start, planned
    end, stop and the minutes left, on the server's clock. None before the start, and while the
    viewer may not see the plan (its infusion time is what an independent check asks for).
    ``deviation`` says why stopping now would be early or late (the case's own rule): the page
    tells the nurse a reason is then required before they fill the form."""
    started = case.given_at
    if started is None or blinding.plan:
        return None
    planned = float(case.protocol.dosing.infusion_duration.value)
    ends = started + timedelta(minutes=planned)
    stopped = case.stopped_at
    left = max(0.0, (ends - now).total_seconds() / 60) if stopped is None else 0.0
    return {
        "started_at": format_time(started),
        "started_local": local(started, tz),
        "ends_at": format_time(ends),
        "ends_local": local(ends, tz),
        "stopped_local": local(stopped, tz),
        "running": stopped is None,
        "planned_minutes": f"{planned:g}",
        # Whole minutes, rounded up: "1 min left" until the last second has gone.
        "minutes_left": math.ceil(left),
        "ended": stopped is None and now >= ends,
        "deviation": case.duration_deviation(now) if stopped is None else None,
        "now": format_time(now),
    }


def worklist_row(view: CaseView, tz: tzinfo, now: datetime, blinding: Blinding) -> dict[str, Any]:
    """One line of a worklist or board, less what ``blinding`` hides from this viewer."""
    case = view.case
    b = blinding
    nxt = case.next_step()
    patient = case.patient
    plan = case.plan if not b.plan else None
    return {
        "id": case.case_id,
        "version": view.version,
        "patient": (patient.name if patient else "") if not b.hides("patient.name") else "",
        "mrn": (patient.mrn if patient else "") if not b.hides("patient.mrn") else "",
        "cycle": _identifier(b, "case.cycle", case.cycle),
        "dose_in_cycle": _identifier(b, "case.dose_in_cycle", case.dose_in_cycle),
        "doses_per_cycle": int(case.protocol.schedule.max_doses_per_cycle.value),
        "scheduled_at": format_time(view.record.scheduled_at),
        "scheduled_local": local(view.record.scheduled_at, tz),
        "overdue": is_overdue(view.record, case, now),
        "state": case.state,
        "on_hold": case.on_hold,
        "step": nxt.title if nxt else case.state.replace("_", " "),
        "phase": nxt.phase if nxt else "",
        "plan": plan.to_json() if plan else None,
        # The same numbers in words (rounded as the CLI and the record show them): pages
        # print these, never the 4-decimal JSON numbers above.
        "plan_words": plan.words() if plan else None,
        "blinded": bool(b),
    }


def zone_name(tz: tzinfo, now: datetime) -> str:
    """The site's zone as pages name it beside times (``Europe/Oslo``, ``UTC``)."""
    return str(getattr(tz, "key", None) or now.astimezone(tz).tzname() or "UTC")


def board_row(row: BoardRow, tz: tzinfo, now: datetime, blinding: Blinding) -> dict[str, Any]:
    """A worklist line plus where the dose stands: its stage, due time, overdue, how long it
    has waited at this step, the infusion's minutes left, the holds by rule."""
    out = worklist_row(row.view, tz, now, blinding)
    st = row.standing
    waited = max(0, int((now - st.waiting_since).total_seconds() // 60))
    out.update(
        stage=st.stage,
        stage_title=st.stage_title,
        due_local=local(st.due_at, tz),
        due_time=st.due_at.astimezone(tz).strftime("%H:%M"),
        overdue=st.overdue,
        waiting_since=format_time(st.waiting_since),
        waiting_minutes=waited,
        waiting=_duration(waited),
        minutes_left=st.minutes_left,
        holds=list(st.holds),
        stat=row.priority == "stat",
        # The hospital stopped the order after the bag was made: waste it, never give it.
        order_stopped=row.view.case.order_stop is not None and not row.view.case.closed,
    )
    return out


def _duration(minutes: int) -> str:
    hours, mins = divmod(minutes, 60)
    return f"{hours} h {mins:02d} min" if hours else f"{mins} min"
