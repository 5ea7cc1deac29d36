"""Courses and doses: starting a course (the prescriber's signed attestations, the retreatment
rule), opening a dose by the schedule rules, a course's next dose and the facts of a course a
form proposes. Part of :class:`workflow.service.Bedside`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from workflow.core.course import carried_holds, course_status
from workflow.core.course_start import (
    DEFAULT_ROLES,
    RetreatmentBlock,
    retreatment_block,
    start_record,
)
from workflow.core.errors import StepRefused
from workflow.core.events import Event, Signer
from workflow.core.machine import Case
from workflow.core.schedule import NextDose, earliest_time, next_dose
from workflow.service.base import ServiceBase
from workflow.service.views import OPENING_ROLES, CaseView, NextDue, Proof, patient_ref
from workflow.store import COURSE_ACTIVE, COURSE_DISCONTINUED, CaseRecord, Course
from workflow.store.web_sessions import SignatureMark

if TYPE_CHECKING:
    from workflow.service import Bedside


class Courses(ServiceBase):
    """Mixed into :class:`workflow.service.Bedside`: courses and opening doses."""

    def order_roles(self) -> tuple[str, ...]:
        """Who writes orders: whoever the protocol lets start a course or sign its first step
        (the order). The web lets these register patients, start courses and open doses."""
        spec = self.protocol.course_start
        first = self.protocol.step(self.protocol.initial)
        roles = [*(spec.roles if spec else DEFAULT_ROLES), *first.roles]
        return tuple(dict.fromkeys(roles))

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
        course = self.store.start_course(
            patient.id,
            protocol_id=p.id,
            protocol_version=p.version,
            protocol_hash=p.content_hash,
            start_record=record,
            session=self._mark(proof),
        )
        # Orders from the hospital that waited for this start open their doses now (every
        # door a prescriber starts a course by comes through here).
        from workflow.service.orders import open_pending_orders

        open_pending_orders(cast("Bedside", self), course)
        return course

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

    def next_dose(self, course_id: str, at: datetime) -> NextDose:
        course = self.store.get_course(course_id)
        self._course_active(course)
        status = course_status(self.course_cases(course_id), self.protocol.course_rules)
        return next_dose(self.protocol, status, at, self.tz)

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
