"""Where each dose stands on the ward: its stage, its due time, whether it is overdue, how long
it has waited, the minutes of infusion left, the holds by rule.

One reading, used by the ward board, the pharmacy queue and their JSON twins (through
``Bedside.ward_board`` / ``Bedside.pharmacy_queue``), so every screen says the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

from workflow.core.machine import Case

# Stages a dose passes through on the ward, in order, with the words the board shows. The
# stages follow the protocol's phases (step.phase), never step ids.
STAGES: dict[str, str] = {
    "ordered": "Ordered",
    "pharmacy": "In pharmacy",
    "ready": "Ready for the bedside",
    "bedside": "At the bedside",
    "infusing": "Infusing",
    "after": "After the infusion",
    "held": "Held",
    "ended": "Ended today",
}
PHARMACY_PHASES = ("compounding",)
BEDSIDE_PHASES = ("bedside", "infusion")
# Times are shown to the minute; a dose is overdue once the minute it is due in has passed, so
# a dose opened now for now is "due now", never "overdue" (bedside-ux.md 5: past the schedule,
# not "opened").
_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Standing:
    """Where one dose stands now."""

    stage: str
    stage_title: str
    due_at: datetime
    overdue: bool
    waiting_since: datetime  # its last signed event: how long it has waited at this step
    minutes_left: int | None  # infusing: planned minutes still to run (0 when past them)
    holds: tuple[str, ...]  # the rules holding it, in words


def is_overdue(case: Case, due_at: datetime, now: datetime) -> bool:
    """Past its scheduled minute and not yet given (an ended dose is never overdue)."""
    if case.closed or case.given:
        return False
    return now >= due_at.replace(second=0, microsecond=0) + _MINUTE


def stage_of(case: Case) -> str:
    if case.closed:
        return "ended"
    if case.on_hold:
        return "held"
    if case.given:
        return "after" if case.stopped_at is not None else "infusing"
    step = case.next_step()
    if step is None:
        return "after"
    if step.phase in PHARMACY_PHASES:
        return "pharmacy"
    if step.phase in BEDSIDE_PHASES:
        started = any(case.protocol.step(e.step).phase in BEDSIDE_PHASES for e in case.history)
        return "bedside" if started else "ready"
    return "ordered"


def standing(case: Case, due_at: datetime, now: datetime) -> Standing:
    stage = stage_of(case)
    title = STAGES[stage]
    if stage == "ended" and case.state in case.protocol.final_states:
        title = f"{case.state.replace('_', ' ').capitalize()} today"
    left: int | None = None
    if stage == "infusing" and case.given_at is not None:
        planned = timedelta(minutes=float(case.protocol.dosing.infusion_duration.value))
        remaining = case.given_at + planned - now
        left = max(0, int(-(-remaining.total_seconds() // 60)))  # whole minutes, rounded up
    return Standing(
        stage=stage,
        stage_title=title,
        due_at=due_at,
        overdue=is_overdue(case, due_at, now),
        waiting_since=case.events[-1].at if case.events else due_at,
        minutes_left=left,
        holds=tuple(f.text for f in case.active_holds),
    )


def start_of_day(now: datetime, tz: tzinfo) -> datetime:
    """Midnight of the site's day ``now`` falls in (what "today" means on the board)."""
    local = now.astimezone(tz)
    return datetime.combine(local.date(), time(0, 0), tzinfo=tz)
