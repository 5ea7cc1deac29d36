"""A complete, realistic dose walk with demo people and a demo patient.

Each step is signed by someone holding the role the protocol asks for, with values read off the
plan the way the team would read the bag label and the wristband; the clock moves as it would
on a ward (preparation, an hour out of the refrigerator, a 15-minute infusion, q8h).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from workflow.core.clock import FixedClock
from workflow.core.course import course_status
from workflow.core.dosing import fmt
from workflow.core.events import Event, Signer
from workflow.core.machine import Case, PatientRef
from workflow.core.protocol.model import Protocol, Step
from workflow.core.schedule import earliest_time
from workflow.dev.walk import (
    ServiceWalk,
    SignFn,
    course_attestations,
    open_next_dose,
    order_values,
    values_for,
    walk_dose,
)


@dataclass(frozen=True)
class DemoPerson:
    username: str
    name: str
    role: str

    def signer(self) -> Signer:
        return Signer(self.username, self.name, self.role)


DEMO_PEOPLE: tuple[DemoPerson, ...] = (
    DemoPerson("dr.okafor", "Dr. Amara Okafor", "prescriber"),
    DemoPerson("p.lindqvist", "Per Lindqvist, PharmD", "pharmacist"),
    DemoPerson("t.mensah", "Tomas Mensah, CPhT", "pharmacy_technician"),
    DemoPerson("n.alvarez", "Nadia Alvarez, RN", "nurse"),
    DemoPerson("n.chen", "Wei Chen, RN", "nurse"),
    DemoPerson("a.ibrahim", "Aisha Ibrahim", "auditor"),
)
DEMO_PATIENT = PatientRef("demo-patient-1", "MRN-000417", "Jordan Rivera", date(1971, 3, 14))
DEMO_WEIGHT_KG = "68"

# Which demo person signs each step (the verifier is never the preparer; two nurses check).
_SIGNERS = {
    "order": "dr.okafor",
    "order_verification": "p.lindqvist",
    "eligibility": "p.lindqvist",
    "hold_checks": "n.alvarez",
    "reconstitution": "t.mensah",
    "dilution": "t.mensah",
    "pharmacy_verification": "p.lindqvist",
    "double_check_first": "n.alvarez",
    "double_check_second": "n.chen",
    "pre_infusion": "n.alvarez",
    "infusion_start": "n.alvarez",
    "infusion_stop": "n.alvarez",
    "observation": "n.alvarez",
    "record_sign_off": "n.alvarez",
}


def person(username: str) -> DemoPerson:
    return next(p for p in DEMO_PEOPLE if p.username == username)


def signer_for(step_id: str) -> Signer:
    return person(_SIGNERS[step_id]).signer()


def open_dose(
    protocol: Protocol,
    cases: list[Case],
    clock: FixedClock,
    course_id: str,
    patient: PatientRef = DEMO_PATIENT,
    weight_kg: str = DEMO_WEIGHT_KG,
    sink: Callable[[Event], None] | None = None,
) -> Case:
    """Open the course's next dose at the earliest time the schedule allows, and order it."""
    case, events, _due = open_next_dose(
        protocol,
        cases,
        clock,
        course_id=course_id,
        patient=patient,
        prescriber=person("dr.okafor").signer(),
        weight_kg=weight_kg,
        dose_per_kg=fmt(protocol.dosing.dose_per_kg.value),
    )
    if sink is not None:
        for event in events:
            sink(event)
    return case


def _signs_as_demo_people(case: Case) -> SignFn:
    def sign(step: Step, now: datetime, values: dict[str, Any]) -> Event:
        return case.sign(step.id, values, signer_for(step.id), now)

    return sign


def run_in_memory(protocol: Protocol, doses: int, start: datetime) -> list[Case]:
    clock = FixedClock(start)
    cases: list[Case] = []
    course_id = "demo-course-1"
    for _ in range(doses):
        case = open_dose(protocol, cases, clock, course_id)
        cases.append(case)
        walk_dose(case, clock, _signs_as_demo_people(case), minutes=1)
    return cases


# -- the persistent demo: the same walk through the service, the store and the archive --------

