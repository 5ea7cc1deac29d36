"""The blinding rule (workflow/core/blinding.py): what a viewer may not see of a case, read off the
protocol from who asks and the case's state."""

from __future__ import annotations

from datetime import date

import pytest

from workflow.core.blinding import (
    HEADER,
    PLAN,
    blinding_for,
    difference_labels,
    is_unprimed,
)
from workflow.core.clock import FixedClock
from workflow.core.errors import StepRefused
from workflow.core.machine import PatientRef
from workflow.core.protocol import Protocol

from .helpers import NURSE_A, NURSE_B, label_typed, open_case, sign, walk_until

NOBODY_BLINDED = (("prescriber",), ("auditor",), ("admin",), ("pharmacy_technician",))


def test_unprimed_steps_come_from_the_protocol(protocol: Protocol) -> None:
    unprimed = {s.id for s in protocol.steps if is_unprimed(protocol, s)}
    assert unprimed == {"double_check_first", "double_check_second", "pre_infusion"}
    # Compounding checks its entries against the plan too, but works from the plan: not blind.
    assert not is_unprimed(protocol, protocol.step("reconstitution"))


@pytest.mark.parametrize("state", ["double_check_first", "double_check_second"])
def test_both_checkers_are_blind_to_the_plan_identifiers_and_each_other(
    protocol: Protocol, clock: FixedClock, state: str
) -> None:
    case = open_case(protocol, clock)
    walk_until(case, state, clock)
    nurse = blinding_for(case, ["nurse"])
    assert nurse.at_steps == (state,)
    assert nurse.plan and nurse.hides("plan.pump_rate_ml_per_h")
    assert all(nurse.hides(ref) for ref in HEADER)
    assert nurse.hides("case.beyond_use_at")
    assert not nurse.hides("patient.name")  # the nurse must know whom to go to
    assert nurse.hides_entry("double_check_first") and nurse.hides_entry("double_check_second")
    # Values earlier entries carry that would give the hidden ones away.
    order, dilution, recon = (protocol.step(s) for s in ("order", "dilution", "reconstitution"))
    assert nurse.hides_value(order, order.items[0])  # the plan is computed from the order
    final_volume = dilution.item("final_volume_ml")
    assert final_volume is not None and nurse.hides_value(dilution, final_volume)
    prepared_at = recon.item("prepared_at")  # starts the beyond-use clock
    assert prepared_at is not None and nurse.hides_value(recon, prepared_at)
    lot = recon.item("vial_lot")
    assert lot is not None and not nurse.hides_value(recon, lot)
    # The pharmacist may be the second checker, not the first.
    assert bool(blinding_for(case, ["pharmacist"])) == (state == "double_check_second")
    for roles in NOBODY_BLINDED:
        assert not blinding_for(case, roles), roles


def test_pre_infusion_hides_what_it_asks_and_the_header(
    protocol: Protocol, clock: FixedClock
) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "pre_infusion", clock)
    nurse = blinding_for(case, ["nurse"])
    assert nurse.at_steps == ("pre_infusion",)
    assert nurse.hides("patient.mrn") and nurse.hides("patient.date_of_birth")
    assert nurse.hides("case.cycle") and nurse.hides("case.dose_in_cycle")  # one header block
    assert nurse.plan  # the rate set on the pump is read from the label
    assert not nurse.hides("case.beyond_use_at")  # not asked here
    assert not nurse.hides_entry("double_check_first")  # entries stay, their asked values go
    check = protocol.step("double_check_first")
    mrn, route = check.item("patient_mrn"), check.item("route")
    assert mrn is not None and route is not None
    assert nurse.hides_value(check, mrn) and not nurse.hides_value(check, route)
    assert not blinding_for(case, ["pharmacist"])


def test_nothing_is_hidden_before_or_after_the_checks(
    protocol: Protocol, clock: FixedClock
) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "reconstitution", clock)
    assert not blinding_for(case, ["pharmacy_technician", "pharmacist", "nurse"])
    walk_until(case, "infusion_start", clock)
    assert not blinding_for(case, ["nurse"])
    walk_until(case, "completed", clock)
    assert not blinding_for(case, ["nurse", "pharmacist"])


def _mismatch(protocol: Protocol, clock: FixedClock):  # type: ignore[no-untyped-def]
    case = open_case(protocol, clock)
    walk_until(case, "double_check_first", clock)
    sign(case, "double_check_first", clock, NURSE_A, **label_typed(case, pump_rate_ml_per_h="777"))
    sign(case, "double_check_second", clock, NURSE_B)
    return case


def test_after_a_mismatch_both_sides_are_blind_and_only_labels_are_named(
    protocol: Protocol, clock: FixedClock
) -> None:
    case = _mismatch(protocol, clock)
    assert case.state == "double_check_second_mismatch"
    nurse = blinding_for(case, ["nurse"])
    assert nurse.at_steps == ("double_check_first", "double_check_second")
    assert nurse.differences and PLAN in nurse.refs
    assert difference_labels(case) == ["Pump rate"]
    assert not blinding_for(case, ["prescriber"])


def test_refusals_name_items_never_the_values_to_find(
    protocol: Protocol, clock: FixedClock
) -> None:
    # The machine itself names items only: no path (web, API, command line) has a value to
    # redact (issue 11.3).
    case = _mismatch(protocol, clock)
    with pytest.raises(StepRefused) as mismatch:
        sign(case, "pre_infusion", clock, NURSE_A)
    assert mismatch.value.details == ("Pump rate",) and "777" not in mismatch.value.message
    case = open_case(protocol, clock)
    walk_until(case, "pre_infusion", clock)
    with pytest.raises(StepRefused) as refused:
        sign(case, "pre_infusion", clock, NURSE_A, patient_identifier_mrn="MRN-0000")
    assert "MRN-5521" not in refused.value.message
    assert refused.value.field == "patient_identifier_mrn"
    assert "does not match" in refused.value.message


def test_the_rule_imports_only_the_core() -> None:
    """The rule is core: it may not reach into web, CLI or store (DESIGN.md layers)."""
    import ast
    from pathlib import Path

    import workflow.core.blinding as module

    tree = ast.parse(Path(str(module.__file__)).read_text())
    ours: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            ours.add(node.module or "")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("workflow"):
            ours.add(str(node.module).removeprefix("workflow."))
        elif isinstance(node, ast.Import):
            ours |= {a.name for a in node.names if a.name.startswith("workflow")}
    assert ours == {"core.errors", "core.machine", "core.protocol.model"}, ours


def test_the_patients_other_open_dose_hides_the_same_values(
    protocol: Protocol, clock: FixedClock
) -> None:
    done = open_case(protocol, clock)
    walk_until(done, "completed", clock)
    at_check = open_case(protocol, clock)
    walk_until(at_check, "double_check_second", clock)
    borrowed = blinding_for(done, ["nurse"], [done, at_check])
    assert borrowed and borrowed.at_steps == () and borrowed.plan
    assert borrowed.hides("patient.mrn") and not borrowed.differences
    assert "another dose of this patient" in borrowed.checks[0]
    assert not blinding_for(done, ["prescriber"], [at_check])
    stranger = open_case(
        protocol, clock, patient=PatientRef("p-2", "MRN-1", "Bo Lund", date(1950, 1, 1))
    )
    assert not blinding_for(stranger, ["nurse"], [at_check])
