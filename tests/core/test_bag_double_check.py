"""Issue 12.4: the bag label's code at both double checks. The code carries the drug, the dose
in IU and the final volume (AIs 93-95), the infusion time, the pump rate and the route (96-98,
protocol 1.7.0) besides case, dose and beyond-use time; scanning it fills those items from the
code (never from the plan), checked by the same core code as at the bedside; a typed value that
contradicts it is refused naming the item; an old code still parses, replays and fills nothing
it lacks; not scanned, every item is typed as before; the bedside step fills nothing."""

from __future__ import annotations

from dataclasses import replace
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
FILLED = {
    "drug_name",
    "dose_iu",
    "final_volume_ml",
    "beyond_use_at",
    "cycle",
    "dose_in_cycle",
    "infusion_minutes",
    "pump_rate_ml_per_h",
    "route",
}
ADMINISTRATION = {"infusion_minutes", "pump_rate_ml_per_h", "route"}


def at_first_check(protocol: Protocol) -> tuple[Case, FixedClock]:
    clock = FixedClock(NOW)
    case = open_case(protocol, clock)
    walk_until(case, "double_check_first", clock)
    clock.advance(minutes=40)
    return case, clock


def test_the_code_carries_what_the_label_prints_and_old_codes_still_parse() -> None:
    code = BagCode(
        "9f3c-1", 1, 3, datetime(2026, 11, 4, 6, 40, tzinfo=UTC), "aldesleukin",
        Decimal(40800000), Decimal("52.3"), Decimal(15), Decimal("209.1"), "intravenous",
    )  # fmt: skip
    text = bag_element_string(code)
    assert text == (
        "(7003)2611040640(91)9f3c-1(92)C1D3(93)aldesleukin(94)40800000(95)52.3"
        "(96)15(97)209.1(98)intravenous"
    )
    assert parse_bag_code(text) == code
    # As a keyboard scanner types it: FNC1 as the group separator, no parentheses.
    raw = (
        f"]d27003261104064091{code.case_id}{GROUP_SEPARATOR}92C1D3{GROUP_SEPARATOR}"
        f"93aldesleukin{GROUP_SEPARATOR}9440800000{GROUP_SEPARATOR}9552.3{GROUP_SEPARATOR}"
        f"9615{GROUP_SEPARATOR}97209.1{GROUP_SEPARATOR}98intravenous\r\n"
    )
    assert parse_bag_code(raw) == code
    # A code printed before protocol 1.6.0 (archived events replay it) has none of them.
    old = parse_bag_code("(7003)2611040640(91)9f3c-1(92)C1D3")
    assert (old.case_id, old.cycle, old.dose_in_cycle) == ("9f3c-1", 1, 3)
    assert old.drug is None and old.dose_iu is None and old.final_volume_ml is None
    # One printed under 1.6.0 carries the preparation but not the administration.
    older = parse_bag_code("(7003)2611040640(91)9f3c-1(92)C1D3(93)aldesleukin(94)40800000(95)52.3")
    assert older == replace(code, infusion_minutes=None, pump_rate_ml_per_h=None, route=None)
    with pytest.raises(StepRefused) as bad:
        parse_bag_code("(7003)2611040640(91)9f3c-1(92)C1D3(94)4.08E7")
    assert bad.value.reason == "unreadable" and "dose (94)" in bad.value.message
    with pytest.raises(StepRefused) as bad:
        parse_bag_code("(7003)2611040640(91)9f3c-1(92)C1D3(97)209,1")
    assert bad.value.reason == "unreadable" and "pump rate (97)" in bad.value.message


def test_a_scan_fills_what_the_code_carries_and_the_check_is_signed(protocol: Protocol) -> None:
    case, clock = at_first_check(protocol)
    step = protocol.step("double_check_first")
    assert step.checks_bag and set(bag_fills(step)) == FILLED
    values = values_for(case, "double_check_first", clock.now())
    # The walk types only what the code cannot say: the weight, the MRN, the date of birth.
    assert values["bag_entry"] == "scanned" and not FILLED & set(values)
    assert {"dosing_weight_kg", "patient_mrn", "patient_dob"} <= set(values)
    filled = complete_from_bag(case, step, values, clock.now())
    assert filled["drug_name"] == "aldesleukin" and filled["cycle"] == "1"
    plan = case.plan
    assert plan is not None and Decimal(filled["final_volume_ml"]) == round(plan.final_volume_ml, 1)
    assert filled["route"] == "intravenous" and filled["infusion_minutes"] == "15"
    # The rate as the label prints it (0.1 mL/h), not rounded again to the item's whole mL/h.
    assert filled["pump_rate_ml_per_h"] == str(round(plan.pump_rate_ml_per_h, 1)) == "209.1"
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


