"""The one dose walker, and the entries a careful team would make for each step.

Used by the demo, the seeder and the tests that walk whole doses: every value comes from the
plan, the patient and the clock, exactly as the bag label and the wristband would show them, so
a walk exercises the same checks a real one does. ``open_next_dose`` opens a course's next dose
and signs its order; ``walk_dose`` signs the steps that remain, the clock moving at ward pace.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from workflow.core.bag_check import bag_code_of, bag_fills
from workflow.core.clock import FixedClock
from workflow.core.course import carried_holds, course_status
from workflow.core.dosing import DosePlan, fmt
from workflow.core.events import Event, Signer, format_time
from workflow.core.gs1 import bag_element_string, scan_to_values, typed_values
from workflow.core.machine import Case, PatientRef
from workflow.core.protocol.model import Protocol, Step
from workflow.core.schedule import earliest_time, next_dose

# Minutes the clock moves before each step is signed, as on a ward: preparation, an hour out of
# the refrigerator before the double check, a 15-minute infusion, half an hour's observation.
PACE: Mapping[str, int] = {
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

# The tests' pace: 5 minutes a step (walk_dose's default), 15 for the infusion.
TEST_PACE: Mapping[str, int] = {"infusion_stop": 15}

# Signs one step: (step, the time, the entries) -> anything (an event, a service view).
SignFn = Callable[[Step, datetime, dict[str, Any]], object]
# Takes a turn instead of the next signature (a hold, a cancel, an assessment); True if it did.
# Its step is None while the case is on hold.
InterveneFn = Callable[[Case, Step | None], bool]


@cache
def _shipped_dose_per_kg() -> str:
    from workflow.core.protocol.loader import load_protocol
    from workflow.resources import default_protocol_path

    return fmt(load_protocol(default_protocol_path()).dosing.dose_per_kg.value)


def order_values(
    weight_kg: str,
    measured_at: datetime,
    dose_per_kg: str | None = None,
    source: str = "standing_scale",
) -> dict[str, Any]:
    """The prescriber's order; the dose per kg is the protocol's label dose unless given (pass
    ``fmt(protocol.dosing.dose_per_kg.value)`` for another protocol than the shipped one)."""
    return {
        "dose_iu_per_kg": dose_per_kg if dose_per_kg is not None else _shipped_dose_per_kg(),
        "dosing_weight_kg": weight_kg,
        "weight_source": source,
        "weight_measured_at": format_time(measured_at),
    }


def normal_checks() -> dict[str, Any]:
    return {
        "sbp_mmhg": "112",
        "spo2_pct": "97",
        "mental_status": "normal",
        "lethargy": "none",
        "rhythm": "normal_sinus_rhythm",
        "vt_sustained_beats": "0",
        "ischemia_or_chest_pain": False,
    }


def _identified(
    protocol: Protocol, kind: str, lot: str, expiry: date, now: datetime
) -> dict[str, Any]:
    """Scanned when the formulary lists a vial (the code built as a scanner types it: GTIN,
    expiry, lot), else typed in with the reason a pharmacy would give: the shipped protocol
    lists no product, so every scan would be refused as an unknown product."""
    product = next((p for p in protocol.formulary if p.kind == kind), None)
    if product is None:
        reasons = protocol.step(protocol.scan_steps()[kind]).item(f"{kind}_typed_reason")
        # A case pinned to a protocol version older than the reason code (1.1.0) says so.
        known = reasons is not None and "unknown_product" in reasons.option_ids()
        reason = "unknown_product" if known else "no_barcode"
        return typed_values(protocol, kind, lot=lot, expiry=expiry.isoformat(), reason=reason)
    return scan_to_values(protocol, kind, f"01{product.gtin}17{expiry:%y%m%d}10{lot}", now)


def values_for(case: Case, step_id: str, now: datetime) -> dict[str, Any]:
    """Correct entries for ``step_id`` given what the case knows now."""
    step = case.protocol.step(step_id)
    out: dict[str, Any] = {}
    for item in step.items:
        if item.must_be is True:  # attestations, an overlay's among them: a careful team ticks
            out[item.id] = True
        elif item.type == "choice" and item.required and len(item.options) == 1:
            out[item.id] = item.options[0].id  # the only answer: route, container, inspection
    if step.checks_bag and case.beyond_use_at is not None:
        # The label's code, as the scanner reads it off the bag (the human-readable form).
        out.update(bag_entry="scanned", bag_scan=bag_element_string(bag_code_of(case)))
    if step_id == "eligibility":
        out.update(_eligibility_values(case, now))
    elif step_id == "hold_checks":
        out.update(normal_checks())
    elif step_id == "reconstitution" and case.plan is not None:
        out.update(_reconstitution_values(case, case.plan, now))
    elif step_id == "dilution" and case.plan is not None:
        out.update(_dilution_values(case.plan, now))
    elif step_id in ("double_check_first", "double_check_second") and case.plan and case.patient:
        out.update(label_values(case))
        if out.get("bag_entry") == "scanned":
            # The label's code fills what it carries (bag_check.complete_from_bag): not typed,
            # the route's one-option tap included.
            for item_id in bag_fills(step):
                out.pop(item_id, None)
    elif step_id == "pre_infusion" and case.plan and case.patient:
        out.update(
            patient_identifier_mrn=case.patient.mrn,
            patient_identifier_dob=case.patient.date_of_birth.isoformat(),
            pump_rate_set_ml_per_h=fmt(case.plan.pump_rate_ml_per_h, 0).replace(",", ""),
        )
    elif step_id == "infusion_stop":
        out["outcome"] = "completed"
        deviation = case.duration_deviation(now)
        if deviation:  # stopped early or late: the nurse says why (the protocol asks)
            out["duration_reason"] = f"Walker: {deviation}"
    elif step_id == "observation":
        out.update(sbp_mmhg="108", spo2_pct="96", vt_sustained_beats="0")
    return out


def _eligibility_values(case: Case, now: datetime) -> dict[str, Any]:
    # Tests done well inside the protocol's window (a sixth of it: 15 days of 90), so an
    # overlay that shortens the window still gets a current result.
    window = int(case.protocol.eligibility.max_age.value)
    tested = (now - timedelta(days=max(1, window // 6))).date().isoformat()
    return {
        "stress_test_result": "normal",
        "stress_test_date": tested,
        "pft_result": "normal",
        "pft_date": tested,
    }


def _reconstitution_values(case: Case, plan: DosePlan, now: datetime) -> dict[str, Any]:
    expiry = (now + timedelta(days=200)).date()
    out = _identified(case.protocol, "vial", "PLK2291", expiry, now)
    out.update(
        vial_count=str(plan.vials),
        diluent=case.protocol.dosing.reconstitution_diluent,
        diluent_lot="SW40812",
        diluent_expiry=expiry.isoformat(),
        diluent_volume_ml_per_vial=fmt(plan.reconstitution_volume_ml_per_vial),
        prepared_at=format_time(now),
    )
    return out


def _dilution_values(plan: DosePlan, now: datetime) -> dict[str, Any]:
    return {
        "withdrawn_volume_ml": fmt(plan.reconstituted_volume_ml, 2),
        "d5w_bag_volume_ml": fmt(plan.diluent_volume_ml, 0),
        "d5w_lot": "D5W7731",
        "d5w_expiry": (now + timedelta(days=300)).date().isoformat(),
        "final_volume_ml": fmt(plan.final_volume_ml, 1),
    }


def label_values(case: Case) -> dict[str, Any]:
    """Every value a double check asks for, as the bag label and the wristband show it. A
    checker who scans the label types only those its code does not carry (``values_for``)."""
    plan, patient = case.plan, case.patient
    if plan is None or patient is None:
        return {}
    bud = case.beyond_use_at
    # The label prints the route's word; the checker taps its option (older protocol texts
    # name no route id: values_for taps the one option instead).
    route = {"route": case.protocol.route} if case.protocol.route else {}
    return route | {
        "drug_name": case.protocol.drug,
        "dose_iu": fmt(plan.dose_iu, 0).replace(",", ""),
        "dosing_weight_kg": fmt(plan.weight_kg),
        "final_volume_ml": fmt(plan.final_volume_ml, 1),
        "infusion_minutes": fmt(plan.infusion_minutes),
        "pump_rate_ml_per_h": fmt(plan.pump_rate_ml_per_h, 0).replace(",", ""),
        "beyond_use_at": format_time(bud) if bud else "",
        "patient_mrn": patient.mrn,
        "patient_dob": patient.date_of_birth.isoformat(),
        "cycle": str(case.cycle),
        "dose_in_cycle": str(case.dose_in_cycle),
    }


def course_attestations(protocol: Protocol) -> dict[str, bool]:
    """Every attestation the protocol's course start asks for, ticked (for demos, drills and
    tests: a real prescriber ticks each one having checked it)."""
    spec = protocol.course_start
    return {item.id: True for item in spec.items} if spec else {}


def open_next_dose(
    protocol: Protocol,
    cases: list[Case],
    clock: FixedClock,
    *,
    course_id: str,
    patient: PatientRef,
    prescriber: Signer | Callable[[], Signer],
    weight_kg: str,
    dose_per_kg: str | None = None,
    ward: str = "unassigned",
) -> tuple[Case, list[Event], datetime]:
    """Open the course's next dose two hours before the schedule allows it (pharmacy needs the
    time to prepare) and sign its order; returns the case, its two events and the due time.
    ``prescriber`` may be a choice made only once the schedule allows the dose (the seeder
    draws one at random, and a refused dose must draw nothing)."""
    status = course_status(cases)
    earliest = earliest_time(protocol, status)
    if earliest is not None:
        clock.set(max(clock.now(), earliest - timedelta(hours=2)))
    due = earliest or clock.now() + timedelta(hours=2)
    dose = next_dose(protocol, status, due)
    if not isinstance(prescriber, Signer):
        prescriber = prescriber()
    case, opened = Case.open(
        protocol,
        str(uuid.uuid4()),
        patient=patient,
        course_id=course_id,
        dose=dose,
        scheduled_at=due,
        actor=prescriber,
        at=clock.now(),
        awaiting_resume=carried_holds(cases),
        ward=ward,
    )
    clock.advance(minutes=5)
    now = clock.now()
    values = order_values(weight_kg, now - timedelta(hours=3), dose_per_kg)
    return case, [opened, case.sign("order", values, prescriber, now)], due


class ServiceWalk:
    """One dose walked through the service (``Bedside``, passed untyped: this module stays
    free of the store): each signature hands back the case's new view. ``signers`` names
    who signs each step and ``proof`` gives that person's credentials."""

    def __init__(
        self,
        bedside: Any,
        view: Any,
        proof: Callable[[str], Any],
        signers: Mapping[str, str],
    ) -> None:
        self.bedside = bedside
        self.view = view
        self.proof = proof
        self.signers = signers

    def case(self) -> Case:
        case: Case = self.view.case
        return case

    def sign(self, step: Step, _now: datetime, values: dict[str, Any]) -> None:
        proof = self.proof(self.signers[step.id])
        case_id = self.view.case.case_id
        self.view = self.bedside.sign_step(case_id, self.view.version, step.id, values, proof)