DEMO_PASSWORD = "bedside-demo-2026"  # noqa: S105 - printed by `bedside demo`; demo accounts
DEMO_COURSE_MRN = DEMO_PATIENT.mrn


@dataclass(frozen=True)
class DemoDose:
    case_id: str
    state: str
    cycle: int
    dose_in_cycle: int
    dose_in_course: int
    records: tuple[str, ...]


def ensure_demo_people(bedside: Any) -> None:
    from workflow.core.errors import NotFound

    for p in DEMO_PEOPLE:
        try:
            bedside.identity.get_user(p.username)
        except NotFound:  # only an absent account is made; a store fault propagates as itself
            bedside.identity.add_user(p.username, p.name, [p.role], DEMO_PASSWORD, by="demo")


def ensure_demo_course(bedside: Any) -> str:
    """The demo patient's active course, starting a new one when the last one has ended."""
    from workflow.store import COURSE_ACTIVE, COURSE_COMPLETED

    store = bedside.store
    patient = store.find_patient_by_mrn(DEMO_PATIENT.mrn)
    if patient is None:
        family, given = "Rivera", "Jordan"
        patient = store.add_patient(
            mrn=DEMO_PATIENT.mrn,
            family_name=family,
            given_name=given,
            date_of_birth=DEMO_PATIENT.date_of_birth,
            created_by="demo",
        )
    for course in store.list_courses(patient.id):
        if course.status != COURSE_ACTIVE:
            continue
        cases = bedside.course_cases(course.id)
        status = course_status(cases)
        if len(status.given) >= int(bedside.protocol.schedule.max_doses_per_course.value):
            store.set_course_status(course.id, COURSE_COMPLETED)
            continue
        return str(course.id)
    from workflow.identity import Credentials

    # The demo prescriber attests what the protocol asks, and signs, as a real one would.
    attested = course_attestations(bedside.protocol)
    course = bedside.start_course(patient.id, Credentials("dr.okafor", DEMO_PASSWORD), attested)
    return str(course.id)


def run_persistent(
    bedside: Any,
    clock: FixedClock,
    doses: int,
    weight_kg: str = DEMO_WEIGHT_KG,
    on_dose: Callable[[DemoDose], object] | None = None,
) -> list[DemoDose]:
    """Walk ``doses`` complete doses through the service: every step authenticated, appended
    with its expected version, and the records archived when each case ends. ``on_dose`` hears
    of each dose as it ends (the command line's progress)."""
    from workflow.identity import Credentials

    ensure_demo_people(bedside)
    # A demo killed part-way (SIGKILL, power loss) left an ended case unarchived or a dose
    # open: finish both first, or the course could never take another dose.
    bedside.archive_pending()
    out: list[DemoDose] = []

    def proof(username: str) -> Credentials:
        return Credentials(username, DEMO_PASSWORD)

    def values(case: Case, step_id: str, now: datetime) -> dict[str, Any]:
        if step_id == "order":  # the service opened the case; the order is signed here
            dose_per_kg = fmt(bedside.protocol.dosing.dose_per_kg.value)
            return order_values(weight_kg, now - timedelta(hours=3), dose_per_kg)
        return values_for(case, step_id, now)

    for _ in range(doses):
        course_id = ensure_demo_course(bedside)
        cases = bedside.course_cases(course_id)
        unfinished = [c for c in cases if not c.closed]
        if unfinished:
            view = bedside.load(unfinished[0].case_id)
        else:
            earliest = earliest_time(bedside.protocol, course_status(cases), bedside.tz)
            if earliest is not None:
                clock.set(max(clock.now(), earliest - timedelta(hours=2)))
            due = earliest or clock.now() + timedelta(hours=2)
            view = bedside.open_case(course_id, due, proof("dr.okafor"))
        walk = ServiceWalk(bedside, view, proof, _SIGNERS)
        walk_dose(walk.case, clock, walk.sign, values=values)
        case_id, c = walk.view.case.case_id, walk.view.case
        records = tuple(r.path for r in bedside.store.search_archive(case_id=case_id))
        out.append(DemoDose(case_id, c.state, c.cycle, c.dose_in_cycle, c.dose_in_course, records))
        if on_dose is not None:
            on_dose(out[-1])
    return out