@pytest.mark.parametrize(
    ("item_id", "typed", "label"),
    [("infusion_minutes", "30", "Infusion time"), ("pump_rate_ml_per_h", "211", "Pump rate")],
)
def test_typed_minutes_or_rate_contradicting_the_code_are_refused(
    protocol: Protocol, item_id: str, typed: str, label: str
) -> None:
    case, clock = at_first_check(protocol)
    values = values_for(case, "double_check_first", clock.now())
    values[item_id] = typed
    with pytest.raises(StepRefused) as refused:
        case.sign("double_check_first", values, NURSE_A, clock.now())
    assert refused.value.reason == "scan_mismatch" and refused.value.field == item_id
    assert refused.value.message.startswith(f"{label}: entered")


def test_a_typed_whole_rate_is_the_codes_tenth_of_a_ml_per_hour(protocol: Protocol) -> None:
    # The code says 209.1 mL/h; the item takes whole mL/h and its comparison holds 209 to
    # half a unit: the same entry, not a mismatch.
    case, clock = at_first_check(protocol)
    values = values_for(case, "double_check_first", clock.now())
    assert parse_bag_code(values["bag_scan"]).pump_rate_ml_per_h == Decimal("209.1")
    values["pump_rate_ml_per_h"] = "209"
    event = case.sign("double_check_first", values, NURSE_A, clock.now())
    assert event.data["values"]["pump_rate_ml_per_h"] == "209"
    assert case.state == "double_check_second"


def test_the_filled_rate_is_not_rounded_twice(protocol: Protocol) -> None:
    # 63.45 kg: 208.46 mL/h planned, 208.5 on the label. Filled as 209 (the label's value
    # rounded again to whole mL/h) it would be 0.54 from the plan and the double check would
    # flag it; filled as the label prints it, both checks agree with the plan and each other.
    clock = FixedClock(NOW)
    case = open_case(protocol, clock, weight="63.45")
    plan = case.plan
    assert plan is not None and plan.pump_rate_ml_per_h == Decimal("208.46")
    walk_until(case, "pre_infusion", clock)
    first = case.current["double_check_first"].values
    assert first["pump_rate_ml_per_h"] == Decimal("208.5")
    assert case.difference_items == ()


def test_a_typed_route_contradicting_the_code_is_refused(protocol: Protocol) -> None:
    case, clock = at_first_check(protocol)
    values = values_for(case, "double_check_first", clock.now())
    code = replace(bag_code_of(case), route="subcutaneous")
    values["bag_scan"] = bag_element_string(code)
    values["route"] = "intravenous"
    with pytest.raises(StepRefused) as refused:
        case.sign("double_check_first", values, NURSE_A, clock.now())
    assert refused.value.reason == "scan_mismatch" and refused.value.field == "route"
    assert "Route: entered Intravenous, but the scanned bag label says subcutaneous" in (
        refused.value.message
    )


def test_an_older_code_fills_nothing_it_lacks_and_replays(protocol: Protocol) -> None:
    case, clock = at_first_check(protocol)
    values = values_for(case, "double_check_first", clock.now())
    old = replace(bag_code_of(case), infusion_minutes=None, pump_rate_ml_per_h=None, route=None)
    values["bag_scan"] = bag_element_string(old)
    filled = complete_from_bag(case, protocol.step("double_check_first"), values, clock.now())
    assert not ADMINISTRATION & {k for k, v in filled.items() if v}
    with pytest.raises(StepRefused) as refused:
        case.sign("double_check_first", values, NURSE_A, clock.now())
    assert refused.value.reason == "missing_item"
    typed = {k: v for k, v in label_values(case).items() if k in ADMINISTRATION}
    case.sign("double_check_first", values | typed, NURSE_A, clock.now())
    again = Case.replay(protocol, case.case_id, case.events)
    assert again.state == case.state == "double_check_second"
    assert again.current["double_check_first"].values["bag_scan"] == bag_element_string(old)


def test_the_bedside_step_fills_nothing_from_the_code(protocol: Protocol) -> None:
    # Before hanging the bag the rate is read off the pump: the code closes the loop there
    # and the rate stays typed, though the code carries one.
    case, clock = at_first_check(protocol)
    walk_until(case, "pre_infusion", clock)
    step = protocol.step("pre_infusion")
    assert step.checks_bag and bag_fills(step) == {}
    values = values_for(case, "pre_infusion", clock.now())
    del values["pump_rate_set_ml_per_h"]
    with pytest.raises(StepRefused) as refused:
        case.sign("pre_infusion", values, NURSE_A, clock.now())
    assert refused.value.reason == "missing_item"
    assert refused.value.field == "pump_rate_set_ml_per_h"
