"""The Store: one object the rest of Bedside talks to for everything durable.

Each method is one transaction, unless called inside :meth:`Store.atomic`, which makes every
call in its block (in that thread) one transaction together. Writes on SQLite take the database
write lock at the start (``BEGIN IMMEDIATE``), so they queue instead of failing; reads see one
consistent snapshot. Times that the store itself stamps (registration, course start) come from
the injected clock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from datetime import date, datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine

from workflow.core.clock import Clock, SystemClock
from workflow.core.events import Event

from . import (
    archive_index,
    bulk,
    cases,
    formulary,
    interface,
    log,
    patients,
    protocols,
    verify,
    web_sessions,
)
from ._tx import read_tx, write_tx
from .models import (
    ArchivedRecord,
    CaseRecord,
    ChainReport,
    Cosignature,
    Course,
    InterfaceEntry,
    LoadedCase,
    OrderCase,
    Patient,
    PendingOrder,
    StoredSignature,
)
from .proven import ProvenChains
from .web_sessions import SignatureMark


class Store:
    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock: Clock = clock or SystemClock()
        # The connection of an :meth:`atomic` block open in this thread (or task), if any.
        self._bound: ContextVar[Connection | None] = ContextVar(f"store-{id(self)}", default=None)
        # Cases whose rows a chain walk already proved: not walked again while unchanged.
        self.proven = ProvenChains()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction for every store call made inside the block (in this thread): all
        of it is committed when the block ends, none of it if it raises. An order from the
        hospital (patient, dose, signed order, interface log) is applied whole or not at all.
        Nested blocks join the outer one."""
        if self._bound.get() is not None:
            yield
            return
        with write_tx(self.engine) as conn:
            token = self._bound.set(conn)
            try:
                yield
            finally:
                self._bound.reset(token)

    def in_atomic(self) -> bool:
        """True inside an :meth:`atomic` block of this thread (its writes may yet roll back)."""
        return self._bound.get() is not None

    def _write(self) -> AbstractContextManager[Connection]:
        conn = self._bound.get()
        return nullcontext(conn) if conn is not None else write_tx(self.engine)

    def _read(self) -> AbstractContextManager[Connection]:
        conn = self._bound.get()
        return nullcontext(conn) if conn is not None else read_tx(self.engine)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- event log -------------------------------------------------------------------------

    def create_case(
        self,
        opening: Event,
        *,
        course_id: str,
        cycle: int,
        dose_in_cycle: int,
        dose_in_course: int,
        scheduled_at: datetime,
        state: str,
        protocol_version: str,
        protocol_hash: str,
        cosignatures: Sequence[Cosignature] = (),
        session: SignatureMark | None = None,
    ) -> CaseRecord:
        """Insert the case row and its first event (``opening``, seq 1; its ``case_id`` is the
        new case's id) in one transaction. Raises NotFound (course), InputError (bad event,
        course not active, numbers < 1), ConflictError (case id already used). With ``session``
        the opening signature is recorded in its web session in the same transaction
        (:meth:`append`)."""
        with self._write() as conn:
            record = log.create_case(
                conn,
                opening,
                course_id=course_id,
                cycle=cycle,
                dose_in_cycle=dose_in_cycle,
                dose_in_course=dose_in_course,
                scheduled_at=scheduled_at,
                state=state,
                protocol_version=protocol_version,
                protocol_hash=protocol_hash,
                cosignatures=cosignatures,
            )
            if session is not None:
                web_sessions.mark_signature(conn, session)
            return record

    def append(
        self,
        case_id: str,
        expected_version: int,
        events: Sequence[Event],
        *,
        protocol_version: str,
        protocol_hash: str,
        state: str | None = None,
        scheduled_at: datetime | None = None,
        cosignatures: Sequence[Cosignature] = (),
        session: SignatureMark | None = None,
    ) -> CaseRecord:
        """Append ``events`` (seq ``expected_version + 1``, ...) atomically; optionally set the
        case's projected ``state`` and ``scheduled_at``. Events with an actor and a meaning
        become signature rows. Returns the updated case row.

        Raises ConflictError("this case changed, reload") when the case is no longer at
        ``expected_version`` (nothing is written), NotFound, InputError (malformed batch),
        IntegrityError (the case's last event is missing from the log).

        ``session``: the signature was made at a web tablet; its web session is checked (still
        live, else SessionEnded) and updated (21 CFR 11.200 continuity) in this same
        transaction, so the event and the session change commit together or not at all."""
        with self._write() as conn:
            record = log.append(
                conn,
                case_id,
                expected_version,
                events,
                protocol_version=protocol_version,
                protocol_hash=protocol_hash,
                state=state,
                scheduled_at=scheduled_at,
                cosignatures=cosignatures,
            )
            if session is not None:
                web_sessions.mark_signature(conn, session)
            return record

    def bulk_load(
        self,
        *,
        patients: Sequence[Patient] = (),
        courses: Sequence[Course] = (),
        cases: Sequence[bulk.BulkCase] = (),
        records: Sequence[ArchivedRecord] = (),
    ) -> bulk.BulkResult:
        """Write many new patients, courses, whole cases and archive index rows in one
        transaction (``bedside dev seed``); hashes exactly as :meth:`append` would."""
        with self._write() as conn:
            return bulk.bulk_load(
                conn, patients=patients, courses=courses, cases=cases, records=records
            )

    def load_events(self, case_id: str, *, verify: bool = True) -> list[Event]:
        """The case's events in seq order, checked against the case's hash chain unless
        ``verify=False``. Raises NotFound, IntegrityError (the stored case was altered)."""
        with self._read() as conn:
            return log.load_events(conn, case_id, verify=verify, proven=self.proven)

    def load_case(self, case_id: str) -> tuple[CaseRecord, list[Event]]:
        """The case row and its verified events, from one snapshot (version == len(events))."""
        loaded = self.load_for_replay(case_id)
        return loaded.record, loaded.events

    def load_for_replay(self, case_id: str) -> LoadedCase:
        """:meth:`load_case`, each event's chain hash and the site formulary, in one snapshot
        (one transaction: on PostgreSQL the formulary's own cost three round trips)."""
        with self._read() as conn:
            record = cases.get_case(conn, case_id)
            events, hashes = log.load_chain(conn, case_id, record.version, proven=self.proven)
            return LoadedCase(record, events, hashes, formulary.products(conn))

    def case_chain_hash(self, case_id: str) -> str:
        with self._read() as conn:
            return log.case_chain_hash(conn, case_id)

    def load_signatures(self, case_id: str) -> list[StoredSignature]:
        with self._read() as conn:
            return log.load_signatures(conn, case_id)

    def verify_chains(
        self, positions: Collection[int] = (), jobs: int = 1, quick: bool = True
    ) -> ChainReport:
        """Check the whole log; ``report.ok`` or ``report.first_problem`` names what broke.
        ``report.chain_at`` holds the whole-log chain hash at each of ``positions``. ``jobs``
        worker processes check ranges of the log, each over a connection of its own (inside a
        bound transaction, whose writes only it sees, the check stays on that connection)."""
        if self._bound.get() is not None:
            jobs = 1
        with self._read() as conn:
            return verify.verify_chains(conn, positions, jobs, quick)

    def log_head(self) -> tuple[int, str]:
        """The whole log's length and last chain hash, as the head row records them."""
        with self._read() as conn:
            return log.log_head(conn)

    # --- cases -------------------------------------------------------------------------------

    def get_case(self, case_id: str) -> CaseRecord:
        with self._read() as conn:
            return cases.get_case(conn, case_id)

    def list_cases(
        self,
        *,
        course_id: str | None = None,
        patient_id: str | None = None,
        states: Collection[str] | None = None,
    ) -> list[CaseRecord]:
        with self._read() as conn:
            return cases.list_cases(conn, course_id=course_id, patient_id=patient_id, states=states)

    def worklist(
        self, states: Collection[str], *, limit: int = 50, offset: int = 0
    ) -> list[CaseRecord]:
        with self._read() as conn:
            return cases.worklist(conn, states, limit=limit, offset=offset)

    def board(
        self, final_states: Collection[str], ended_since: datetime, *, limit: int = 200
    ) -> list[CaseRecord]:
        """Every case not ended, and those ended since ``ended_since``, soonest first."""
        with read_tx(self.engine) as conn:
            return cases.board(conn, final_states, ended_since, limit=limit)

    # --- patients and courses --------------------------------------------------------------

    def add_patient(
        self,
        *,
        mrn: str,
        family_name: str,
        given_name: str,
        date_of_birth: date | str,
        created_by: str,
        confirm_mixed_script: bool = False,
    ) -> Patient:
        """Register a patient. Raises InputError naming the field: ``mrn`` (missing, malformed
        or already registered: nothing is written), ``family_name``, ``given_name``,
        ``date_of_birth`` (not YYYY-MM-DD, in the future, before 1900); MixedScriptName
        (a name mixing look-alike scripts, unless ``confirm_mixed_script``)."""
        with self._write() as conn:
            return patients.add_patient(
                conn,
                mrn=mrn,
                family_name=family_name,
                given_name=given_name,
                date_of_birth=date_of_birth,
                created_by=created_by,
                now=self.clock.now(),
                confirm_mixed_script=confirm_mixed_script,
            )

    def get_patient(self, patient_id: str) -> Patient:
        with self._read() as conn:
            return patients.get_patient(conn, patient_id)

    def find_patient_by_mrn(self, mrn: str) -> Patient | None:
        with self._read() as conn:
            return patients.find_patient_by_mrn(conn, mrn)

    def list_patients(self, *, limit: int = 100, offset: int = 0) -> list[Patient]:
        with self._read() as conn:
            return patients.list_patients(conn, limit=limit, offset=offset)

    def search_patients(self, text: str, *, limit: int = 50) -> list[Patient]:
        """Patients whose MRN or name contains ``text`` (any case)."""
        with read_tx(self.engine) as conn:
            return patients.search_patients(conn, text, limit=limit)

    def start_course(
        self,
        patient_id: str,
        *,
        protocol_id: str,
        protocol_version: str,
        protocol_hash: str,
        started_at: datetime | None = None,
        start_record: dict[str, Any] | None = None,
        session: SignatureMark | None = None,
    ) -> Course:
        """Open a course. Raises NotFound (patient), ConflictError (an active course exists),
        InputError (protocol_hash not a SHA-256 digest). Clinical code starts courses through
        ``Bedside.start_course``, which signs ``start_record`` (``session``: as in
        :meth:`append`)."""
        with self._write() as conn:
            course = patients.start_course(
                conn,
                patient_id=patient_id,
                protocol_id=protocol_id,
                protocol_version=protocol_version,
                protocol_hash=protocol_hash,
                started_at=started_at or self.clock.now(),
                start_record=start_record,
            )
            if session is not None:
                web_sessions.mark_signature(conn, session)
            return course

    def get_course(self, course_id: str) -> Course:
        with self._read() as conn:
            return patients.get_course(conn, course_id)

    def list_courses(self, patient_id: str) -> list[Course]:
        with self._read() as conn:
            return patients.list_courses(conn, patient_id)

    def set_course_status(self, course_id: str, status: str) -> Course:
        """Close an active course (``completed`` or ``discontinued``)."""
        with self._write() as conn:
            return patients.set_course_status(conn, course_id, status)

    # --- protocol texts ----------------------------------------------------------------------

    def save_protocol_text(
        self, text: bytes, *, protocol_id: str, version: str, kind: str = "protocol"
    ) -> str:
        with self._write() as conn:
            return protocols.save_protocol_text(
                conn,
                text=text,
                protocol_id=protocol_id,
                version=version,
                kind=kind,
                now=self.clock.now(),
            )

    def load_protocol_text(self, sha: str) -> tuple[str, bytes]:
        with self._read() as conn:
            return protocols.load_protocol_text(conn, sha)

    # --- archive index -----------------------------------------------------------------------

    def add_archived_record(self, record: ArchivedRecord) -> None:
        with self._write() as conn:
            archive_index.add_archived_record(conn, record)

    def cases_missing_record(self, states: Collection[str], kind: str) -> list[str]:
        """Cases in ``states`` with no archived record of ``kind`` (oldest first)."""
        with self._read() as conn:
            return archive_index.cases_missing_record(conn, states, kind)

    def find_archived_record(
        self, case_id: str, kind: str, events_sha256: str
    ) -> ArchivedRecord | None:
        with self._read() as conn:
            return archive_index.find_archived_record(conn, case_id, kind, events_sha256)

    def count_archived(self) -> int:
        with self._read() as conn:
            return archive_index.count_archived(conn)

    def is_archived(self, sha256: str) -> bool:
        """Whether the index holds a record with this SHA-256."""
        with self._read() as conn:
            return archive_index.is_archived(conn, sha256)

    def get_archived_record(self, sha256: str) -> ArchivedRecord:
        with self._read() as conn:
            return archive_index.get_archived_record(conn, sha256)

    def search_archive(
        self,
        *,
        text: str | None = None,
        mrn: str | None = None,
        case_id: str | None = None,
        signed_from: datetime | None = None,
        signed_to: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
        before: tuple[datetime, str] | None = None,
    ) -> list[ArchivedRecord]:
        """Newest first; ``before`` = (signed_at, sha256) of the previous page's last record
        pages by key (constant cost per page) instead of by ``offset``."""
        with self._read() as conn:
            return archive_index.search_archive(
                conn,
                text=text,
                mrn=mrn,
                case_id=case_id,
                signed_from=signed_from,
                signed_to=signed_to,
                limit=limit,
                offset=offset,
                before=before,
            )

    def iter_archive(self, batch: int = 500) -> Iterator[ArchivedRecord]:
        """Every archived record, newest first, one keyset page (one transaction) at a time."""
        before: tuple[datetime, str] | None = None
        while True:
            page = self.search_archive(limit=batch, before=before)
            yield from page
            if len(page) < batch:
                return
            before = (page[-1].signed_at, page[-1].sha256)

    # --- orders from the hospital (HL7 v2, FHIR) --------------------------------------------

    def log_interface_message(self, entry: InterfaceEntry) -> InterfaceEntry:
        """Keep one received message in the interface log. Raises ConflictError when an
        applied entry with the same channel and control id exists (a duplicate)."""
        with self._write() as conn:
            return interface.add_entry(conn, entry)

    def applied_message(self, channel: str, control_id: str) -> InterfaceEntry | None:
        """The applied log entry for this message control id, if it was applied before."""
        with self._read() as conn:
            return interface.applied_entry(conn, channel, control_id)

    def interface_log(
        self, *, limit: int = 100, placer_order: str | None = None, with_effects: bool = False
    ) -> list[InterfaceEntry]:
        """The interface log, newest first (only entries that changed doses with
        ``with_effects``)."""
        with self._read() as conn:
            return interface.list_entries(
                conn, limit=limit, placer_order=placer_order, with_effects=with_effects
            )

    def link_order_case(self, link: OrderCase) -> None:
        """Record that an external order opened this dose case."""
        with self._write() as conn:
            interface.add_order_case(conn, link)

    def set_order_priority(self, placer_order: str, priority: str) -> None:
        """A changed order's priority (``stat`` or ``routine``) for all of its doses."""
        with self._write() as conn:
            interface.set_order_priority(conn, placer_order, priority)

    def add_pending_order(self, order: PendingOrder) -> None:
        """Keep an order waiting for its patient's course to be started."""
        with self._write() as conn:
            interface.add_pending_order(conn, order)

    def update_pending_order(self, order: PendingOrder) -> None:
        """Rewrite a pending order (changed by XO, ended by DC/CA, opened by a course start)."""
        with self._write() as conn:
            interface.update_pending_order(conn, order)

    def pending_orders(
        self,
        *,
        patient_id: str | None = None,
        placer_order: str | None = None,
        statuses: Collection[str] | None = None,
    ) -> list[PendingOrder]:
        """Pending orders, oldest first: of one patient, one order number, in these statuses."""
        with self._read() as conn:
            return interface.pending_orders(
                conn, patient_id=patient_id, placer_order=placer_order, statuses=statuses
            )

    def order_cases(
        self, *, placer_order: str | None = None, case_ids: Collection[str] | None = None
    ) -> list[OrderCase]:
        """Doses opened by external orders: those of one order, or of the given cases."""
        with self._read() as conn:
            return interface.order_cases(conn, placer_order=placer_order, case_ids=case_ids)
