"""Finding cases: one by id, a course's or patient's cases, and the worklist by state and time."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Connection, bindparam, or_, select

from workflow.core.errors import InputError, NotFound

from . import _schema as s
from ._rows import case_from_row
from .models import CaseRecord

MAX_PAGE = 500


# Built once: SQLAlchemy builds and keys a statement made per call again each time, about 0.15
# ms of CPU for a wide table, paid on every step request (bench/profile_step.py).
_CASE = select(s.cases).where(s.cases.c.id == bindparam("case_id"))
_DOSE_ORDER = (s.cases.c.scheduled_at, s.cases.c.dose_in_course, s.cases.c.id)
# A course's cases (the schedule's checks) and a patient's (every step's answer: the patient's
# other open doses, for blinding): the two filters used alone, built once as well.
_BY_COURSE = select(s.cases).where(s.cases.c.course_id == bindparam("key")).order_by(*_DOSE_ORDER)
_BY_PATIENT = select(s.cases).where(s.cases.c.patient_id == bindparam("key")).order_by(*_DOSE_ORDER)


def get_case(conn: Connection, case_id: str) -> CaseRecord:
    row = conn.execute(_CASE, {"case_id": case_id}).first()
    if row is None:
        raise NotFound(f"no case {case_id}")
    return case_from_row(row)


def list_cases(
    conn: Connection,
    *,
    course_id: str | None = None,
    patient_id: str | None = None,
    states: Collection[str] | None = None,
) -> list[CaseRecord]:
    """Cases matching every filter given, in dose order."""
    if states is None and (course_id is None) != (patient_id is None):
        built, key = (_BY_COURSE, course_id) if course_id is not None else (_BY_PATIENT, patient_id)
        return [case_from_row(r) for r in conn.execute(built, {"key": key})]
    query = select(s.cases)
    if course_id is not None:
        query = query.where(s.cases.c.course_id == course_id)
    if patient_id is not None:
        query = query.where(s.cases.c.patient_id == patient_id)
    if states is not None:
        query = query.where(s.cases.c.state.in_(list(states)))
    query = query.order_by(*_DOSE_ORDER)
    return [case_from_row(r) for r in conn.execute(query)]


def worklist(
    conn: Connection, states: Collection[str], *, limit: int = 50, offset: int = 0
) -> list[CaseRecord]:
    """Cases in any of ``states``, soonest scheduled first; one page of at most ``limit``."""
    if not 1 <= limit <= MAX_PAGE:
        raise InputError("limit", f"must be between 1 and {MAX_PAGE}")
    if offset < 0:
        raise InputError("offset", "must be 0 or more")
    rows = conn.execute(
        select(s.cases)
        .where(s.cases.c.state.in_(list(states)))
        .order_by(s.cases.c.scheduled_at, s.cases.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [case_from_row(r) for r in rows]


def board(
    conn: Connection, final_states: Collection[str], ended_since: datetime, *, limit: int
) -> list[CaseRecord]:
    """A ward's board: every case not yet ended, and those ended since ``ended_since`` (the
    start of the site's day), soonest scheduled first; at most ``limit``."""
    if not 1 <= limit <= MAX_PAGE:
        raise InputError("limit", f"must be between 1 and {MAX_PAGE}")
    c = s.cases.c
    rows = conn.execute(
        select(s.cases)
        .where(or_(c.state.not_in(list(final_states)), c.updated_at >= ended_since))
        .order_by(c.scheduled_at, c.id)
        .limit(limit)
    )
    return [case_from_row(r) for r in rows]
