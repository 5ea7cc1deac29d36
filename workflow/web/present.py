"""What pages and the API show of a case: plain data read off the replayed Case.

Shared by the templates and the JSON API so both show the same thing. Blinding is applied here:
a person at one side of an independent double check never gets the other side's entries.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from workflow.events import format_time
from workflow.items import display
from workflow.machine import Case, Entry
from workflow.protocol.model import Step
from workflow.service import CaseView
from workflow.store import CaseRecord


def local(dt: datetime | None, tz: tzinfo) -> str:
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if dt else ""


def blinded_steps(case: Case, step_id: str | None) -> set[str]:
    """Steps whose entries must not be shown while ``step_id`` is being signed: both sides of
    an independent double check (each works from the label and the wristband alone)."""
    if step_id is None:
        return set()
    protocol = case.protocol
    step = protocol.step(step_id)
    hidden: set[str] = set()
    for s in protocol.steps:
        if s.blinded_against and step_id in (s.id, s.blinded_against):
            hidden |= {s.id, s.blinded_against}
    if step.blinded_against:
        hidden.add(step.blinded_against)
    return hidden


def entry_json(case: Case, entry: Entry, tz: tzinfo) -> dict[str, Any]:
    step = case.protocol.step(entry.step)
    shown = []
    for item in step.items:
        if item.id in entry.values:
            shown.append(
                {"id": item.id, "label": item.label, "value": display(item, entry.values[item.id])}
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
        "meaning": entry.meaning,
        "at": format_time(entry.at),
        "at_local": local(entry.at, tz),
        "corrects": entry.corrects,
        "superseded_by": entry.superseded_by,
        "values": shown,
    }


def step_json(case: Case, step: Step) -> dict[str, Any]:
    n, m = case.step_number(step.id)
    return {
        "id": step.id,
        "title": step.title,
        "phase": step.phase,
        "roles": list(step.roles),
        "meaning": step.meaning,
        "number": n,
        "of": m,
        "instructions": list(step.instructions),
        "blinded": bool(step.blinded_against),
    }


def is_overdue(record: CaseRecord, case: Case | None, now: datetime) -> bool:
    closed = case.closed if case is not None else False
    given = case.given if case is not None else False
    return not closed and not given and record.scheduled_at < now


def case_json(
    view: CaseView, tz: tzinfo, now: datetime, for_step: str | None = None
) -> dict[str, Any]:
    """Everything a screen shows of a case; entries of blinded steps are left out."""
    case = view.case
    hidden = blinded_steps(case, for_step)
    plan = case.plan
    patient = case.patient
    per_cycle = int(case.protocol.schedule.max_doses_per_cycle.value)
    nxt = case.next_step()
    return {
        "id": case.case_id,
        "version": view.version,
        "state": case.state,
        "patient": {
            "name": patient.name if patient else "",
            "mrn": patient.mrn if patient else "",
            "date_of_birth": patient.date_of_birth.isoformat() if patient else "",
        },
        "course_id": case.course_id,
        "cycle": case.cycle,
        "dose_in_cycle": case.dose_in_cycle,
        "doses_per_cycle": per_cycle,
        "dose_in_course": case.dose_in_course,
        "scheduled_at": format_time(view.record.scheduled_at),
        "scheduled_local": local(view.record.scheduled_at, tz),
        "overdue": is_overdue(view.record, case, now),
        "on_hold": case.on_hold,
        "closed": case.closed,
        "next_step": step_json(case, nxt) if nxt else None,
        "allowed_steps": list(case.allowed_steps()),
        # The plan is hidden from a blinded double check: the checkers read the bag's label.
        "plan": plan.to_json() if plan and not hidden else None,
        "beyond_use_at": format_time(case.beyond_use_at) if case.beyond_use_at else None,
        "beyond_use_local": local(case.beyond_use_at, tz),
        "holds": [
            {
                "rule_id": f.rule_id,
                "action": f.action,
                "text": f.text,
                "source": f.source,
                "confirmed": f.confirmed,
                "reason": f.reason,
                "values": {k: str(v) for k, v in f.values.items()},
                "description": f.describe(),
            }
            for f in case.active_holds
        ],
        "differences": list(case.differences) if not hidden else [],
        "mismatch": bool(case.differences) and len(case.allowed_steps()) > 1,
        "flags": [f.to_json() for f in case.flags],
        "infusion_started_at": format_time(case.given_at) if case.given_at else None,
        "infusion_started_local": local(case.given_at, tz),
        "infusion_stopped_at": format_time(case.stopped_at) if case.stopped_at else None,
        "infusion_stopped_local": local(case.stopped_at, tz),
        "infusion_minutes": str(case.protocol.dosing.infusion_duration.value),
        "end": case.end,
        "entries": [
            entry_json(case, e, tz)
            for e in sorted(case.current.values(), key=lambda e: e.seq)
            if e.step not in hidden
        ],
    }


def worklist_row(view: CaseView, tz: tzinfo, now: datetime) -> dict[str, Any]:
    case = view.case
    nxt = case.next_step()
    patient = case.patient
    plan = case.plan
    return {
        "id": case.case_id,
        "version": view.version,
        "patient": patient.name if patient else "",
        "mrn": patient.mrn if patient else "",
        "cycle": case.cycle,
        "dose_in_cycle": case.dose_in_cycle,
        "doses_per_cycle": int(case.protocol.schedule.max_doses_per_cycle.value),
        "scheduled_at": format_time(view.record.scheduled_at),
        "scheduled_local": local(view.record.scheduled_at, tz),
        "overdue": is_overdue(view.record, case, now),
        "state": case.state,
        "on_hold": case.on_hold,
        "step": nxt.title if nxt else case.state.replace("_", " "),
        "phase": nxt.phase if nxt else "",
        "plan": plan.to_json() if plan else None,
    }
