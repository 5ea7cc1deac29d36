"""Issue 12.4: the bag label's code at both double checks. The code carries the drug, the dose
in IU and the final volume (AIs 93-95) besides case, dose and beyond-use time; scanning it
fills those items from the code (never from the plan), checked by the same core code as at the
bedside; a typed value that contradicts it is refused naming the item; an old code still
parses; not scanned, every item is typed as before."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from workflow.core.bag_check import bag_code_of, bag_fills, complete_from_bag
from workflow.core.clock import FixedClock
from workflow.core.errors import StepRefused
from workflow.core.gs1 import GROUP_SEPARATOR, BagCode, bag_element_string, parse_bag_code
from workflow.core.machine import Case
from workflow.core.protocol import Protocol
from workflow.dev.walk import label_values, values_for

from .helpers import NURSE_A, PATIENT, open_case, walk_until

NOW = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
FILLED = {"drug_name", "dose_iu", "final_volume_ml", "beyond_use_at", "cycle", "dose_in_cycle"}


def at_first_check(protocol: Protocol) -> tuple[Case, FixedClock]:
    clock = FixedClock(NOW)
    case = open_case(protocol, clock)
    walk_until(case, "double_check_first", clock)
    clock.advance(minutes=40)
    return case, clock


def test_the_code_carries_what_the_label_prints_and_old_codes_still_parse() -> None:
    code = BagCode(
        "9f3c-1", 1, 3, datetime(2026, 11, 4, 6, 40, tzinfo=UTC), "aldesleukin",
        Decimal(40800000), Decimal("52.3"),
    )  # fmt: skip
    text = bag_element_string(code)
    assert text == ("(7003)2611040640(91)9f3c-1(92)C1D3(93)aldesleukin(94)40800000(95)52.3")
    assert parse_bag_code(text) == code
    # As a keyboard scanner types it: FNC1 as the group separator, no parentheses.
    raw = (
        f"]d27003261104064091{code.case_id}{GROUP_SEPARATOR}92C1D3{GROUP_SEPARATOR}"
        f"93aldesleukin{GROUP_SEPARATOR}9440800000{GROUP_SEPARATOR}9552.3\r\n"
    )
    assert parse_bag_code(raw) == code
    # A code printed before protocol 1.6.0 (archived events replay it) has none of them.
    old = parse_bag_code("(7003)2611040640(91)9f3c-1(92)C1D3")
    assert (old.case_id, old.cycle, old.dose_in_cycle) == ("9f3c-1", 1, 3)
    assert old.drug is None and old.dose_iu is None and old.final_volume_ml is None
    with pytest.raises(StepRefused) as bad:
        parse_bag_code("(7003)2611040640(91)9f3c-1(92)C1D3(94)4.08E7")
    assert bad.value.reason == "unreadable" and "dose (94)" in bad.value.message


def test_a_scan_fills_what_the_code_carries_and_the_check_is_signed(protocol: Protocol) -> None:
    case, clock = at_first_check(protocol)
    step = protocol.step("double_check_first")
    assert step.checks_bag and set(bag_fills(step)) == FILLED
    values = values_for(case, "double_check_first", clock.now())
    # The walk types only what the code cannot say: weight, minutes, rate, date of birth, MRN.
    assert values["bag_entry"] == "scanned" and not FILLED & set(values)
    assert {"dosing_weight_kg", "infusion_minutes", "pump_rate_ml_per_h", "patient_dob"} <= set(
        values
    )
    filled = complete_from_bag(case, step, values, clock.now())
    assert filled["drug_name"] == "aldesleukin" and filled["cycle"] == "1"
    plan = case.plan
    assert plan is not None and Decimal(filled["final_volume_ml"]) == round(plan.final_volume_ml, 1)
    event = case.sign("double_check_first", values, NURSE_A, clock.now())
    assert case.state == "double_check_second"
    # The filled values are on the record as entered values, compared as before.
    entered = event.data["values"]
    assert entered["drug_name"] == "aldesleukin" and entered["bag_entry"] == "scanned"
    assert Decimal(str(entered["dose_iu"])) == round(plan.dose_iu)


def test_a_typed_value_contradicting_the_code_is_refused_naming_the_item(
    protocol: Protocol,
) -> None:
    case, clock = at_first_check(protocol)
    values = values_for(case, "double_check_first", clock.now())
    values["dose_iu"] = "4000000"
    with pytest.raises(StepRefused) as refused:
        case.sign("double_check_first", values, NURSE_A, clock.now())
    assert refused.value.reason == "scan_mismatch" and refused.value.field == "dose_iu"
    assert "scanned bag label says" in refused.value.message
    # Typed as the label says (in its own precision) it is the same entry, and signs.
    values["dose_iu"] = label_values(case)["dose_iu"]
    case.sign("double_check_first", values, NURSE_A, clock.now())
    assert case.state == "double_check_second"


def test_another_doses_bag_at_a_double_check_is_refused_naming_both(protocol: Protocol) -> None:
    case, clock = at_first_check(protocol)
    other, other_clock = at_first_check(protocol)
    other_text = bag_element_string(bag_code_of(other))
    values = values_for(case, "double_check_first", clock.now())
    values["bag_scan"] = other_text
    with pytest.raises(StepRefused) as refused:
        case.sign("double_check_first", values, NURSE_A, clock.now())
    message = refused.value.message
    assert refused.value.reason == "wrong_bag" and refused.value.field == "bag_scan"
    assert f"bag: case {other.case_id}" in message and f"this dose: case {case.case_id}" in message
    assert PATIENT.name in message
    # The check asks for the dose number: the refusal says the bag's, never this dose's.
    assert "dose number not shown at an independent check" in message
    assert PATIENT.mrn not in message
    assert other_clock.now() == clock.now()


def test_an_unreadable_code_is_refused_before_any_item_is_called_missing(
    protocol: Protocol,
) -> None:
    case, clock = at_first_check(protocol)
    values = values_for(case, "double_check_first", clock.now())
    values["bag_scan"] = "(01)09312345678907(17)270531(10)PLK2291"
    with pytest.raises(StepRefused) as refused:
        case.sign("double_check_first", values, NURSE_A, clock.now())
    assert refused.value.reason == "unreadable" and refused.value.field == "bag_scan"


def test_not_scanned_every_item_is_typed_as_before(protocol: Protocol) -> None:
    case, clock = at_first_check(protocol)
    values = {k: v for k, v in values_for(case, "double_check_first", clock.now()).items()}
    values.update(bag_entry="typed", bag_typed_reason="unreadable_label")
    del values["bag_scan"]
    with pytest.raises(StepRefused) as refused:
        case.sign("double_check_first", values, NURSE_A, clock.now())
    assert refused.value.reason == "missing_item"  # nothing filled without a scan
    values.update(label_values(case))
    case.sign("double_check_first", values, NURSE_A, clock.now())
    assert case.state == "double_check_second"
