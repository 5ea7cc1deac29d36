"""Plain, immutable values the store hands out (rows turned into dataclasses)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from workflow.core.events import Event, Signer, format_time

from .formulary import FormularyProduct

# Course status words (stored).
COURSE_ACTIVE = "active"
COURSE_COMPLETED = "completed"
COURSE_DISCONTINUED = "discontinued"
COURSE_STATUSES = frozenset({COURSE_ACTIVE, COURSE_COMPLETED, COURSE_DISCONTINUED})


@dataclass(frozen=True)
class Patient:
    id: str
    mrn: str
    family_name: str
    given_name: str
    date_of_birth: date
    created_at: datetime
    created_by: str

    @property
    def display_name(self) -> str:
        return f"{self.family_name.upper()}, {self.given_name}"


@dataclass(frozen=True)
class Course:
    id: str
    patient_id: str
    started_at: datetime
    status: str
    protocol_id: str
    protocol_version: str
    protocol_hash: str
    # The signed course-start entry (see ``Bedside.start_course``); None before 0008.
    start_record: dict[str, Any] | None = None


@dataclass(frozen=True)
class CaseRecord:
    """A case's row: identity, schedule and the projection of its event log (state, version)."""

    id: str
    course_id: str
    patient_id: str
    cycle: int
    dose_in_cycle: int
    dose_in_course: int
    state: str
    version: int
    scheduled_at: datetime
    protocol_version: str
    protocol_hash: str
    updated_at: datetime


@dataclass(frozen=True)
class LoadedCase:
    """What a case's replay needs, read in one snapshot (Store.load_for_replay): its row, its
    chain-checked events, each event's chain hash, and the site formulary its scans are
    judged against."""

    record: CaseRecord
    events: list[Event]
    hashes: list[str]
    formulary: list[FormularyProduct]


@dataclass(frozen=True)
class Cosignature:
    """An additional Part 11 signature on an event in the batch being appended (``seq``).

    The event's own actor, when the event has a ``meaning``, is recorded as a signature
    automatically; use this only for a second person signing the same event.
    """

    seq: int
    signer: Signer
    meaning: str
    signed_at: datetime


@dataclass(frozen=True)
class StoredSignature:
    """One row of ``signatures``: a signature manifestation (11.50) bound to the event's
    ``content_hash`` (11.70)."""

    case_id: str
    seq: int
    user_id: str
    printed_name: str
    role: str
    meaning: str
    signed_at: datetime
    content_hash: str

    def to_json(self) -> dict[str, str]:
        return {
            "user_id": self.user_id,
            "printed_name": self.printed_name,
            "role": self.role,
            "meaning": self.meaning,
            "signed_at": format_time(self.signed_at),
            "content_hash": self.content_hash,
        }


@dataclass(frozen=True)
class ChainProblem:
    """The first thing found wrong in the log, and where.

    ``position`` is the place in the whole log (1-based), ``case_id``/``seq`` name the event
    when known (a deleted event is known only by the gap it leaves).
    """

    position: int | None
    case_id: str | None
    seq: int | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.case_id is not None:
            where.append(f"case {self.case_id}")
        if self.seq is not None:
            where.append(f"event {self.seq}")
        if self.position is not None:
            where.append(f"log position {self.position}")
        return (", ".join(where) + ": " if where else "") + self.message


@dataclass(frozen=True)
class ChainReport:
    """Result of :meth:`Store.verify_chains`. ``problems`` is in log order (capped)."""

    events_checked: int
    cases_checked: int
    head_hash: str
    problems: tuple[ChainProblem, ...]
    # The whole-log chain hash at each log position the caller asked about (signed checkpoints
    # kept outside the database are compared with these; workflow/archive/checkpoints.py). A
    # position the log does not reach is absent.
    chain_at: Mapping[int, str] = field(default_factory=dict)
    # The log's length: the last position the head records (0 for an empty log).
    log_length: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> ChainProblem | None:
        return self.problems[0] if self.problems else None


@dataclass(frozen=True)
class ArchivedRecord:
    """One entry of the archive index: a signed PDF record, found by patient, date or case."""

    sha256: str
    case_id: str
    kind: str
    patient_name: str
    mrn: str
    dose_label: str
    cycle: int | None
    signed_at: datetime
    lots: str
    signers: str
    state: str
    path: str
    created_at: datetime
    # SHA-256 of the events embedded in the record (its canonical JSON): with case_id and kind,
    # unique, so two processes archiving the same events keep one record between them. None
    # for rows written before migration 0007 and for seed placeholders.
    events_sha256: str | None = None


@dataclass(frozen=True)
class InterfaceEntry:
    """One message received from the hospital, as the interface log keeps it.

    ``status`` is ``applied``, ``duplicate`` or ``refused``; ``ack_code`` the HL7 answer (AA,
    AE, AR); ``effects`` what it did to doses: ``{"case_id", "effect", "state"}`` with effect
    one of ``queued``, ``requeued``, ``removed``, ``flagged_for_waste``."""

    received_at: datetime
    channel: str
    control_id: str | None
    kind: str
    placer_order: str | None
    status: str
    ack_code: str
    detail: str
    message: str
    effects: tuple[dict[str, str], ...] = ()
    id: int | None = None


@dataclass(frozen=True)
class PendingOrder:
    """An order from the hospital waiting for its patient's course to be started (a course
    is only ever started by a prescriber in Bedside). ``order`` holds the dose as ordered,
    values as text: drug, dose_iu_per_kg, weight_kg, weight_source, weight_measured_at,
    scheduled_at, deviation_reason, reason. ``status``: waiting, opened, removed, failed."""

    placer_order: str
    patient_id: str
    channel: str
    control_id: str
    kind: str
    priority: str
    orderer_id: str
    orderer: str
    order: Mapping[str, str]
    received_at: datetime
    updated_at: datetime
    status: str = "waiting"
    detail: str = ""
    case_id: str | None = None


@dataclass(frozen=True)
class OrderCase:
    """A dose case opened by an external order; ``priority`` is ``stat`` or ``routine``."""

    case_id: str
    placer_order: str
    course_id: str
    channel: str
    priority: str
    orderer: str
    created_at: datetime
