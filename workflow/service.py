"""The application service: the one place that joins protocol, case machine, people, store and
records. The command line and the web call this and nothing below it.

Every action follows the same path: load the case's events (hash-chain checked), replay them
into a Case, check who is signing (Part 11: id + password, or the password alone inside a
continuous session), let the Case judge and build the event, then append it with optimistic
concurrency (a stale version is a ConflictError and nothing is written). When a case ends, its
records are built, signed and archived.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from workflow.core.clock import Clock, SystemClock
from workflow.core.course import carried_holds, course_status
from workflow.core.course_start import DEFAULT_ROLES, retreatment_block, start_record
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
from workflow.core.protocol import Protocol, load_protocol
from workflow.core.protocol.overlay import load_overlay
from workflow.core.schedule import NextDose, next_dose
from workflow.identity import AuthRefused, Credentials, Identity, SessionPassword
from workflow.identity.errors import WRONG_ROLE
from workflow.resources import default_protocol_path
from workflow.settings import Settings
from workflow.store import (
    COURSE_ACTIVE,
    COURSE_DISCONTINUED,
    CaseRecord,
    Course,
    Patient,
    Store,
    pinning,
)
from workflow.timing import phase

Proof = Credentials | SessionPassword
log = logging.getLogger("bedside")

# The record every ended case gets, archived after any other (see unarchived_cases).
ADMINISTRATION_RECORD = "administration"

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
class CatchUp:
    """What archiving the pending cases did: the cases archived, and those refused (why)."""

    archived: list[str]
    refused: dict[str, str]


def patient_ref(patient: Patient) -> PatientRef:
    return PatientRef(patient.id, patient.mrn, patient.display_name, patient.date_of_birth)


class Bedside:
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
        self._saved_protocol = True

    # -- reading ---------------------------------------------------------------------------------
    def load(self, case_id: str) -> CaseView:
        record, events = self.store.load_case(case_id)
        case = Case.replay(self.protocol_for(record.protocol_hash), case_id, events)
        return CaseView(record, case)

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
        earlier = [
            case
            for course in self.store.list_courses(patient.id)
            for case in self.course_cases(course.id)
        ]
        block = retreatment_block(self.protocol, earlier)
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
        self._course_active(course)
        signer = self.signer(proof, OPENING_ROLES)
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
        record = self.store.create_case(
            opened,
            course_id=course_id,
            cycle=dose.cycle,
            dose_in_cycle=dose.dose_in_cycle,
            dose_in_course=dose.dose_in_course,
            scheduled_at=scheduled_at,
            state=case.state,
            protocol_version=self.protocol.version,
            protocol_hash=self.protocol.content_hash,
        )
        return CaseView(record, case)

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
        case = view.case
        with phase("rules"):
            event = build(case, signer, self.clock.now())
        proto = case.protocol
        with phase("append"):  # includes its transaction's share of "commit"
            record = self.store.append(
                case_id,
                expected_version,
                [event],
                protocol_version=proto.version,
                protocol_hash=proto.content_hash,
                state=case.state,
            )
        if case.state == "discontinued":
            course = self.store.get_course(record.course_id)
            if course.status == COURSE_ACTIVE:
                self.store.set_course_status(record.course_id, COURSE_DISCONTINUED)
        if case.closed and self.archiver is not None:
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

        archiver = Archive(home_path, store)
        if archiver.ready:
            bedside.archiver = archiver.archive_case
    return bedside
