"""Which dose comes next in a course, and when it may be given.

The label's schedule: 600,000 IU/kg every 8 hours, at most 14 doses in a cycle (its days 1-5),
a rest (days 6-14), a second cycle, at most 28 doses in a course. Held or missed doses are never
made up: a cycle does not stretch past its days, and nothing is ever doubled. Calendar days are
counted in the site's time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from workflow.core.errors import StepRefused
from workflow.core.protocol.model import Protocol


@dataclass(frozen=True)
class GivenDose:
    """A dose whose infusion started (it counts, whatever happened after)."""

    cycle: int
    given_at: datetime


@dataclass(frozen=True)
class CourseStatus:
    given: tuple[GivenDose, ...]
    discontinued: str | None = None  # why the course was permanently discontinued
    active_case: str | None = None  # a dose already in progress


@dataclass(frozen=True)
class NextDose:
    cycle: int
    dose_in_cycle: int
    dose_in_course: int
    earliest_at: datetime
    last_given_at: datetime | None
    cycle_day: int

    def to_json(self) -> dict[str, object]:
        return {
            "cycle": self.cycle,
            "dose_in_cycle": self.dose_in_cycle,
            "dose_in_course": self.dose_in_course,
            "earliest_at": self.earliest_at.isoformat(),
            "last_given_at": self.last_given_at.isoformat() if self.last_given_at else None,
            "cycle_day": self.cycle_day,
        }


def _local_day(dt: datetime, tz: tzinfo) -> date:
    return dt.astimezone(tz).date()


def _start_of(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=tz).astimezone(UTC)


def next_dose(protocol: Protocol, status: CourseStatus, at: datetime, tz: tzinfo = UTC) -> NextDose:
    """The dose a case opened at ``at`` would be, or StepRefused saying why none may be."""
    s = protocol.schedule
    per_cycle = int(s.max_doses_per_cycle.value)
    cycle_days = int(s.cycle_days.value)
    given = _refuse_closed_course(protocol, status)
    if not given:
        return NextDose(1, 1, 1, at, None, 1)
    last = given[-1]
    earliest = last.given_at + timedelta(hours=float(s.min_interval.value))
    cycle = last.cycle
    in_cycle = [g for g in given if g.cycle == cycle]
    cycle_start_day = _local_day(in_cycle[0].given_at, tz)
    day = (_local_day(at, tz) - cycle_start_day).days + 1
    cycle_over = len(in_cycle) >= per_cycle or day > cycle_days
    if not cycle_over:
        if at < earliest:
            hours = (at - last.given_at).total_seconds() / 3600
            raise StepRefused(
                "too_soon",
                f"The last dose was given {hours:.1f} h ago; doses are "
                f"at least {s.min_interval.value} h apart (next from "
                f"{earliest.strftime('%Y-%m-%d %H:%M')} UTC)",
            )
        return NextDose(cycle, len(in_cycle) + 1, len(given) + 1, earliest, last.given_at, day)
    rest_end = _next_cycle_start(protocol, cycle, in_cycle, at, tz)
    return NextDose(cycle + 1, 1, len(given) + 1, max(rest_end, earliest), last.given_at, 1)


def _refuse_closed_course(protocol: Protocol, status: CourseStatus) -> list[GivenDose]:
    """The doses given, oldest first; StepRefused when the course may take no other dose."""
    per_course = int(protocol.schedule.max_doses_per_course.value)
    if status.discontinued:
        raise StepRefused(
            "course_discontinued",
            "This course was permanently discontinued: "
            f"{status.discontinued}. No further dose may be given.",
        )
    if status.active_case:
        raise StepRefused(
            "dose_in_progress",
            f"Dose case {status.active_case} is still open for "
            "this course; finish, cancel or waste it first (doses are never "
            "doubled)",
        )
    given = sorted(status.given, key=lambda g: g.given_at)
    if len(given) >= per_course:
        raise StepRefused(
            "course_limit", f"{len(given)} doses given: the course maximum is {per_course}"
        )
    return given


def _next_cycle_start(
    protocol: Protocol, cycle: int, in_cycle: list[GivenDose], at: datetime, tz: tzinfo
) -> datetime:
    """When the cycle after ``cycle`` may start (after the rest); StepRefused if not at ``at``."""
    s = protocol.schedule
    per_cycle = int(s.max_doses_per_cycle.value)
    max_cycles = int(s.max_cycles_per_course.value)
    cycle_days = int(s.cycle_days.value)
    rest_days = int(s.rest_days.value)
    if cycle >= max_cycles:
        raise StepRefused(
            "course_limit", f"Cycle {cycle} is over and a course has at most {max_cycles} cycles"
        )
    rest_end = _start_of(_local_day(in_cycle[-1].given_at, tz) + timedelta(days=rest_days + 1), tz)
    if at < rest_end:
        reason = (
            f"{len(in_cycle)} doses given"
            if len(in_cycle) >= per_cycle
            else f"day {cycle_days} of the cycle has passed"
        )
        raise StepRefused(
            "rest_period",
            f"Cycle {cycle} is over ({reason}); cycle {cycle + 1} "
            f"may not start before the {rest_days}-day rest ends at "
            f"{rest_end.strftime('%Y-%m-%d %H:%M')} UTC",
        )
    return rest_end


def earliest_time(protocol: Protocol, status: CourseStatus, tz: tzinfo = UTC) -> datetime | None:
    """When the course's next dose may first be given (None: no dose given yet, any time).

    Does not judge discontinuation or limits; ``next_dose`` at that time does.
    """
    given = sorted(status.given, key=lambda g: g.given_at)
    if not given:
        return None
    s = protocol.schedule
    last = given[-1]
    candidate = last.given_at + timedelta(hours=float(s.min_interval.value))
    in_cycle = [g for g in given if g.cycle == last.cycle]
    start_day = _local_day(in_cycle[0].given_at, tz)
    day = (_local_day(candidate, tz) - start_day).days + 1
    if len(in_cycle) < int(s.max_doses_per_cycle.value) and day <= int(s.cycle_days.value):
        return candidate
    rest_end = _start_of(
        _local_day(last.given_at, tz) + timedelta(days=int(s.rest_days.value) + 1), tz
    )
    return max(rest_end, candidate)


def check_interval(protocol: Protocol, last_given_at: datetime | None, at: datetime) -> None:
    """q8h at the moment an infusion starts, not only when the case was opened."""
    if last_given_at is None:
        return
    interval = timedelta(hours=float(protocol.schedule.min_interval.value))
    if at < last_given_at + interval:
        hours = (at - last_given_at).total_seconds() / 3600
        raise StepRefused(
            "too_soon",
            f"The previous dose started {hours:.1f} h ago; doses are at "
            f"least {protocol.schedule.min_interval.value} h apart",
        )


def count_by_cycle(given: Sequence[GivenDose]) -> dict[int, int]:
    out: dict[int, int] = {}
    for g in given:
        out[g.cycle] = out.get(g.cycle, 0) + 1
    return out
