"""What a course's cases add up to: doses given, holds still in force, discontinuation.

Derived from replayed cases only, so it is as trustworthy as the event log.
"""

from __future__ import annotations

from collections.abc import Sequence

from workflow.core.machine import Case
from workflow.core.protocol.model import CourseRule
from workflow.core.schedule import CourseStatus, GivenDose


def was_held(case: Case) -> bool:
    """A held dose: a rule withheld it and it was never given (a held dose is not made up)."""
    return case.given_at is None and any(h.get("kind") == "held" for h in case.hold_log)


def course_rule_firing(rules: Sequence[CourseRule], cases: Sequence[Case]) -> str | None:
    """Why a course rule (institution overlay) ends the course, or None.

    Counts closed cases only: a dose still open may yet be given.
    """
    held = sum(1 for c in cases if c.closed and was_held(c))
    for rule in rules:
        if held >= rule.held_doses_at_least:
            mark = "" if rule.confirmed else " [UNCONFIRMED]"
            return (
                f"course rule {rule.id}: {rule.text} ({held} held doses) "
                f"[source: {rule.source}]{mark}"
            )
    return None


def course_status(cases: Sequence[Case], rules: Sequence[CourseRule] = ()) -> CourseStatus:
    """``cases`` in the order they were opened; ``rules`` are the protocol's course rules."""
    given: list[GivenDose] = []
    discontinued: str | None = None
    active: str | None = None
    for case in cases:
        started = case.given_at
        if started is not None:
            given.append(GivenDose(case.cycle, started))
        if case.state == "discontinued":
            note = (case.end or {}).get("note") or (case.end or {}).get("reason") or ""
            discontinued = f"case {case.case_id}: {note}"
        elif not case.closed:
            active = case.case_id
    if discontinued is None:
        discontinued = course_rule_firing(rules, cases)
    return CourseStatus(tuple(given), discontinued, active)


def carried_holds(cases: Sequence[Case]) -> list[str]:
    """Rules whose resume criterion the next dose must meet.

    A hold outlives the case it fired in: a dose held for a positive FOBT and then skipped
    leaves the next dose held until a negative result is entered.
    """
    if not cases:
        return []
    last = cases[-1]
    return sorted({*last.awaiting_resume, *(f.rule_id for f in last.active_holds)})
