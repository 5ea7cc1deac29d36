"""Patients and their treatment courses: registration, look-up, and the checks on what is typed.

An MRN identifies one patient; registering it twice is refused (field ``mrn``) and changes
nothing. Names and dates of birth are validated here so every edge (CLI, web) says the same;
a name mixing look-alike scripts needs the registrar's confirmation (workflow/core/names.py).
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from workflow.core.errors import ConflictError, InputError, NotFound
from workflow.core.events import canonical_json
from workflow.core.names import check_name_parts

from . import _schema as s
from .models import COURSE_ACTIVE, COURSE_STATUSES, Course, Patient

MRN_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9./-]{0,63}")
NAME_MAX = 100
EARLIEST_BIRTH = date(1900, 1, 1)
_SHA256 = re.compile(r"[0-9a-f]{64}")


def new_id() -> str:
    """A fresh identifier for a patient, course, case or user (uuid4, 32 hex digits)."""
    return uuid.uuid4().hex


def clean_mrn(mrn: str) -> str:
    value = (mrn or "").strip()
    if not value:
        raise InputError("mrn", "is required")
    if not MRN_PATTERN.fullmatch(value):
        raise InputError(
            "mrn",
            f"{value!r} is not a medical record number",
            "1-64 letters, digits, '.', '/', '-'; starting with a letter or digit",
        )
    return value


def clean_name(field: str, value: str) -> str:
    text = " ".join((value or "").split())
    if not text:
        raise InputError(field, "is required")
    if len(text) > NAME_MAX:
        raise InputError(field, f"is longer than {NAME_MAX} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise InputError(field, "contains control characters")
    if not any(ch.isalpha() for ch in text):
        raise InputError(field, "must contain letters")
    return text


def clean_birth_date(value: date | str, today: date) -> date:
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError:
            raise InputError("date_of_birth", f"{value!r} is not a date", "YYYY-MM-DD") from None
    if isinstance(value, datetime):
        raise InputError("date_of_birth", "give a date, not a date and time")
    if value > today:
        raise InputError("date_of_birth", f"{value.isoformat()} is in the future")
    if value < EARLIEST_BIRTH:
        raise InputError(
            "date_of_birth", f"{value.isoformat()} is before {EARLIEST_BIRTH.isoformat()}"
        )
    return value


def add_patient(
    conn: Connection,
    *,
    mrn: str,
    family_name: str,
    given_name: str,
    date_of_birth: date | str,
    created_by: str,
    now: datetime,
    confirm_mixed_script: bool = False,
) -> Patient:
    family, given = clean_name("family_name", family_name), clean_name("given_name", given_name)
    check_name_parts({"family_name": family, "given_name": given}, confirmed=confirm_mixed_script)
    patient = Patient(
        id=new_id(),
        mrn=clean_mrn(mrn),
        family_name=family,
        given_name=given,
        date_of_birth=clean_birth_date(date_of_birth, now.date()),
        created_at=now,
        created_by=created_by,
    )
    if _row_by_mrn(conn, patient.mrn) is not None:
        raise _duplicate(patient.mrn)
    try:
        conn.execute(insert(s.patients).values(**asdict(patient)))
    except DBIntegrityError:
        # Lost a race with another registration of the same MRN; the UNIQUE index decided.
        raise _duplicate(patient.mrn) from None
    return patient


def get_patient(conn: Connection, patient_id: str) -> Patient:
    row = conn.execute(select(s.patients).where(s.patients.c.id == patient_id)).first()
    if row is None:
        raise NotFound(f"no patient {patient_id}")
    return Patient(**row._mapping)


def find_patient_by_mrn(conn: Connection, mrn: str) -> Patient | None:
    row = _row_by_mrn(conn, mrn.strip())
    return None if row is None else Patient(**row._mapping)


def list_patients(conn: Connection, *, limit: int = 100, offset: int = 0) -> list[Patient]:
    rows = conn.execute(
        select(s.patients)
        .order_by(s.patients.c.family_name, s.patients.c.given_name, s.patients.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [Patient(**r._mapping) for r in rows]


def search_patients(conn: Connection, text: str, *, limit: int = 50) -> list[Patient]:
    """Patients whose MRN, family or given name contains ``text`` (any case), by name."""
    like = (
        "%"
        + text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        + "%"
    )
    c = s.patients.c
    rows = conn.execute(
        select(s.patients)
        .where(
            or_(
                func.lower(c.mrn).like(like, escape="\\"),
                func.lower(c.family_name).like(like, escape="\\"),
                func.lower(c.given_name).like(like, escape="\\"),
            )
        )
        .order_by(c.family_name, c.given_name, c.id)
        .limit(limit)
    )
    return [Patient(**r._mapping) for r in rows]


def start_course(
    conn: Connection,
    *,
    patient_id: str,
    protocol_id: str,
    protocol_version: str,
    protocol_hash: str,
    started_at: datetime,
    start_record: dict[str, Any] | None = None,
) -> Course:
    get_patient(conn, patient_id)
    if not _SHA256.fullmatch(protocol_hash):
        raise InputError("protocol_hash", "must be a SHA-256 hex digest")
    active = conn.execute(
        select(s.courses.c.id).where(
            s.courses.c.patient_id == patient_id, s.courses.c.status == COURSE_ACTIVE
        )
    ).first()
    if active is not None:
        # Two open courses of the same drug for one patient would let doses be counted twice.
        raise ConflictError(
            f"patient already has an active course ({active.id}); complete or discontinue it first"
        )
    course = Course(
        new_id(),
        patient_id,
        started_at,
        COURSE_ACTIVE,
        protocol_id,
        protocol_version,
        protocol_hash,
        start_record,
    )
    row = asdict(course)
    row["start_record"] = canonical_json(start_record).decode() if start_record else None
    conn.execute(insert(s.courses).values(**row))
    return course


def get_course(conn: Connection, course_id: str) -> Course:
    row = conn.execute(select(s.courses).where(s.courses.c.id == course_id)).first()
    if row is None:
        raise NotFound(f"no course {course_id}")
    return _course(row)


def _course(row: Row[Any]) -> Course:
    data = dict(row._mapping)
    text = data.pop("start_record", None)
    return Course(**data, start_record=json.loads(text) if text else None)


def list_courses(conn: Connection, patient_id: str) -> list[Course]:
    rows = conn.execute(
        select(s.courses)
        .where(s.courses.c.patient_id == patient_id)
        .order_by(s.courses.c.started_at, s.courses.c.id)
    )
    return [_course(r) for r in rows]


def set_course_status(conn: Connection, course_id: str, status: str) -> Course:
    if status not in COURSE_STATUSES:
        raise InputError(
            "status", f"unknown course status {status!r}", ", ".join(sorted(COURSE_STATUSES))
        )
    course = get_course(conn, course_id)
    if course.status != COURSE_ACTIVE:
        raise ConflictError(f"course {course_id} is already {course.status}")
    conn.execute(update(s.courses).where(s.courses.c.id == course_id).values(status=status))
    return get_course(conn, course_id)


def _row_by_mrn(conn: Connection, mrn: str) -> Row[Any] | None:
    return conn.execute(select(s.patients).where(s.patients.c.mrn == mrn)).first()


def _duplicate(mrn: str) -> InputError:
    return InputError("mrn", f"{mrn} is already registered to another patient")
