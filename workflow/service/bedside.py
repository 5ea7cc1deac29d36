"""The application service: the one place that joins protocol, case machine, people, store and
records. The command line and the web call this and nothing below it.

Every action follows the same path: load the case's events (hash-chain checked), replay them
into a Case, check who is signing (Part 11: id + password, or the password alone inside a
continuous session), let the Case judge and build the event, then append it with optimistic
concurrency (a stale version is a ConflictError and nothing is written). When a case ends, its
records are built, signed and archived.

This is the one door: the web and the command line call :class:`Bedside` (its commands and
queries, some kept in ``service_people.py`` and ``service_queries.py``) and use the data types
re-exported below as the service's vocabulary; they never import ``workflow.store`` or
``workflow.identity`` (import-linter contract "The edges see only the service", ``make lint``).
A signature typed at a web tablet (``tablet_signing.TabletProof``) is checked, appended and
recorded in its web session in one database transaction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workflow.core.clock import Clock, SystemClock
from workflow.core.course import carried_holds, course_status
from workflow.core.course_start import (
    DEFAULT_ROLES,
    RetreatmentBlock,
    retreatment_block,
    start_record,
)
from workflow.core.errors import (
    AuthError,
    BedsideError,
    ConflictError,
    InputError,
    NotFound,
    StepRefused,
)
from workflow.core.events import Event, Signer, parse_time
from workflow.core.machine import Case, PatientRef
from workflow.core.order_message import ROUTINE, OrderMessage
from workflow.core.protocol import Protocol, load_protocol
from workflow.core.protocol.model import Product
from workflow.core.protocol.overlay import load_overlay
from workflow.core.schedule import NextDose, earliest_time, next_dose
from workflow.identity import AuthRefused, Credentials, Identity, SessionPassword
from workflow.identity.errors import WRONG_ROLE
from workflow.resources import default_protocol_path
from workflow.service.board import PHARMACY_PHASES, Standing, counts, standing, start_of_day
from workflow.service.people import People
from workflow.service.queries import Queries
from workflow.service.tablet_signing import TabletProof
from workflow.settings import Settings
from workflow.store import (
    COURSE_ACTIVE,
    COURSE_DISCONTINUED,
    CaseRecord,
    Course,
    InterfaceEntry,
    Patient,
    Store,
    pinning,
)
from workflow.store import formulary as formulary_rows
from workflow.store.formulary import FormularyEvent, FormularyProduct
from workflow.store.web_sessions import SignatureMark
from workflow.timing import phase

if TYPE_CHECKING:  # pyserial loads only when a balance is read
    from workflow.interop.balance import Weight
    from workflow.service.orders import HL7Reply, OrderResult

# A signer's proof: both components, the password inside a continuous session, or either of
# those typed at a web tablet (recorded in its session with the signed event).
Proof = Credentials | SessionPassword | TabletProof
log = logging.getLogger("bedside")

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


@dataclass(frozen=True)
class InterfaceEvent:
    """One thing an order from the hospital did to a dose (see Bedside.interface_events):
    ``effect`` is queued, requeued, removed (a discontinued order took the dose off the queue)
    or flagged_for_waste (the dose was prepared: a person records the waste); ``open`` is true
    while the dose has not ended."""

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


@dataclass(frozen=True)
class PharmacyQueue:
    """The doses pharmacy works on, soonest due first, and how many wait at each step."""

    rows: list[BoardRow]
    per_step: list[tuple[str, int]]


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


class Bedside(People, Queries):
    """One installation: a store, its people, the protocols it knows, a clock."""

    def __init__(
        self,
        store: Store,
        protocol: Protocol,
        *,
        clock: Clock | None = None,
        identity: Identity | None = None,
        tz: tzinfo = UTC,
        archiver: Callable[[Case, str], Sequence[str]] | None = None,
    ) -> None:
        self.store = store
        self.protocol = protocol
        self.clock: Clock = clock or SystemClock()
        self.identity = identity or Identity(store)
        self.tz = tz
        self.archiver = archiver
        self.settings: Settings = Settings()
        self._protocols: dict[str, Protocol] = {protocol.content_hash: protocol}
        self._saved_protocol = False

    # -- protocols -----------------------------------------------------------------------------
    def add_protocol(self, protocol: Protocol) -> None:
        """Make an older protocol version known so cases that started on it replay on it."""
        self._protocols[protocol.content_hash] = protocol

    def protocol_for(self, content_hash: str) -> Protocol:
        """The protocol a case started on: loaded, or read back from the store by its hash."""
        known = self._protocols.get(content_hash)
        if known is not None:
            return known
        # A protocol alone, or a protocol + institution overlay pair (see workflow.store.pinning).
        protocol = pinning.restore(self.store, content_hash)
        self._protocols[content_hash] = protocol
        return protocol

    def _remember_protocol(self) -> None:
        """Keep the current protocol's exact text, so its cases replay on it after upgrades."""
        if self._saved_protocol:
            return
        pinning.remember(self.store, self.protocol)
        # Inside a caller's transaction (an order from the hospital) the text may yet be rolled
        # back with it: saving is idempotent, so it is saved again until once outside one.
        self._saved_protocol = not self.store.in_atomic()

    # -- reading ---------------------------------------------------------------------------------
    def load(self, case_id: str) -> CaseView:
        record, events = self.store.load_case(case_id)
        protocol = self.with_site_formulary(self.protocol_for(record.protocol_hash))
        case = Case.replay(protocol, case_id, events)
        return CaseView(record, case)

    def check_bag_scan(self, case_id: str, text: str) -> dict[str, Any]:
        """The bag's label code checked against this dose now (closed loop, issue 16.4), by
        the same core check that signing the bedside step runs (``bag_check.check_bag``):
        the entry values it proves, or StepRefused naming both the bag and this dose."""
        from workflow.core.bag_check import check_bag
        from workflow.core.gs1 import stored_form

        case = self.load(case_id).case
        code = check_bag(case, text, self.clock.now())
        return {
            "bag_entry": "scanned",
            "bag_scan": stored_form(text),
            "case_id": code.case_id,
            "cycle": code.cycle,
            "dose_in_cycle": code.dose_in_cycle,
            "use_before": code.use_before.isoformat(),
        }

    def read_balance(self) -> Weight:
        """One stable weight from the bench's balance (settings ``bench.balance_port``), in
        MT-SICS; StepRefused("no_balance") when none is configured (weights are then typed
        in with a reason), StepRefused("balance_error") when the balance cannot give one."""
        if self.settings.balance_port is None:
            raise StepRefused(
                "no_balance",
                "No balance is configured here (bench.balance_port in bedside.yaml): type the "
                "weight in and say why",
            )
        from workflow.interop.balance import read_stable

        return read_stable(self.settings.balance_port, baud=self.settings.balance_baud)

    def earlier_entry(self, view: CaseView, step_id: str) -> dict[str, Any]:
        """The values of ``step_id``'s entry on the latest earlier dose of the same course
        (empty when there is none): what a form may propose for a fact of the course rather
        than of the dose, so it is asked once (issue 12.4). Typed values, as signed."""
        record = view.record
        earlier = [
            r
            for r in self.store.list_cases(course_id=record.course_id)
            if r.id != record.id and r.dose_in_course < record.dose_in_course
        ]
        for r in sorted(earlier, key=lambda r: r.dose_in_course, reverse=True):
            entry = self.load(r.id).case.current.get(step_id)
            if entry is not None:
                return dict(entry.values)
        return {}

    # -- the site formulary (issue 12.3) ---------------------------------------------------------
    def formulary(self) -> list[FormularyProduct]:
        """The products pharmacists listed here, by kind and description."""
        return formulary_rows.list_products(self.store.engine)

    def formulary_events(self) -> list[FormularyEvent]:
        """Every change to the site formulary, oldest first (who, when, what, meaning)."""
        return formulary_rows.list_events(self.store.engine)

    def with_site_formulary(self, protocol: Protocol) -> Protocol:
        """``protocol`` with the site's listed products added to its own (an overlay's), so a
        scan of a product a pharmacist listed is known to the case machine. Rows are never
        removed, so a case replays on a list that still holds every product it scanned."""
        site = self.formulary()
        if not site:
            return protocol
        known = {p.gtin for p in protocol.formulary}
        added = tuple(
            Product(f.gtin, f.kind, f"{f.description} {f.strength}", FORMULARY_SOURCE, True)
            for f in site
            if f.gtin not in known and f.kind in protocol.scan_steps()
        )
        return replace(protocol, formulary=protocol.formulary + added)

    def add_to_formulary(
        self, gtin: str, kind: str, description: str, strength: str, proof: Proof
    ) -> FormularyProduct:
        """List a product (GTIN -> kind, description, strength), signed by a pharmacist with
        their password like any signature (meaning ``approved``); the change and the signature
        are audit events. Bad input names the field and what is allowed."""
        digits = gtin.strip()
        if not digits.isdigit() or len(digits) not in (8, 12, 13, 14):
            raise InputError("gtin", f"'{gtin}' is not a GTIN", "8, 12, 13 or 14 digits")
        digits = digits.zfill(14)
        if not gs1_check_digit_ok(digits):
            raise InputError("gtin", f"{digits}: the check digit is wrong; read the code again")
        kinds = self.protocol.scan_steps()
        if kind not in kinds:
            raise InputError("kind", f"'{kind}' is not a scanned item", ", ".join(kinds))
        texts = {"description": (description, 200), "strength": (strength, 100)}
        for name, (value, most) in texts.items():
            if not value.strip() or len(value) > most or not value.isprintable():
                raise InputError(name, "must be printable text", f"1 to {most} characters")
        if any(p.gtin == digits for p in self.protocol.formulary):
            raise InputError("gtin", f"GTIN {digits} is in the protocol's formulary already")
        now = self.clock.now()
        signer = self.signer(proof, (FORMULARY_ROLE,))
        return formulary_rows.add_product(
            self.store.engine,
            gtin=digits,
            kind=kind,
            description=" ".join(description.split()),
            strength=" ".join(strength.split()),
            signer=signer,
            meaning=FORMULARY_MEANING,
            now=now,
            session=self._mark(proof),
        )

    def check_wristband(self, view: CaseView, scanned: str, *, show_dose_mrn: bool) -> str:
        """The MRN a wristband scan carries, once it is this dose's patient's.

        A scanner acting as a keyboard types the barcode (the MRN) and Enter. A scan that is
        another patient's, or no patient's, is refused (StepRefused ``wrong_patient``, field
        ``scan_wristband``) with both identities in words. ``show_dose_mrn`` is False while the
        person is at an independent check (workflow.core.blinding): the dose's MRN is then
        left out of the words, its name stays (the nurse needs it to find the patient).
        """
        mrn = scanned.strip("\r\n\t ")
        if not mrn or len(mrn) > 64 or not mrn.isprintable():
            raise InputError("scan_wristband", "the wristband scan is empty or not an MRN")
        dose = self.store.get_patient(view.record.patient_id)
        if mrn == dose.mrn:
            return mrn
        worn = self.store.find_patient_by_mrn(mrn)
        band = f"{worn.display_name} MRN {worn.mrn}" if worn else f"MRN {mrn} (no patient has it)"
        ours = dose.display_name + (
            f" MRN {dose.mrn}" if show_dose_mrn else " (MRN not shown at an independent check)"
        )
        raise StepRefused(
            "wrong_patient",
            f"Wrong patient: wristband: {band} — this dose: {ours}. Do not give this dose; "
            "find the patient this dose is for",
            field="scan_wristband",
        )

    def wristband_pdf(self, mrn: str) -> bytes:
        """A test wristband for the patient with this MRN (NotFound when none has it)."""
        from workflow.records.wristband import wristband_pdf

        patient = self.store.find_patient_by_mrn(mrn.strip())
        if patient is None:
            raise NotFound(f"no patient has MRN {mrn.strip()!r}")
        return wristband_pdf(patient.display_name, patient.mrn, patient.date_of_birth)

    def course_cases(self, course_id: str) -> list[Case]:
        records = sorted(
            self.store.list_cases(course_id=course_id),
            key=lambda r: (r.dose_in_course, r.updated_at),
        )
        out: list[Case] = []
        for rec in records:
            out.append(self.load(rec.id).case)
        out.sort(key=lambda c: c.events[0].at)
        return out

    def next_dose(self, course_id: str, at: datetime) -> NextDose:
        course = self.store.get_course(course_id)
        self._course_active(course)
        status = course_status(self.course_cases(course_id), self.protocol.course_rules)
        return next_dose(self.protocol, status, at, self.tz)

    # -- acting ----------------------------------------------------------------------------------
    def signer(
        self,
        proof: Proof,
        allowed_roles: Sequence[str],
        *,
        case_id: str | None = None,
        expected_version: int | None = None,
        step: str | None = None,
    ) -> Signer:
        """Authenticate the signer in the first allowed role they hold. A refused attempt is
        written to the case's own trail as well as the security log (never the password)."""
        now = self.clock.now()
        if isinstance(proof, TabletProof):
            proof = proof.proof
        username = proof.username if isinstance(proof, Credentials) else proof.session.username
        try:
            user = self.identity.get_user(username)
            role = next((r for r in allowed_roles if r in user.roles), allowed_roles[0])
        except (AuthError, NotFound):
            role = allowed_roles[0]  # sign_as refuses it with the same words as a bad password
        try:
            return self.identity.sign_as(proof, role, now)
        except AuthRefused as exc:
            # A wrong role is not a failed signature of this case: the security log keeps it.
            if case_id is not None and expected_version is not None and exc.reason != WRONG_ROLE:
                self._record_failure(case_id, expected_version, username, exc, step)
            raise

    def _record_failure(
        self, case_id: str, version: int, username: str, exc: AuthRefused, step: str | None
    ) -> None:
        view = self.load(case_id)
        if view.version != version or view.case.closed:
            return  # moved on, or ended (its records are signed): the security log has it
        # What was typed as the user id is often a password: the case keeps only an account
        # it names, never the text (the security log keeps a keyed digest of unknown names).
        try:
            user = self.identity.get_user(username)
            known: tuple[str | None, str | None] = (user.id, user.username)
        except (AuthError, NotFound, InputError):
            known = (None, None)
        event = view.case.record_failed_signature(
            known[1], exc.reason, self.clock.now(), step, user_id=known[0]
        )
        proto = view.case.protocol
        # If someone else moved the case on, the security log still has the attempt.
        with contextlib.suppress(ConflictError):
            self.store.append(
                case_id,
                version,
                [event],
                protocol_version=proto.version,
                protocol_hash=proto.content_hash,
                state=view.case.state,
            )

    # -- patients --------------------------------------------------------------------------------
    def order_roles(self) -> tuple[str, ...]:
        """Who writes orders: whoever the protocol lets start a course or sign its first step
        (the order). The web lets these register patients, start courses and open doses."""
        spec = self.protocol.course_start
        first = self.protocol.step(self.protocol.initial)
        roles = [*(spec.roles if spec else DEFAULT_ROLES), *first.roles]
        return tuple(dict.fromkeys(roles))

    def course_doses(self, course_id: str) -> list[CaseView]:
        """The course's doses, in the order they were opened."""
        views = [self.load(r.id) for r in self.store.list_cases(course_id=course_id)]
        views.sort(key=lambda v: v.case.events[0].at)
        return views

    def retreatment_block_for(self, patient_id: str) -> RetreatmentBlock | None:
        """The toxicity that contraindicates a new course for this patient, if any (a course
        start is then refused unless a prescriber overrides it with a signed reason)."""
        return retreatment_block(self.protocol, self._earlier_cases(patient_id))

    def _earlier_cases(self, patient_id: str) -> list[Case]:
        return [
            case
            for course in self.store.list_courses(patient_id)
            for case in self.course_cases(course.id)
        ]

    def next_due(self, course_id: str) -> NextDue:
        """When the course's next dose is due (now, or the q8h time after the last one given,
        or the end of the rest), through the same schedule rules as :meth:`open_case`."""
        course = self.store.get_course(course_id)
        try:
            self._course_active(course)
        except StepRefused as exc:
            return NextDue(None, None, exc.message, False)
        status = course_status(self.course_cases(course_id), self.protocol.course_rules)
        now = self.clock.now()
        earliest = earliest_time(self.protocol, status, self.tz)
        at = max(now, earliest) if earliest is not None else now
        if status.active_case is not None:
            # The dose in progress: the next one's time shows once this one was given.
            current = self.load(status.active_case).case
            due = at if current.given else None
            why = (
                f"course dose {current.dose_in_course} (cycle {current.cycle} dose "
                f"{current.dose_in_cycle}) is still open; the next opens once it has ended"
            )
            return NextDue(due, None, why, False)
        try:
            dose = next_dose(self.protocol, status, at, self.tz)
        except StepRefused as exc:
            return NextDue(None, None, exc.message, False)
        return NextDue(max(at, dose.earliest_at), dose, None, True)

    # -- the ward board and the pharmacy queue ---------------------------------------------------
    def ward_board(self, *, limit: int = 200) -> list[BoardRow]:
        """Every dose of the ward in every state: not yet ended, or ended today (the site's
        day), soonest due first, each with where it stands now."""
        now = self.clock.now()
        since = start_of_day(now, self.tz)
        records = self.store.board(self.protocol.final_states, since, limit=limit)
        rows = []
        for record in records:
            view = self.load(record.id)
            rows.append(BoardRow(view, standing(view.case, record.scheduled_at, now)))
        return rows

    def pharmacy_queue(self, *, limit: int = 200) -> PharmacyQueue:
        """The doses waiting for a pharmacy step (order verification, eligibility, compounding,
        verification), soonest due first (overdue ones are the soonest), with how many wait at
        each step. The protocol's order carries no urgency (STAT) item, so due time decides."""
        now = self.clock.now()
        states = self.pharmacy_states()
        records = self.store.worklist(states, limit=limit)
        rows = []
        for record in records:
            view = self.load(record.id)
            rows.append(BoardRow(view, standing(view.case, record.scheduled_at, now)))
        rows.sort(key=lambda r: (r.standing.due_at, r.view.case.case_id))
        steps = [
            self.protocol.step(r.view.case.state).title for r in rows if not r.view.case.on_hold
        ]
        return PharmacyQueue(rows, counts(steps))

    def pharmacy_states(self) -> list[str]:
        """States where the next signature is pharmacy's: the order's verification, eligibility
        and every compounding step."""
        pharmacy = {"pharmacy_technician", "pharmacist"}
        return [
            s.id
            for s in self.protocol.steps
            if set(s.roles) & pharmacy and s.phase in ("order", "eligibility", *PHARMACY_PHASES)
        ]

    # -- courses ---------------------------------------------------------------------------------
    def start_course(
        self,
        patient_id: str,
        proof: Proof,
        attestations: Mapping[str, Any],
        *,
        override_reason: str = "",
    ) -> Course:
        """Start a course: the prescriber signs the protocol's attestations (the boxed
        warning's conditions). After a toxicity the label contraindicates retreatment for, it is
        refused naming the rule, date and dose, unless the protocol lets a prescriber override
        with a signed reason (kept in the course's start record, shown on every later record)."""
        patient = self.store.get_patient(patient_id)
        spec = self.protocol.course_start
        signer = self.signer(proof, spec.roles if spec else DEFAULT_ROLES)
        self._remember_protocol()
        block = retreatment_block(self.protocol, self._earlier_cases(patient.id))
        record = start_record(
            self.protocol, attestations, signer, self.clock.now(), block, override_reason
        )
        p = self.protocol
        return self.store.start_course(
            patient.id,
            protocol_id=p.id,
            protocol_version=p.version,
            protocol_hash=p.content_hash,
            start_record=record,
            session=self._mark(proof),
        )

    def active_course(self, patient_id: str) -> Course:
        """The patient's active course, or why there is none (a permanent discontinuation is
        named with its rule, date and dose)."""
        patient = self.store.get_patient(patient_id)
        courses = self.store.list_courses(patient.id)
        for course in courses:
            if course.status == COURSE_ACTIVE:
                return course
        for course in reversed(courses):
            if course.status == COURSE_DISCONTINUED:
                self._course_active(course)
        raise StepRefused(
            "no_active_course",
            f"{patient.display_name} ({patient.mrn}) has no active course; a prescriber starts "
            f"one (bedside course start --mrn {patient.mrn})",
        )

    def open_case(
        self, course_id: str, scheduled_at: datetime, proof: Proof, ward: str = "unassigned"
    ) -> CaseView:
        course = self.store.get_course(course_id)
        self._course_active(course)  # before any password is checked
        signer = self.signer(proof, OPENING_ROLES)
        return self.open_case_as(course, scheduled_at, signer, ward, session=self._mark(proof))

    def open_dose(
        self,
        course_id: str,
        scheduled_at: datetime,
        order: Mapping[str, Any],
        proof: Proof,
        ward: str = "unassigned",
    ) -> CaseView:
        """Open the course's next dose by signing its order (the protocol's first step): one
        signature by someone who may sign the order and open a dose. The opening and the order
        are both judged before either is written, so a refused order (a bad weight, a missing
        item) leaves no dose behind."""
        first = self.protocol.step(self.protocol.initial)
        roles = tuple(r for r in first.roles if r in OPENING_ROLES)
        if not roles:
            raise StepRefused(
                "role_not_allowed",
                f"'{first.title}' is signed by {', '.join(first.roles)}, who may not open a dose",
            )
        self._course_active(self.store.get_course(course_id))
        signer = self.signer(proof, roles)
        case, opened, dose = self._opening(course_id, scheduled_at, signer, ward)
        opened_state = case.state
        order_event = case.sign(first.id, dict(order), signer, self.clock.now())
        record = self._create(case, opened, dose, scheduled_at, state=opened_state)
        proto = case.protocol
        record = self.store.append(
            case.case_id,
            record.version,
            [order_event],
            protocol_version=proto.version,
            protocol_hash=proto.content_hash,
            state=case.state,
            session=self._mark(proof),  # the signature's 11.200 state with the order it signs
        )
        return CaseView(record, case)

    def open_case_as(
        self,
        course: Course,
        scheduled_at: datetime,
        signer: Signer,
        ward: str = "unassigned",
        *,
        session: SignatureMark | None = None,
    ) -> CaseView:
        """Open the course's next dose for a signer already established: a person who signed
        in (:meth:`open_case`; ``session``: the web session a tablet's signature is recorded
        in) or the ordering provider an order from the hospital names (workflow.service.orders).
        The schedule rules judge it the same either way."""
        if signer.role not in OPENING_ROLES:
            raise StepRefused(
                "role_not_allowed",
                f"A dose is opened by a {' or '.join(OPENING_ROLES)}; {signer.name} is "
                f"{signer.role}",
            )
        case, opened, dose = self._opening(course.id, scheduled_at, signer, ward)
        record = self._create(case, opened, dose, scheduled_at, session=session)
        return CaseView(record, case)

    def _opening(
        self, course_id: str, scheduled_at: datetime, signer: Signer, ward: str
    ) -> tuple[Case, Event, NextDose]:
        course = self.store.get_course(course_id)
        self._course_active(course)
        self._remember_protocol()
        patient = self.store.get_patient(course.patient_id)
        cases = self.course_cases(course_id)
        status = course_status(cases, self.protocol.course_rules)
        dose = next_dose(self.protocol, status, scheduled_at, self.tz)
        case, opened = Case.open(
            self.protocol,
            str(uuid.uuid4()),
            patient=patient_ref(patient),
            course_id=course_id,
            dose=dose,
            scheduled_at=scheduled_at,
            actor=signer,
            at=self.clock.now(),
            awaiting_resume=carried_holds(cases),
            ward=ward,
            course_start=course.start_record,
        )
        return case, opened, dose

    def _create(
        self,
        case: Case,
        opened: Event,
        dose: NextDose,
        scheduled_at: datetime,
        state: str | None = None,
        session: SignatureMark | None = None,
    ) -> CaseRecord:
        return self.store.create_case(
            opened,
            course_id=case.course_id,
            cycle=dose.cycle,
            dose_in_cycle=dose.dose_in_cycle,
            dose_in_course=dose.dose_in_course,
            scheduled_at=scheduled_at,
            state=state or case.state,
            protocol_version=self.protocol.version,
            protocol_hash=self.protocol.content_hash,
            session=session,
        )

    def _act(
        self,
        case_id: str,
        expected_version: int,
        proof: Proof,
        roles: Sequence[str],
        build: Callable[[Case, Signer, datetime], Event],
        step: str | None = None,
    ) -> CaseView:
        with phase("load"):
            view = self.load(case_id)
        if view.version != expected_version:
            raise ConflictError(
                f"this case changed (now at version {view.version}, you had "
                f"{expected_version}): reload and try again"
            )
        with phase("auth"):  # the password proof (argon2) or the signing session
            signer = self.signer(
                proof, roles, case_id=case_id, expected_version=expected_version, step=step
            )
        return self.act_as(view, signer, build, session=self._mark(proof))

    def act_as(
        self,
        view: CaseView,
        signer: Signer,
        build: Callable[[Case, Signer, datetime], Event],
        *,
        archive: bool = True,
        session: SignatureMark | None = None,
    ) -> CaseView:
        """Judge and append one event for a signer already established (after
        :meth:`signer`, or the ordering provider of an order from the hospital). With
        ``archive=False`` an ending case's records are left to :meth:`archive_pending` (the
        caller's transaction is still open: files must not be written for a step that may yet
        be rolled back)."""
        case_id = view.record.id
        expected_version = view.version
        case = view.case
        with phase("rules"):
            event = build(case, signer, self.clock.now())
        proto = case.protocol
        # The event and, for a tablet's signature, its session's 11.200 state: one transaction.
        with phase("append"):  # includes its transaction's share of "commit"
            record = self.store.append(
                case_id,
                expected_version,
                [event],
                protocol_version=proto.version,
                protocol_hash=proto.content_hash,
                state=case.state,
                session=session,
            )
        if case.state == "discontinued":
            course = self.store.get_course(record.course_id)
            if course.status == COURSE_ACTIVE:
                self.store.set_course_status(record.course_id, COURSE_DISCONTINUED)
        if case.closed and self.archiver is not None and archive:
            try:
                with phase("records"):  # render, sign and archive the case's records
                    self.archiver(case, self.store.case_chain_hash(case_id))
            except BedsideError as exc:
                # The closing step is committed and acknowledged: failing it now would tell the
                # nurse it was not signed. The case is "ended without records", which every
                # server start, `bedside run` and `archive catch-up` finish (and `archive
                # verify` reports), so the fault is logged loudly and returned with the view.
                log.error("case %s ended but its records were not made: %s", case_id, exc)
                return CaseView(record, case, archive_error=exc.message)
        return CaseView(record, case)

    def sign_step(
        self,
        case_id: str,
        expected_version: int,
        step_id: str,
        values: dict[str, Any],
        proof: Proof,
    ) -> CaseView:
        step = self._step(case_id, step_id)

        def build(case: Case, signer: Signer, now: datetime) -> Event:
            if step.starts_infusion and step_id in case.allowed_steps():
                self._check_schedule(case, now)
            return case.sign(step_id, values, signer, now)

        return self._act(case_id, expected_version, proof, step.roles, build, step=step_id)

    def _check_schedule(self, case: Case, at: datetime) -> None:
        """Every schedule rule again, against the real time, at the step that gives the drug:
        the q8h gap, the doses of a cycle and a course, the cycle's days and the rest, a
        discontinued course, another dose of the course open at the same time."""
        self._course_active(self.store.get_course(case.course_id))
        others = [c for c in self.course_cases(case.course_id) if c.case_id != case.case_id]
        status = course_status(others, case.protocol.course_rules)
        dose = next_dose(case.protocol, status, at, self.tz)
        opened = (case.cycle, case.dose_in_cycle, case.dose_in_course)
        if (dose.cycle, dose.dose_in_cycle, dose.dose_in_course) != opened:
            raise StepRefused(
                "schedule_changed",
                f"This dose was opened as cycle {case.cycle} dose {case.dose_in_cycle} (course "
                f"dose {case.dose_in_course}); started now it would be cycle {dose.cycle} dose "
                f"{dose.dose_in_cycle}. It cannot be given as ordered: cancel it (or record the "
                "bag as wasted) and open the next dose.",
            )

    def assess(
        self, case_id: str, expected_version: int, values: dict[str, Any], proof: Proof
    ) -> CaseView:
        return self._act(
            case_id,
            expected_version,
            proof,
            ("nurse", "prescriber", "pharmacist"),
            lambda c, s, now: c.assess(values, s, now),
        )

    def side_exit(
        self, case_id: str, expected_version: int, action: str, reason: str, note: str, proof: Proof
    ) -> CaseView:
        if action not in self.protocol.side_exits:
            raise StepRefused(
                "unknown_action",
                f"'{action}' is not one of {', '.join(self.protocol.side_exits)}",
                field="action",
            )
        roles = self.protocol.side_exits[action].roles
        return self._act(
            case_id,
            expected_version,
            proof,
            roles,
            lambda c, s, now: getattr(c, action)(s, now, reason, note),
        )

    def correct(
        self,
        case_id: str,
        expected_version: int,
        target_seq: int,
        values: dict[str, Any],
        reason: str,
        proof: Proof,
    ) -> CaseView:
        view = self.load(case_id)
        target = next((e for e in view.case.history if e.seq == target_seq), None)
        if target is None:
            raise StepRefused(
                "invalid_item",
                f"target_seq: event {target_seq} is not a signed step of this case",
                field="target_seq",
            )
        roles = view.case.protocol.step(target.step).roles
        return self._act(
            case_id,
            expected_version,
            proof,
            roles,
            lambda c, s, now: c.correct(target_seq, values, reason, s, now),
        )

    # -- orders from the hospital ---------------------------------------------------------------
    def receive_order(self, message: OrderMessage) -> OrderResult:
        """Apply one order from the hospital (HL7 v2 or FHIR): NW opens and queues a dose, XO
        sends it back to verification, DC/CA takes the order's unprepared doses off the queue
        and flags a prepared one for waste. One transaction with its interface log entry; a
        control id already applied is acknowledged again, not applied twice. See
        workflow.service.orders."""
        from workflow.service import orders

        return orders.receive_order(self, message)

    def receive_hl7(self, text: str) -> HL7Reply:
        """One HL7 v2 message as the MLLP listener received it: read, applied through
        :meth:`receive_order`, and answered (AA / AE / AR with the reason)."""
        from workflow.service import orders

        return orders.receive_hl7(self, text)

    def receive_fhir(self, body: Any, raw: str) -> OrderResult:
        """A FHIR R4 MedicationRequest (a Bundle with its Patient, or with contained
        resources), read and applied through :meth:`receive_order`; ``raw`` is kept in the
        interface log."""
        from workflow.service import orders

        return orders.receive_fhir(self, body, raw)

    def reject_message(
        self, channel: str, raw: str, control_id: str | None, kind: str, error: BedsideError
    ) -> OrderResult:
        """Log a message that could not be read as an order (answered AR)."""
        from workflow.service import orders

        return orders.reject_unreadable(self, channel, raw, control_id, kind, error)

    def interface_log(
        self, *, limit: int = 100, placer_order: str | None = None
    ) -> list[InterfaceEntry]:
        """The interface log (every message received, applied, duplicate or refused), newest
        first."""
        return self.store.interface_log(limit=limit, placer_order=placer_order)

    def interface_events(self, *, limit: int = 50) -> list[InterfaceEvent]:
        """What orders from the hospital did to doses, newest first: the doses a
        discontinued order removed from the pharmacy queue, the prepared dose it flagged for
        waste (``open`` while that dose is still not ended), the doses queued or re-queued."""
        out: list[InterfaceEvent] = []
        for entry in self.store.interface_log(limit=limit, with_effects=True):
            for effect in entry.effects:
                state = effect.get("state", "")
                if effect["effect"] == "flagged_for_waste":
                    state = self.store.get_case(effect["case_id"]).state
                out.append(
                    InterfaceEvent(
                        at=entry.received_at,
                        kind=entry.kind,
                        control_id=entry.control_id or "",
                        placer_order=entry.placer_order or "",
                        case_id=effect["case_id"],
                        effect=effect["effect"],
                        state=state,
                        open=state not in self.protocol.final_states,
                        detail=entry.detail,
                    )
                )
        return out

    def order_priorities(self, case_ids: Sequence[str]) -> dict[str, str]:
        """Each case's priority for the pharmacy queue: ``stat`` or ``routine`` as the
        hospital's order gave it (ORC-7.6 / TQ1-9, MedicationRequest.priority); a dose opened
        in Bedside, with no external order, is ``routine``."""
        found = {o.case_id: o.priority for o in self.store.order_cases(case_ids=case_ids)}
        return {case_id: found.get(case_id, ROUTINE) for case_id in case_ids}

    # -- archiving ---------------------------------------------------------------------------
    def unarchived_cases(self) -> list[str]:
        """Ended cases whose records are not (all) archived, oldest first.

        The closing event and the archive are two writes: a crash (power loss, SIGKILL) between
        them leaves an ended case with no record. The administration record is always archived
        last, so a case without one is unfinished (found by the crash campaign, issue 6).
        """
        return self.store.cases_missing_record(self.protocol.final_states, ADMINISTRATION_RECORD)

    def archive_pending(self, on_case: Callable[[int, int, str], None] | None = None) -> CatchUp:
        """Sign and archive the records of every case :meth:`unarchived_cases` finds. The events
        are durable, so the records are rebuilt from them exactly; documents already archived
        are kept (archiving is idempotent). A case the archive refuses (its events disagree with
        a record already signed for it, or signing fails) is logged loudly and reported, and the
        others are still archived: one forged case must not leave the rest without records."""
        done: list[str] = []
        refused: dict[str, str] = {}
        if self.archiver is None:
            return CatchUp(done, refused)
        pending = self.unarchived_cases()
        for n, case_id in enumerate(pending, 1):
            view = self.load(case_id)
            try:
                self.archiver(view.case, self.store.case_chain_hash(case_id))
            except BedsideError as exc:
                log.error("case %s: records refused: %s", case_id, exc.message)
                refused[case_id] = exc.message
            else:
                done.append(case_id)
            if on_case is not None:
                on_case(n, len(pending), case_id)
        return CatchUp(done, refused)

    # -- helpers ---------------------------------------------------------------------------------
    def _mark(self, proof: Proof) -> SignatureMark | None:
        """What a checked signature changes in the web session it was typed in (none for a
        signature at the command line)."""
        return proof.mark(self.clock.now()) if isinstance(proof, TabletProof) else None

    def _step(self, case_id: str, step_id: str) -> Any:
        record = self.store.get_case(case_id)
        protocol = self.protocol_for(record.protocol_hash)
        try:
            return protocol.step(step_id)
        except KeyError:
            raise StepRefused(
                "unknown_step",
                f"'{step_id}' is not a step of this protocol "
                f"(steps: {', '.join(protocol.step_ids())})",
                field="step",
            ) from None

    def _course_active(self, course: Course) -> None:
        if course.status == COURSE_DISCONTINUED:
            ended = next(
                (c for c in self.course_cases(course.id) if c.state == "discontinued"), None
            )
            why = ""
            if ended is not None and ended.end:
                at = ended.end.get("at")
                when = f"{parse_time(str(at)):%Y-%m-%d %H:%M} UTC" if at else "an unknown time"
                why = (
                    f" on {when} at cycle {ended.cycle} dose {ended.dose_in_cycle} (course dose "
                    f"{ended.dose_in_course}): {ended.end.get('note') or ended.end.get('reason')}"
                )
            raise StepRefused(
                "course_discontinued",
                f"Course {course.id} was permanently discontinued{why}. No further dose may be "
                "given on it.",
            )
        if course.status != COURSE_ACTIVE:
            raise StepRefused("course_closed", f"Course {course.id} is {course.status}")


