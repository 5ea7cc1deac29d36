"""The archive index row of one case record, written alike by the archive and the seeder.

The archive writes it for a signed record; ``bedside dev seed`` for a placeholder (a case
walked in memory whose records are not rendered). One builder keeps the two rows the same:
the same dose label, the same lots, signed at the case's last event.
"""

from __future__ import annotations

from datetime import datetime

from workflow.core.machine import Case
from workflow.store import ArchivedRecord


def case_lots(case: Case) -> list[str]:
    """The lots identified on the case's scan steps (vial, diluent, bag), in step order."""
    lots = []
    for step_id, keys in (
        (step.id, tuple(f"{scan.kind}_lot" for scan in step.scans))
        for step in case.protocol.steps
        if step.scans
    ):
        entry = case.current.get(step_id)
        if entry is None:
            continue
        for key in keys:
            value = entry.values.get(key)
            if value:
                lots.append(str(value))
    return lots


def index_row(
    case: Case,
    *,
    kind: str,
    sha256: str,
    signers: list[str],
    path: str,
    created_at: datetime,
    events_sha256: str | None = None,
) -> ArchivedRecord:
    """The row that finds record ``kind`` of ``case`` by patient, MRN, dose, lots and signers."""
    assert case.patient is not None  # an opened case always has its patient
    return ArchivedRecord(
        sha256=sha256,
        case_id=case.case_id,
        kind=kind,
        patient_name=case.patient.name,
        mrn=case.patient.mrn,
        dose_label=f"cycle {case.cycle} dose {case.dose_in_cycle} "
        f"(course dose {case.dose_in_course})",
        cycle=case.cycle,
        signed_at=case.events[-1].at,
        lots=", ".join(case_lots(case)),
        signers="; ".join(signers),
        state=case.state,
        path=path,
        created_at=created_at,
        events_sha256=events_sha256,
    )
