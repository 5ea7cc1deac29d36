"""Entries a careful team would make for each step, read off the case's own plan.

Used by the demo and by tests that walk whole doses: every value comes from the plan, the
patient and the clock, exactly as the bag label and the wristband would show them, so a walk
exercises the same checks a real one does.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from workflow.core.dosing import fmt
from workflow.core.events import format_time
from workflow.core.gs1 import scan_to_values, typed_values
from workflow.core.machine import Case
from workflow.core.protocol.model import Protocol


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
    plan = case.plan
    patient = case.patient
    out: dict[str, Any] = {}
    for item in step.items:
        if item.must_be is True:  # attestations, an overlay's among them: a careful team ticks
            out[item.id] = True
        elif item.type == "choice" and item.required and len(item.options) == 1:
            out[item.id] = item.options[0].id  # the only answer: route, container, inspection
    if step_id == "eligibility":
        # Tests done well inside the protocol's window (a sixth of it: 15 days of 90), so an
        # overlay that shortens the window still gets a current result.
        window = int(case.protocol.eligibility.max_age.value)
        tested = (now - timedelta(days=max(1, window // 6))).date().isoformat()
        out.update(
            stress_test_result="normal",
            stress_test_date=tested,
            pft_result="normal",
            pft_date=tested,
        )
    elif step_id == "hold_checks":
        out.update(normal_checks())
    elif step_id == "reconstitution" and plan is not None:
        expiry = (now + timedelta(days=200)).date()
        out.update(_identified(case.protocol, "vial", "PLK2291", expiry, now))
        out.update(
            vial_count=str(plan.vials),
            diluent=case.protocol.dosing.reconstitution_diluent,
            diluent_lot="SW40812",
            diluent_expiry=expiry.isoformat(),
            diluent_volume_ml_per_vial=fmt(plan.reconstitution_volume_ml_per_vial),
            prepared_at=format_time(now),
        )
    elif step_id == "dilution" and plan is not None:
        bag_expiry = (now + timedelta(days=300)).date().isoformat()
        out.update(
            withdrawn_volume_ml=fmt(plan.reconstituted_volume_ml, 2),
            d5w_bag_volume_ml=fmt(plan.diluent_volume_ml, 0),
            d5w_lot="D5W7731",
            d5w_expiry=bag_expiry,
            final_volume_ml=fmt(plan.final_volume_ml, 1),
        )
    elif step_id in ("double_check_first", "double_check_second") and plan and patient:
        bud = case.beyond_use_at
        out.update(
            drug_name=case.protocol.drug,
            dose_iu=fmt(plan.dose_iu, 0).replace(",", ""),
            dosing_weight_kg=fmt(plan.weight_kg),
            final_volume_ml=fmt(plan.final_volume_ml, 1),
            infusion_minutes=fmt(plan.infusion_minutes),
            pump_rate_ml_per_h=fmt(plan.pump_rate_ml_per_h, 0).replace(",", ""),
            beyond_use_at=format_time(bud) if bud else "",
            patient_mrn=patient.mrn,
            patient_dob=patient.date_of_birth.isoformat(),
            cycle=str(case.cycle),
            dose_in_cycle=str(case.dose_in_cycle),
        )
    elif step_id == "pre_infusion" and plan and patient:
        out.update(
            patient_identifier_mrn=patient.mrn,
            patient_identifier_dob=patient.date_of_birth.isoformat(),
            pump_rate_set_ml_per_h=fmt(plan.pump_rate_ml_per_h, 0).replace(",", ""),
        )
    elif step_id == "infusion_stop":
        out["outcome"] = "completed"
        deviation = case.duration_deviation(now)
        if deviation:  # stopped early or late: the nurse says why (the protocol asks)
            out["duration_reason"] = f"Walker: {deviation}"
    elif step_id == "observation":
        out.update(sbp_mmhg="108", spo2_pct="96", vt_sustained_beats="0")
    return out


def course_attestations(protocol: Protocol) -> dict[str, bool]:
    """Every attestation the protocol's course start asks for, ticked (for demos, drills and
    tests: a real prescriber ticks each one having checked it)."""
    spec = protocol.course_start
    return {item.id: True for item in spec.items} if spec else {}