def _site_key(home: Path) -> bytes | None:
    """The home's site key (``pki/session-verifier.key``) once ``bedside init`` made ``pki/``.

    Every command, not only ``serve``, keys the trail's digests of unknown usernames with it, so
    guesses at one name count together whether typed at a tablet or at ``bedside run``.
    """
    from workflow.identity.session_proof import load_session_key

    folder = home / "pki"
    if not folder.is_dir():
        return None
    try:
        return load_session_key(folder)
    except OSError:  # a read-only home (an auditor's copy): digests fall back to unkeyed
        return None


def open_bedside(
    home: str | Path | None = None,
    db_url: str | None = None,
    protocol_path: str | Path | None = None,
    clock: Clock | None = None,
    tz: tzinfo | None = None,
    archive: bool = True,
    overlay_path: str | Path | None = None,
) -> Bedside:
    """Open the installation at ``home`` (or $BEDSIDE_HOME) on its database, with the site
    settings of ``<home>/bedside.yaml`` (security policy, time zone)."""
    from workflow.settings import load_settings
    from workflow.store import home_dir, open_store

    home_path = home_dir(home)
    settings = load_settings(home_path)
    store = (
        open_store(db_url, home=home_path, clock=clock)
        if db_url
        else open_store(None, home=home_path, clock=clock)
    )
    protocol = load_protocol(protocol_path or default_protocol_path())
    overlay = overlay_path or os.environ.get("BEDSIDE_OVERLAY")
    if overlay:
        protocol = load_overlay(overlay, protocol)
    bedside = Bedside(
        store,
        protocol,
        clock=clock,
        tz=tz or settings.tz,
        identity=Identity(store, policy=settings.security, session_key=_site_key(home_path)),
    )
    bedside.settings = settings
    if archive:
        from workflow.archive import Archive

        archiver = Archive(home_path, store, tz=bedside.tz)
        if archiver.ready:
            bedside.archiver = archiver.archive_case
    return bedside
