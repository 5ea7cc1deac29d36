"""Builders for store tests: a registered patient with a course, cases and their events."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher

from workflow.core.events import CASE_OPENED, STEP_SIGNED, Event, Signer
from workflow.store import CaseRecord, Course, Store, new_id

PROTOCOL_VERSION = "1.0.0"
PROTOCOL_HASH = "ab" * 32
NURSE = Signer("u-nurse", "Ann Nurse", "nurse")
PHARMACIST = Signer("u-pharm", "Phil Pharmacist", "pharmacist")


def course_for_new_patient(store: Store, mrn: str | None = None) -> Course:
    patient = store.add_patient(
        mrn=mrn or f"MRN{new_id()[:8]}",
        family_name="Doe",
        given_name="Jane",
        date_of_birth="1970-02-03",
        created_by="u-admin",
    )
    return store.start_course(
        patient.id,
        protocol_id="aldesleukin",
        protocol_version=PROTOCOL_VERSION,
        protocol_hash=PROTOCOL_HASH,
    )


def open_case(
    store: Store,
    course: Course,
    *,
    dose: int = 1,
    state: str = "ordered",
    scheduled_at: datetime | None = None,
) -> CaseRecord:
    case_id = new_id()
    at = store.clock.now()
    opening = Event(case_id, 1, CASE_OPENED, at, NURSE, {"dose": dose})
    return store.create_case(
        opening,
        course_id=course.id,
        cycle=1,
        dose_in_cycle=dose,
        dose_in_course=dose,
        scheduled_at=scheduled_at or at + timedelta(hours=8 * (dose - 1)),
        state=state,
        protocol_version=PROTOCOL_VERSION,
        protocol_hash=PROTOCOL_HASH,
    )


def step(case_id: str, seq: int, at: datetime, **data: Any) -> Event:
    """A signed step ("performed" by the nurse)."""
    return Event(case_id, seq, STEP_SIGNED, at, NURSE, data, step=f"step{seq}", meaning="performed")


def append_steps(store: Store, case: CaseRecord, n: int, **extra: Any) -> CaseRecord:
    """Append ``n`` single-event batches and return the case row after them."""
    for _ in range(n):
        seq = case.version + 1
        case = store.append(
            case.id,
            case.version,
            [step(case.id, seq, store.clock.now(), n=seq, **extra)],
            protocol_version=PROTOCOL_VERSION,
            protocol_hash=PROTOCOL_HASH,
        )
    return case


class CountingHasher(PasswordHasher):
    """Real argon2id (cheap parameters) that counts how often a full check runs."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verifications += 1
        return bool(super().verify(hash, password))
