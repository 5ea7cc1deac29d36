"""A complete, realistic dose walk with demo people and a demo patient.

Each step is signed by someone holding the role the protocol asks for, with values read off the
plan the way the team would read the bag label and the wristband; the clock moves as it would
on a ward (preparation, an hour out of the refrigerator, a 15-minute infusion, q8h).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from workflow.core.clock import FixedClock
from workflow.core.course import carried_holds, course_status
from workflow.core.dosing import fmt
from workflow.core.events import Event, Signer
from workflow.core.machine import Case, PatientRef
from workflow.core.protocol.model import Protocol
from workflow.core.schedule import earliest_time, next_dose
from workflow.dev.walk import course_attestations, order_values, values_for


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
# Minutes the clock moves before each step is signed.
_PACE = {
    "order_verification": 10,
    "eligibility": 5,
    "hold_checks": 20,
    "reconstitution": 15,
    "dilution": 10,
    "pharmacy_verification": 10,
    "double_check_first": 40,
    "double_check_second": 3,
    "pre_infusion": 5,
    "infusion_start": 2,
    "infusion_stop": 15,
    "observation": 30,
    "record_sign_off": 5,
}


def person(username: str) -> DemoPerson:
    return next(p for p in DEMO_PEOPLE if p.username == username)


def signer_for(step_id: str) -> Signer:
    return person(_SIGNERS[step_id]).signer()


def walk_dose(case: Case, clock: FixedClock, sink: Callable[[Event], None] | None = None) -> Case:
    """Sign every remaining step of ``case`` in order."""
    while not case.closed:
        step = case.next_step()
        if step is None:
            raise RuntimeError(f"demo walk stuck in state {case.state}")
        clock.advance(minutes=_PACE.get(step.id, 1))
        now = clock.now()
        event = case.sign(step.id, values_for(case, step.id, now), signer_for(step.id), now)
        if sink is not None:
            sink(event)
    return case


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
    status = course_status(cases)
    earliest = earliest_time(protocol, status)
    # Open the case about two hours before it is due: pharmacy needs the time to prepare.
    if earliest is not None:
        clock.set(max(clock.now(), earliest - timedelta(hours=2)))
    due = earliest or clock.now() + timedelta(hours=2)
    dose = next_dose(protocol, status, due)
    case, opened = Case.open(
        protocol,
        str(uuid.uuid4()),
        patient=patient,
        course_id=course_id,
        dose=dose,
        scheduled_at=due,
        actor=person("dr.okafor").signer(),
        at=clock.now(),
        awaiting_resume=carried_holds(cases),
    )
    if sink is not None:
        sink(opened)
    clock.advance(minutes=5)
    now = clock.now()
    order = case.sign(
        "order",
        order_values(weight_kg, now - timedelta(hours=3), fmt(protocol.dosing.dose_per_kg.value)),
        signer_for("order"),
        now,
    )
    if sink is not None:
        sink(order)
    return case


def run_in_memory(protocol: Protocol, doses: int, start: datetime) -> list[Case]:
    clock = FixedClock(start)
    cases: list[Case] = []
    course_id = "demo-course-1"
    for _ in range(doses):
        case = open_dose(protocol, cases, clock, course_id)
        cases.append(case)
        walk_dose(case, clock)
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
        case_id = view.case.case_id
        while not view.case.closed:
            step = view.case.next_step()
            if step is None:
                raise RuntimeError(f"demo walk stuck in state {view.case.state}")
            clock.advance(minutes=_PACE.get(step.id, 5))
            if step.id == "order":
                values = order_values(
                    weight_kg,
                    clock.now() - timedelta(hours=3),
                    fmt(bedside.protocol.dosing.dose_per_kg.value),
                )
            else:
                values = values_for(view.case, step.id, clock.now())
            view = bedside.sign_step(
                case_id, view.version, step.id, values, proof(_SIGNERS[step.id])
            )
        records = tuple(r.path for r in bedside.store.search_archive(case_id=case_id))
        c = view.case
        out.append(DemoDose(case_id, c.state, c.cycle, c.dose_in_cycle, c.dose_in_course, records))
        if on_dose is not None:
            on_dose(out[-1])
    return out
