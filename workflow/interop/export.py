"""What the CLI and the JSON API export: cases read through the service, as FHIR bundles."""

from __future__ import annotations

from typing import Any

from workflow.core.errors import NotFound
from workflow.service import Bedside

from .fhir import bundle, case_resources
from .scan_report import scan_failure_report


def case_bundle(app: Bedside, case_id: str) -> dict[str, Any]:
    """One dose: its MedicationAdministration and a Provenance per signature."""
    view = app.load(case_id)
    chain = app.store.case_chain_hash(case_id)
    return bundle(case_resources(view.case, chain), app.clock.now())


def all_case_ids(app: Bedside) -> list[str]:
    return [r.id for r in app.store.list_cases()]


def patient_case_ids(app: Bedside, mrn: str) -> list[str]:
    patient = app.store.find_patient_by_mrn(mrn)
    if patient is None:
        raise NotFound(f"no patient with MRN {mrn}")
    return [r.id for r in app.store.list_cases(patient_id=patient.id)]


def scan_report(app: Bedside) -> dict[str, Any]:
    return scan_failure_report(app.load(i).case for i in all_case_ids(app))
