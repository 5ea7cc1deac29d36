"""The application service: the one place that joins protocol, case machine, people, store and
records. The command line and the web call this and nothing below it.

Every action follows the same path: load the case's events (hash-chain checked), replay them
into a Case, check who is signing (Part 11: id + password, or the password alone inside a
continuous session), let the Case judge and build the event, then append it with optimistic
concurrency (a stale version is a ConflictError and nothing is written). When a case ends, its
records are built, signed and archived: inline, or by the server's records writer just after
the closing step's answer (:meth:`Bedside.write_records_later`, service/records_later.py).

This is the one door: the web and the command line call :class:`Bedside` (its commands and
queries, kept by job in the modules beside this one) and use the data types
of ``vocabulary.py`` as the service's vocabulary; they never import ``workflow.store`` or
``workflow.identity`` (import-linter contract "The edges see only the service", ``make lint``).
A signature typed at a web tablet (``tablet_signing.TabletProof``) is checked, appended and
recorded in its web session in one database transaction."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workflow.core.clock import Clock
from workflow.core.course import course_status
from workflow.core.errors import BedsideError, ConflictError, NotFound, StepRefused
from workflow.core.events import Event, Signer
from workflow.core.machine import Case
from workflow.core.order_message import OrderMessage
from workflow.core.protocol import load_protocol
from workflow.core.protocol.model import common_roles
from workflow.core.protocol.overlay import load_overlay
from workflow.core.schedule import next_dose
from workflow.core.sittings import sign_sitting
from workflow.identity import Identity
from workflow.resources import default_protocol_path
from workflow.service.bench import Bench
from workflow.service.courses import Courses
from workflow.service.people import People
from workflow.service.photos import Photos
from workflow.service.queries import Queries
from workflow.service.records_later import RecordsWriter
from workflow.service.views import (
    ADMINISTRATION_RECORD,
    RECORDS_ARCHIVED,
    RECORDS_FAILED,
    RECORDS_PENDING,
    CaseRecords,
    CaseView,
    CatchUp,
    Proof,
    SittingEntry,
)
from workflow.service.worklists import Worklists
from workflow.store import COURSE_ACTIVE, COURSE_DISCONTINUED
from workflow.store.web_sessions import SignatureMark
from workflow.timing import phase

if TYPE_CHECKING:  # the order readers load with the first order from the hospital
    from workflow.service.orders import HL7Reply, OrderResult


log = logging.getLogger("bedside")

NO_SIGNING = "no signing material here (run `bedside init`)"
# A case ended this recently whose records this server is not making is shown as "being made":
# with several servers behind one proxy, the server that took its closing step makes them
# (well under a second, seconds under load); past this it is "ended without records".
RECORDS_GRACE = timedelta(minutes=2)


class Bedside(Courses, Bench, Photos, Worklists, People, Queries):
    """One installation: a store, its people, the protocols it knows, a clock. Signing a case's
    steps and archiving its records live here; its other jobs are the mixins."""

    def _act(
        self,
        case_id: str,
        expected_version: int,
        proof: Proof,
        roles: Sequence[str],
        build: Callable[[Case, Signer, datetime], Event | list[Event]],
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
        build: Callable[[Case, Signer, datetime], Event | list[Event]],
        *,
        archive: bool = True,
        session: SignatureMark | None = None,
    ) -> CaseView:
        """Judge and append one event (a sitting: its events, together) for a signer already
        established (after :meth:`signer`, or the ordering provider of an order from the
        hospital). With
        ``archive=False`` an ending case's records are left to :meth:`archive_pending` (the
        caller's transaction is still open: files must not be written for a step that may yet
        be rolled back)."""
        case_id = view.record.id
        expected_version = view.version
        case = view.case
        with phase("rules"):
            built = build(case, signer, self.clock.now())
        events = built if isinstance(built, list) else [built]
        proto = case.protocol
        # The event and, for a tablet's signature, its session's 11.200 state: one transaction.
        with phase("append"):  # includes its transaction's share of "commit"
            record = self.store.append(
                case_id,
                expected_version,
                events,
                protocol_version=proto.version,
                protocol_hash=proto.content_hash,
                state=case.state,
                # The due time is the case's (an order from the hospital may move it).
                scheduled_at=case.scheduled_at,
                session=session,
            )
        if case.state == "discontinued":
            course = self.store.get_course(record.course_id)
            if course.status == COURSE_ACTIVE:
                self.store.set_course_status(record.course_id, COURSE_DISCONTINUED)
        if case.closed and archive:
            return self.after_end(CaseView(record, case))
        return CaseView(record, case)

    def after_end(self, view: CaseView) -> CaseView:
        """The one place an ended case's records are made, once its closing event is committed
        (every closing path calls it: steps, sittings, side exits, orders that end a dose):
        handed to the records writer when this server has one (``case_records`` then says
        they are pending), else rendered, signed and archived now."""
        if self.archiver is None or not view.case.closed:
            return view
        case_id = view.record.id
        if self.records_later is not None:
            self.records_later.submit(case_id)
            return view
        try:
            with phase("records"):  # render, sign and archive the case's records
                self.archiver(view.case, self.store.case_chain_hash(case_id))
        except BedsideError as exc:
            # The closing step is committed and acknowledged: failing it now would tell the
            # nurse it was not signed. The case is "ended without records", which every
            # server start, `bedside run` and `archive catch-up` finish (and `archive
            # verify` reports), so the fault is logged loudly and returned with the view.
            log.error("case %s ended but its records were not made: %s", case_id, exc)
            return replace(view, archive_error=exc.message)
        return view

    def write_records_later(self, start: bool = True) -> RecordsWriter:
        """From now on, an ending case's records are made by a records writer thread just after
        its closing step answers (``bedside serve``); returns the writer, whose ``close`` a clean
        shutdown calls before the signing pool's. ``start=False``: submitted cases wait until
        its ``start`` (tests)."""
        writer = RecordsWriter(self.make_records)
        self.records_later = writer
        if start:
            writer.start()
        return writer

    def make_records(self, case_id: str) -> list[str]:
        """Render, sign and archive one ended case's records now, from its stored events (the
        hash chain checked as they load); returns their SHA-256s. Idempotent: records already
        archived are kept. Raises BedsideError when they cannot be made (NotFound: no
        signing material here)."""
        if self.archiver is None:
            raise NotFound(NO_SIGNING)
        view = self.load(case_id)
        if not view.case.closed:  # records are of ended cases only (never an open one's)
            raise StepRefused("case_open", f"case {case_id} has not ended: it has no records yet")
        return list(self.archiver(view.case, self.store.case_chain_hash(case_id)))

    def case_records(self, view: CaseView) -> CaseRecords:
        """Where this case's signed records stand: the one answer of the case page, the JSON
        API and the status the page polls. Archived once the administration record (archived
        last) is in the index; pending while a records writer makes them; else ended without
        records (failed)."""
        case_id = view.record.id
        if not view.case.closed:
            return CaseRecords(None, [])
        writer = self.records_later
        # Asked before the index: a case the writer finishes in between is then "pending" once
        # more (the next look finds it archived), never "failed".
        if writer is not None and writer.holds(case_id):
            return CaseRecords(RECORDS_PENDING, [])
        records = self.search_archive(case_id=case_id)
        if any(r.kind == ADMINISTRATION_RECORD for r in records):
            return CaseRecords(RECORDS_ARCHIVED, records)
        reason = (writer.failure(case_id) if writer else None) or view.archive_error
        if self.archiver is None:
            reason = reason or NO_SIGNING
        elif writer is not None and reason is None and self._just_ended(view):
            # Another server behind the same proxy may be making them (its writer, not ours).
            return CaseRecords(RECORDS_PENDING, records)
        return CaseRecords(RECORDS_FAILED, records, reason)

    def _just_ended(self, view: CaseView) -> bool:
        ended = view.case.events[-1].at if view.case.events else None
        return ended is not None and self.clock.now() - ended < RECORDS_GRACE

    def sign_step(
        self,
        case_id: str,
        expected_version: int,
        step_id: str,
        values: dict[str, Any],
        proof: Proof,
        photos: Mapping[str, bytes] | None = None,
        acknowledge_barcodes: bool = False,
        balance: Mapping[str, Mapping[str, str]] | None = None,
    ) -> CaseView:
        """Sign a step; ``photos`` are the images the step asks for, by photo id (the upload's
        bytes): each is checked (JPEG/PNG/WebP, size), stored write-once in the archive, its
        barcode read, and its SHA-256 signed into the step's event. A verifying step whose
        verified photos show a disagreeing barcode needs ``acknowledge_barcodes``.
        ``balance``: the readings of weights read from the balance, as the form sent them
        back (sealed by :meth:`read_balance_for`): their replies are kept in the event."""
        return self.sign_sitting(
            case_id,
            expected_version,
            [SittingEntry(step_id, values, photos, balance)],
            proof,
            acknowledge_barcodes,
        )

    def sign_sitting(
        self,
        case_id: str,
        expected_version: int,
        entries: Sequence[SittingEntry],
        proof: Proof,
        acknowledge_barcodes: bool = False,
    ) -> CaseView:
        """Sign one step, or the steps of a sitting (core/sittings.py: consecutive steps one
        person does at one sitting, declared by the protocol) with one signature: each step
        judged as when signed alone (its photos stored, its balance readings checked, the
        schedule checked again at the step that starts the infusion), all its events appended
        in one transaction, or none."""
        if not entries:
            raise StepRefused("missing_item", "steps: nothing to sign", field="steps")
        steps = [self._step(case_id, e.step_id) for e in entries]
        readings = [
            self.balance_readings(case_id, e.balance) if e.balance else None for e in entries
        ]
        refs = [
            self._store_photos(step, e.photos or {}) for step, e in zip(steps, entries, strict=True)
        ]
        by_step = {e.step_id: i for i, e in enumerate(entries)}

        def sign_one(
            case: Case,
            signer: Signer,
            now: datetime,
            step_id: str,
            values: Mapping[str, Any],
            sitting: Sequence[str],
        ) -> Event:
            i = by_step[step_id]
            if steps[i].starts_infusion and step_id in case.allowed_steps():
                self._check_schedule(case, now)
            return case.sign(
                step_id,
                values,
                signer,
                now,
                photos=refs[i],
                acknowledge_barcodes=acknowledge_barcodes,
                balance=readings[i],
                sitting=sitting,
            )

        def build(case: Case, signer: Signer, now: datetime) -> Event | list[Event]:
            if len(entries) == 1:
                return sign_one(case, signer, now, entries[0].step_id, entries[0].values, ())
            return sign_sitting(
                case,
                [(e.step_id, e.values) for e in entries],
                lambda sid, values, ids: sign_one(case, signer, now, sid, values, ids),
            )

        # A role that may sign every step of it (the protocol's sitting guarantees one).
        roles = common_roles(steps)
        try:
            return self._act(
                case_id, expected_version, proof, roles, build, step=entries[0].step_id
            )
        except StepRefused as exc:
            # A bag scanned for another dose: say whose it is (Bench.naming_the_bag).
            scanned = next(
                (e.values.get("bag_scan") for e in entries if e.values.get("bag_scan")), None
            )
            named = self.naming_the_bag(exc, scanned)
            if named is exc:
                raise
            raise named from exc

    def reject_step(
        self, case_id: str, expected_version: int, step_id: str, reason: str, proof: Proof
    ) -> CaseView:
        """The verifier sends ``step_id`` back with ``reason`` (core/rejection.py): its entries
        are superseded and the case returns to it, recorded as a signed event."""
        view = self.load(case_id)
        verifier = view.case.next_step()
        roles = verifier.roles if verifier is not None else ("pharmacist",)
        return self._act(
            case_id,
            expected_version,
            proof,
            roles,
            lambda c, s, now: c.reject(step_id, reason, s, now),
            step=verifier.id if verifier is not None else None,
        )

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
            try:
                self.make_records(case_id)
            except BedsideError as exc:
                log.error("case %s: records refused: %s", case_id, exc.message)
                refused[case_id] = exc.message
            else:
                done.append(case_id)
            if on_case is not None:
                on_case(n, len(pending), case_id)
        return CatchUp(done, refused)


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
        bedside.photos = archiver.photos
        if archiver.ready:
            bedside.archiver = archiver.archive_case
    return bedside