def walk_dose(
    current: Case | Callable[[], Case],
    clock: FixedClock,
    sign: SignFn,
    *,
    minutes: int = 5,
    pace: Mapping[str, int] = PACE,
    stop: str | None = None,
    values: Callable[[Case, str, datetime], dict[str, Any]] = values_for,
    intervene: InterveneFn | None = None,
    turns: int = 1000,
) -> None:
    """Sign the case's remaining steps in order until it ends (or reaches state ``stop``).

    ``current`` is the case, or gives it as it stands (a service hands back a new view after
    each signature); the clock moves ``pace`` minutes (``minutes`` for a step not listed) before
    each step; ``values`` gives its entries and ``sign`` signs them. ``intervene`` may take a
    turn instead (the seeder's holds, cancels and wastes)."""

    def now_case() -> Case:
        return current if isinstance(current, Case) else current()

    for _ in range(turns):
        case = now_case()
        if case.closed or (stop is not None and case.state == stop):
            return
        step = None if case.on_hold else case.next_step()
        if intervene is not None and intervene(case, step):
            continue
        if step is None:
            raise RuntimeError(f"dose walk stuck in state {case.state}")
        clock.advance(minutes=pace.get(step.id, minutes))
        now = clock.now()
        sign(step, now, values(case, step.id, now))
    raise RuntimeError(f"dose walk did not end (state {now_case().state})")
