"""The evidence a verifier reads on the page they sign (issue 12.8): for the order's
verification the order itself, the weight and how old it is, the plan and the eligibility
tests with their dates; for a release the plan beside what the preparation steps measured.

Plain data for templates/web/_evidence.html. What the viewer may not see is decided by
``workflow.core.blinding`` (passed in), never here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from workflow.core.blinding import Blinding
from workflow.core.dosing import fmt
from workflow.core.evidence import measured_against_plan
from workflow.core.items import display
from workflow.core.machine import Case
from workflow.core.protocol.model import Step

from .present import entry_json, local


def age_text(then: datetime, now: datetime) -> str:
    """How long ago, in the largest unit that reads well ("3 h 5 min ago", "12 days ago")."""
    gone = max(timedelta(0), now - then)
    if gone >= timedelta(days=2):
        return f"{gone.days} days ago"
    hours, rest = divmod(int(gone.total_seconds()) // 60, 60)
    return f"{hours} h {rest} min ago" if hours else f"{rest} min ago"


def _eligibility(
    case: Case, earlier: Sequence[Case], tz: tzinfo, now: datetime, blinding: Blinding
) -> list[dict[str, Any]]:
    """Each baseline test of the protocol, from this dose's eligibility entry or else the
    course's latest earlier one; a test not yet on file says so."""
    elig = case.protocol.eligibility
    step = case.protocol.step(elig.step)
    sources = [case, *sorted(earlier, key=lambda c: c.events[0].at, reverse=True)]
    entry, where = None, ""
    for n, source in enumerate(sources):
        found = source.current.get(elig.step)
        if found is not None and not (n == 0 and blinding.hides_entry(elig.step)):
            entry = found
            where = "this dose" if n == 0 else f"cycle {source.cycle} dose {source.dose_in_cycle}"
            break
    max_days = float(elig.max_age.value)
    out = []
    for test in elig.tests:
        result_item, date_item = step.item(test.result_item), step.item(test.date_item)
        if entry is None or result_item is None or date_item is None:
            out.append({"title": test.title, "on_file": False})
            continue
        when = entry.values.get(test.date_item)
        days = (now.astimezone(tz).date() - when).days if isinstance(when, date) else None
        out.append(
            {
                "title": test.title,
                "on_file": True,
                "result": display(result_item, entry.values.get(test.result_item), tz),
                "date": display(date_item, when, tz),
                "age": f"{days} days ago" if days is not None else "",
                "old": days is not None and days > max_days,
                "where": where,
                "signed": f"{entry.signer.name}, {local(entry.at, tz)}",
            }
        )
    return out


def evidence_json(
    case: Case,
    step: Step,
    viewer_id: str,
    tz: tzinfo,
    now: datetime,
    blinding: Blinding,
    earlier: Sequence[Case] = (),
) -> dict[str, Any]:
    """What the page being signed shows above its form, for ``step``."""
    protocol = case.protocol
    out: dict[str, Any] = {
        # Separation of duties, said before the form is filled, not after the signature.
        "conflicts": [s.title for s in case.duty_conflicts(step, viewer_id)],
        "step_title": step.title,
    }
    order = case.current.get(protocol.initial)
    if protocol.initial in step.verifies and order is not None and not blinding.plan:
        measured_at = order.values.get("weight_measured_at")
        out["order"] = entry_json(case, order, tz, blinding)
        plan = case.plan
        out["weight"] = {
            "kg": f"{fmt(plan.weight_kg)} kg" if plan else "",
            "measured_local": local(measured_at, tz) if isinstance(measured_at, datetime) else "",
            "age": age_text(measured_at, now) if isinstance(measured_at, datetime) else "",
            "max_age_h": f"{protocol.dosing.weight_max_age.value:g}",
            "stale": bool(plan and any(w.code == "weight_stale" for w in plan.warnings)),
        }
        out["eligibility"] = _eligibility(case, earlier, tz, now, blinding)
        out["eligibility_max_days"] = f"{protocol.eligibility.max_age.value:g}"
        out["eligibility_confirmed"] = protocol.eligibility.max_age.confirmed
    measured = measured_against_plan(case, step, blinding, tz)
    if measured:
        out["measured"] = [m.__dict__ for m in measured]
        out["differences"] = sum(1 for m in measured if m.differs)
    return out
