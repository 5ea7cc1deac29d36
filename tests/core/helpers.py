"""Case-building helpers for the core tests: real protocol, real machine, injected clock."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

from workflow.core.clock import FixedClock
from workflow.core.events import Signer
from workflow.core.machine import Case, PatientRef
from workflow.core.protocol import Protocol
from workflow.core.protocol.model import Step
from workflow.core.schedule import NextDose
from workflow.dev.demo import signer_for
from workflow.dev.walk import TEST_PACE, label_values, order_values, values_for, walk_dose

PATIENT = PatientRef("p-1", "MRN-5521", "Ada Quist", date(1968, 5, 2))
PRESCRIBER = Signer("dr.okafor", "Dr. Amara Okafor", "prescriber")
PHARMACIST = Signer("p.lindqvist", "Per Lindqvist, PharmD", "pharmacist")
PHARMACIST_2 = Signer("p.osei", "Kofi Osei, PharmD", "pharmacist")
TECH = Signer("t.mensah", "Tomas Mensah, CPhT", "pharmacy_technician")
NURSE_A = Signer("n.alvarez", "Nadia Alvarez, RN", "nurse")
NURSE_B = Signer("n.chen", "Wei Chen, RN", "nurse")


def open_case(
    protocol: Protocol,
    clock: FixedClock,
    *,
    weight: str = "68",
    dose: NextDose | None = None,
    awaiting_resume: tuple[str, ...] = (),
    patient: PatientRef = PATIENT,
) -> Case:
    dose = dose or NextDose(1, 1, 1, clock.now(), None, 1)
    case, _ = Case.open(
        protocol,
        str(uuid.uuid4()),
        patient=patient,
        course_id="c-1",
        dose=dose,
        scheduled_at=clock.now() + timedelta(hours=2),
        actor=PRESCRIBER,
        at=clock.now(),
        awaiting_resume=awaiting_resume,
    )
    clock.advance(minutes=5)
    case.sign(
        "order", order_values(weight, clock.now() - timedelta(hours=2)), PRESCRIBER, clock.now()
    )
    return case


def sign(
    case: Case,
    step: str,
    clock: FixedClock,
    signer: Signer | None = None,
    minutes: float = 5,
    **overrides: Any,
) -> None:
    clock.advance(minutes=minutes)
    values = values_for(case, step, clock.now())
    values.update(overrides)
    values = {k: v for k, v in values.items() if v is not None}
    case.sign(step, values, signer or signer_for(step), clock.now())


def label_typed(case: Case, **changes: str) -> dict[str, Any]:
    """Overrides for a double check whose bag label was not scanned (a reason given): every
    value typed off the label, with ``changes`` (a misread value: a scanned code would refuse
    one it contradicts, so a checker who misreads the label is one who did not scan it)."""
    return {
        "bag_entry": "typed",
        "bag_typed_reason": "unreadable_label",
        "bag_scan": None,
        **label_values(case),
        **changes,
    }


def walk_until(case: Case, stop_before: str, clock: FixedClock) -> None:
    """Sign every step until the case reaches ``stop_before`` (5 minutes a step, 15 for the
    infusion), by the people the demo would ask."""

    def sign_step(step: Step, now: datetime, values: dict[str, Any]) -> None:
        case.sign(
            step.id, {k: v for k, v in values.items() if v is not None}, signer_for(step.id), now
        )

    walk_dose(case, clock, sign_step, pace=TEST_PACE, stop=stop_before)
    assert case.state == stop_before, case.state


def walk_all(case: Case, clock: FixedClock) -> None:
    walk_until(case, "completed", clock)
