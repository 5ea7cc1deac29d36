"""FHIR R4 export: every way a dose can end maps to its MedicationAdministration status, and
every resource validates with fhir.resources (R4B models, the same as R4 for these elements)."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.provenance import Provenance

from interop.support import (
    clock_of,
    given_dose,
    held_and_skipped,
    installation,
    new_course,
    next_slot,
    open_and_order,
    step,
    walk,
    who,
)
from workflow.core.protocol import Protocol
from workflow.interop.export import case_bundle
from workflow.interop.fhir import administration_status, medication_administration, provenances
from workflow.service import Bedside, CaseView


def validated(app: Bedside, view: CaseView) -> dict[str, Any]:
    ma = medication_administration(view.case, app.store.case_chain_hash(view.case.case_id))
    MedicationAdministration.model_validate(ma)
    for p in provenances(view.case):
        Provenance.model_validate(p)
    Bundle.model_validate(case_bundle(app, view.case.case_id))
    return ma


def test_completed_dose(db_url: str, protocol: Protocol) -> None:
    with installation(db_url, protocol) as app:
        view = given_dose(app, new_course(app))
        ma = validated(app, view)
        assert ma["status"] == "completed"
        assert ma["effectivePeriod"]["start"] < ma["effectivePeriod"]["end"]
        functions = {p["function"]["coding"][0]["code"] for p in ma["performer"]}
        assert functions == {"performer", "verifier"}
        assert ma["dosage"]["rateQuantity"]["code"] == "mL/h"
        assert ma["dosage"]["rateQuantity"]["system"] == "http://unitsofmeasure.org"
        plan = view.case.plan
        assert plan is not None
        assert ma["dosage"]["dose"]["value"] == int(plan.dose_iu)
        assert ma["dosage"]["rateQuantity"]["value"] == pytest.approx(
            float(plan.pump_rate_ml_per_h)
        )
        ids = {i["system"]: i["value"] for i in ma["identifier"]}
        assert ids["urn:bedside:case"] == view.case.case_id
        assert ids["urn:bedside:case-chain-sha256"] == app.store.case_chain_hash(view.case.case_id)
        signatures = [e for e in view.case.events if e.meaning]
        provs = provenances(view.case)
        assert len(provs) == len(signatures)
        assert provs[0]["entity"][0]["what"]["identifier"]["value"] == signatures[0].content_hash()
        assert "sha256" in ma["note"][0]["text"]


def test_stopped_early(db_url: str, protocol: Protocol) -> None:
    with installation(db_url, protocol) as app:
        view = given_dose(app, new_course(app), outcome="stopped_early")
        assert validated(app, view)["status"] == "stopped"


def test_in_progress_while_infusing(db_url: str, protocol: Protocol) -> None:
    with installation(db_url, protocol) as app:
        view = walk(app, open_and_order(app, new_course(app)), until="infusion_stop")
        ma = validated(app, view)
        assert ma["status"] == "in-progress"
        assert "end" not in ma["effectivePeriod"]


def test_on_hold_with_the_rule_as_reason(db_url: str, protocol: Protocol) -> None:
    with installation(db_url, protocol) as app:
        view = walk(app, open_and_order(app, new_course(app)), until="hold_checks")
        view = step(app, view, spo2_pct="86")
        ma = validated(app, view)
        assert ma["status"] == "on-hold"
        assert ma["statusReason"][0]["coding"][0]["code"] == "spo2_below_90"
        assert "effectiveDateTime" in ma


def test_not_done_after_a_hold(db_url: str, protocol: Protocol) -> None:
    with installation(db_url, protocol) as app:
        view = held_and_skipped(app, new_course(app), lethargy="moderate")
        ma = validated(app, view)
        assert ma["status"] == "not-done"
        codes = [r["coding"][0]["code"] for r in ma["statusReason"]]
        assert codes == ["lethargy_moderate_or_severe", "dose_skipped_after_hold"]


def test_entered_in_error(db_url: str, protocol: Protocol) -> None:
    with installation(db_url, protocol) as app:
        view = open_and_order(app, new_course(app))
        clock_of(app).advance(minutes=2)
        view = app.side_exit(
            view.case.case_id,
            view.version,
            "cancel",
            "order_error",
            "wrong patient",
            who("dr.okafor"),
        )
        ma = validated(app, view)
        assert ma["status"] == "entered-in-error"
        assert administration_status(view.case) == "entered-in-error"


def test_stopped_when_the_case_ends_during_the_infusion(db_url: str, protocol: Protocol) -> None:
    with installation(db_url, protocol) as app:
        view = walk(app, open_and_order(app, new_course(app)), until="infusion_stop")
        clock_of(app).advance(minutes=4)
        view = app.side_exit(
            view.case.case_id, view.version, "waste", "damaged_or_dropped", "line", who("n.alvarez")
        )
        assert validated(app, view)["status"] == "stopped"


def test_second_dose_exports_too(db_url: str, protocol: Protocol) -> None:
    with installation(db_url, protocol) as app:
        course = new_course(app)
        given_dose(app, course)
        next_slot(app, course)
        view = given_dose(app, course)
        assert validated(app, view)["status"] == "completed"
