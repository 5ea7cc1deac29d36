"""The service's own data types and constants: what :class:`workflow.service.Bedside` returns
(a replayed case with its row, the board's rows, a course's next dose, what archiving did)
and the proof a signer gives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from workflow.core.machine import Case, PatientRef
from workflow.core.order_message import ROUTINE
from workflow.core.schedule import NextDose
from workflow.identity import Credentials, SessionPassword
from workflow.service.board import Standing
from workflow.service.tablet_signing import TabletProof
from workflow.store import ArchivedRecord, CaseRecord, Patient, PendingOrder

# A signer's proof: both components, the password inside a continuous session, or either of
# those typed at a web tablet (recorded in its session with the signed event).
Proof = Credentials | SessionPassword | TabletProof


# The record every ended case gets, archived after any other (see unarchived_cases).
ADMINISTRATION_RECORD = "administration"


# The site formulary: kept by pharmacists, each addition an approval signature.
FORMULARY_ROLE = "pharmacist"
FORMULARY_MEANING = "approved"
FORMULARY_SOURCE = "site_formulary"  # a listed product's source: the signed formulary entry


def gs1_check_digit_ok(gtin14: str) -> bool:
    """The GS1 mod-10 check digit of a 14-digit GTIN (weights 3, 1, ... from the left)."""
    body, check = gtin14[:-1], int(gtin14[-1])
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(body))
    return (10 - total % 10) % 10 == check


# Who may open a dose case (the order is then signed by a prescriber as the first step).
OPENING_ROLES = ("prescriber", "pharmacist")


@dataclass(frozen=True)
class SittingEntry:
    """One step of what is signed with one signature: the step, what was entered, the photos
    it asks for (by photo id) and the balance readings of its weights."""

    step_id: str
    values: Mapping[str, Any]
    photos: Mapping[str, bytes] | None = None
    balance: Mapping[str, Mapping[str, str]] | None = None


@dataclass(frozen=True)
class CaseView:
    """A replayed case with its stored row (for the version to send back with the next step)."""

    record: CaseRecord
    case: Case
    # Set when the step was committed but its case's records could not be made now (a missing
    # font, a signing fault): the step stands, and `archive catch-up` makes them later.
    archive_error: str | None = None

    @property
    def version(self) -> int:
        return self.record.version


# Where an ended case's records stand (Bedside.case_records).
RECORDS_PENDING = "pending"  # being made, just after the closing step
RECORDS_ARCHIVED = "archived"  # signed and in the archive
RECORDS_FAILED = "failed"  # ended without records: `bedside archive catch-up` makes them


@dataclass(frozen=True)
class CaseRecords:
    """Where a case's signed records stand, the one answer every page and the API show:
    ``state`` is one of the RECORDS_* words (None while the case is open), ``records`` the
    archived ones (newest first), ``reason`` why none were made when that is known."""

    state: str | None
    records: list[ArchivedRecord]
    reason: str | None = None


@dataclass(frozen=True)
class InterfaceEvent:
    """One thing an order from the hospital did to a dose (see Bedside.interface_events):
    ``effect`` is queued, requeued, removed (a discontinued order took the dose off the queue)
    or flagged_for_waste (the dose was prepared: a person records the waste); on an order
    waiting for its course start (``case_id`` empty) pending, pending_changed or
    pending_removed, ``state`` then the pending order's status (waiting, opened, removed,
    failed). ``open`` is true while the dose has not ended (the order is still waiting)."""

    at: datetime
    kind: str
    control_id: str
    placer_order: str
    case_id: str
    effect: str
    state: str
    open: bool
    detail: str


@dataclass(frozen=True)
class CatchUp:
    """What archiving the pending cases did: the cases archived, and those refused (why)."""

    archived: list[str]
    refused: dict[str, str]


@dataclass(frozen=True)
class BoardRow:
    """One dose on the ward board or the pharmacy queue: the replayed case and where it stands."""

    view: CaseView
    standing: Standing
    priority: str = ROUTINE  # STAT for a STAT order from the hospital (the pharmacy queue)


@dataclass(frozen=True)
class BalanceReading:
    """A weight read from the bench's balance for one item of a step: the balance's reply line
    and serial number (MT-SICS I4; "" when it gives none), when, and the server's seal that
    lets the signature keep them (Bench.balance_readings)."""

    item: str
    grams: Decimal
    reply: str
    serial: str
    read_at: str
    seal: str

    def form_value(self) -> dict[str, str]:
        return {
            "reply": self.reply,
            "serial": self.serial,
            "read_at": self.read_at,
            "seal": self.seal,
        }


@dataclass(frozen=True)
class PendingOrderView:
    """An order from the hospital waiting for a prescriber to start the patient's course."""

    order: PendingOrder
    patient: Patient

    @property
    def scheduled_at(self) -> datetime:
        return datetime.fromisoformat(self.order.order["scheduled_at"])

    @property
    def dose(self) -> str:
        o = self.order.order
        return f"{o['dose_iu_per_kg']} IU/kg on {o['dosing_weight_kg']} kg"


@dataclass(frozen=True)
class StepCount:
    """How many doses of the pharmacy queue wait at one step (``held``: on hold)."""

    step: str
    title: str
    count: int


@dataclass(frozen=True)
class PharmacyQueue:
    """The doses pharmacy works on, soonest due first, and how many wait at each step.

    ``per_step`` counts the whole queue, whatever ``showing`` (the step the rows were filtered
    to, or None), so each count can be offered as the filter for its step."""

    rows: list[BoardRow]
    per_step: list[StepCount]
    showing: str | None = None


@dataclass(frozen=True)
class NextDue:
    """A course's next dose: when it is due (``due_at``), or why none can be opened now
    (``why_not``). ``opens_now`` is False while the previous dose is still open: its due time
    shows once that dose was given, and it opens once that dose has ended."""

    due_at: datetime | None
    dose: NextDose | None
    why_not: str | None
    opens_now: bool


def patient_ref(patient: Patient) -> PatientRef:
    return PatientRef(patient.id, patient.mrn, patient.display_name, patient.date_of_birth)
