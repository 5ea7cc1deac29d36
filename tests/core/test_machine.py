"""The case machine walks the clinical scenarios (shared/scenarios.md) end to end in memory."""

from __future__ import annotations

import gc
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from workflow.core.clock import FixedClock
from workflow.core.course import carried_holds, course_status
from workflow.core.errors import StepRefused
from workflow.core.events import Signer
from workflow.core.machine import Case, machine_for
from workflow.core.protocol import Protocol, load_protocol
from workflow.core.schedule import NextDose, next_dose
from workflow.dev.walk import order_values

from .helpers import (
    NURSE_A,
    NURSE_B,
    PATIENT,
    PHARMACIST,
    PHARMACIST_2,
    PRESCRIBER,
    TECH,
    label_typed,
    open_case,
    sign,
    walk_all,
    walk_until,
)


def refused(fn: object, *args: object, **kwargs: object) -> StepRefused:
    with pytest.raises(StepRefused) as exc:
        fn(*args, **kwargs)  # type: ignore[operator]
    return exc.value


def test_routine_dose_scenario_1(protocol: Protocol, clock: FixedClock) -> None:
    case = open_case(protocol, clock, weight="68")
    walk_all(case, clock)
    assert case.state == "completed"
    assert case.given
    plan = case.plan
    assert plan is not None and plan.vials == 2 and plan.diluent_volume_ml == 50
    signed = {e.step: e.signer.role for e in case.current.values()}
    for step in case.walk_steps():
        assert signed[step.id] in step.roles
    assert case.current["double_check_first"].signer != case.current["double_check_second"].signer
    assert case.flags == []
    # Replaying the same events gives the same state, entries and flags.
    again = Case.replay(protocol, case.case_id, case.events)
    assert again.state == case.state
    assert {k: v.values for k, v in again.current.items()} == {
        k: v.values for k, v in case.current.items()
    }


def test_steps_out_of_order_are_refused(protocol: Protocol, clock: FixedClock) -> None:
    case = open_case(protocol, clock)
    err = refused(sign, case, "reconstitution", clock)
    assert err.reason == "out_of_order" and err.exit_code == 1
    err = refused(sign, case, "infusion_start", clock)
    assert err.reason == "out_of_order"
    assert case.state == "order_verification" and case.version == 2


def test_wrong_role_is_refused(protocol: Protocol, clock: FixedClock) -> None:
    case = open_case(protocol, clock)
    err = refused(sign, case, "order_verification", clock, signer=NURSE_A)
    assert err.reason == "role_not_allowed" and "pharmacist" in err.message


def test_out_of_bounds_item_is_refused_and_changes_nothing(
    protocol: Protocol, clock: FixedClock
) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "hold_checks", clock)
    before = (case.state, case.version)
    err = refused(sign, case, "hold_checks", clock, spo2_pct="140")
    assert err.field == "spo2_pct" and err.exit_code == 2 and "0 to 100" in err.message
    err = refused(sign, case, "hold_checks", clock, spo2_pct=None)
    assert err.reason == "missing_item" and err.field == "spo2_pct"
    err = refused(sign, case, "hold_checks", clock, colour="blue")
    assert err.reason == "unknown_item"
    assert (case.state, case.version) == before


def test_hypoxia_holds_until_prescriber_then_recheck_scenario_4(
    protocol: Protocol, clock: FixedClock
) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "hold_checks", clock)
    sign(case, "hold_checks", clock, spo2_pct="88")
    assert case.state == "held"
    (hold,) = case.active_holds
    assert hold.rule_id == "spo2_below_90" and hold.source == "label_current"
    assert hold.values["spo2_pct"] == "88"
    # Nothing can be prepared while held.
    err = refused(sign, case, "reconstitution", clock)
    assert err.reason == "case_held" and "prescriber" in err.message
    # Only a prescriber may resume.
    err = refused(case.resume, NURSE_A, clock.now(), "criteria_met")
    assert err.reason == "role_not_allowed"
    clock.advance(hours=8)
    case.resume(PRESCRIBER, clock.now(), "criteria_met", "Recheck at next scheduled time")
    assert case.state == "hold_checks"
    # SpO2 exactly 90 does not meet "until > 90%".
    sign(case, "hold_checks", clock, spo2_pct="90")
    assert case.state == "held"
    assert case.active_holds[0].reason == "resume_not_met"
    case.resume(PRESCRIBER, clock.now(), "criteria_met")
    sign(case, "hold_checks", clock, spo2_pct="95")
    assert case.state == "reconstitution"
    walk_all(case, clock)
    assert case.state == "completed"
    kinds = [h["kind"] for h in case.hold_log]
    assert kinds == ["held", "resumed", "held", "resumed", "cleared"]


def test_lethargy_holds_scenario_5(protocol: Protocol, clock: FixedClock) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "hold_checks", clock)
    sign(case, "hold_checks", clock, lethargy="moderate")
    assert case.state == "held"
    assert case.active_holds[0].rule_id == "lethargy_moderate_or_severe"
    assert case.active_holds[0].source == "label_old"


def test_sustained_vt_discontinues_the_course_scenario_6(
    protocol: Protocol, clock: FixedClock
) -> None:
    first = open_case(protocol, clock)
    walk_until(first, "infusion_stop", clock)
    # During the infusion: 7 beats of sustained VT.
    clock.advance(minutes=6)
    first.assess({"vt_sustained_beats": "7"}, NURSE_A, clock.now())
    assert first.state == "discontinued"
    assert "sustained_vt" in first.end["note"]  # type: ignore[index]
    status = course_status([first])
    err = refused(next_dose, protocol, status, clock.now() + timedelta(hours=8))
    assert err.reason == "course_discontinued" and "sustained_vt" in err.message


def test_positive_fobt_holds_until_negative_across_doses_scenario_7(
    protocol: Protocol, clock: FixedClock
) -> None:
    first = open_case(protocol, clock)
    walk_until(first, "hold_checks", clock)
    sign(first, "hold_checks", clock, occult_blood="positive")
    assert first.state == "held"
    first.cancel(PRESCRIBER, clock.now(), "dose_skipped_after_hold")
    carried = carried_holds([first])
    assert carried == ["occult_blood_positive"]
    clock.advance(hours=8)
    second = open_case(protocol, clock, awaiting_resume=tuple(carried))
    walk_until(second, "hold_checks", clock)
    # No FOBT result: the step asks for it by name instead of holding the dose again in silence.
    version = second.version
    err = refused(sign, second, "hold_checks", clock)
    assert err.reason == "missing_item" and err.field == "occult_blood"
    assert "Fecal occult blood" in err.message and "withhold until negative" in err.message
    assert second.version == version
    sign(second, "hold_checks", clock, occult_blood="not_done")  # not a negative result
    assert second.state == "held"
    assert second.active_holds[0].reason == "resume_not_met"
    second.resume(PRESCRIBER, clock.now(), "criteria_met")
    sign(second, "hold_checks", clock, occult_blood="negative")
    assert second.state == "reconstitution"
    assert carried_holds([first, second]) == []


def test_expired_vial_is_refused_and_typed_vial_needs_a_reason_scenario_10(
    protocol: Protocol, clock: FixedClock
) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "reconstitution", clock)
    yesterday = (clock.now() - timedelta(days=1)).date().isoformat()
    err = refused(sign, case, "reconstitution", clock, vial_expiry=yesterday)
    assert err.reason == "expired" and err.field == "vial_expiry"
    err = refused(sign, case, "reconstitution", clock, vial_entry="typed", vial_typed_reason=None)
    assert err.reason == "missing_item" and err.field == "vial_typed_reason"
    # "Scanned" with no scan to show for it (the shipped protocol lists no product to scan).
    err = refused(sign, case, "reconstitution", clock, vial_entry="scanned")
    assert err.reason == "missing_item" and err.field == "vial_scan"
    sign(case, "reconstitution", clock, vial_entry="typed", vial_typed_reason="unreadable_label")
    assert case.current["reconstitution"].values["vial_typed_reason"] == "unreadable_label"


@pytest.mark.parametrize("diluent", ["sodium_chloride_0_9", "bacteriostatic_water_for_injection"])
def test_wrong_diluent_is_refused_scenario_14(
    protocol: Protocol, clock: FixedClock, diluent: str
) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "reconstitution", clock)
    err = refused(sign, case, "reconstitution", clock, diluent=diluent)
    assert err.reason == "forbidden_value" and "aggregation" in err.message
    assert err.field == "diluent"


def test_wrong_d5w_volume_is_refused(protocol: Protocol, clock: FixedClock) -> None:
    case = open_case(protocol, clock, weight="39")
    walk_until(case, "dilution", clock)
    err = refused(sign, case, "dilution", clock, d5w_bag_volume_ml="50")
    assert err.reason == "does_not_match" and "25" in err.message


def test_double_check_mismatch_blocks_until_resolved_scenario_11(
    protocol: Protocol, clock: FixedClock
) -> None:
    case = open_case(protocol, clock, weight="70")
    walk_until(case, "double_check_second", clock)
    # The second checker sees nothing of the first's entries.
    assert case.blinded_values("double_check_second") == {}
    # The label not scanned (a scanned code would refuse a rate it contradicts), misread.
    sign(case, "double_check_second", clock, **label_typed(case, pump_rate_ml_per_h="200"))
    assert case.state == "double_check_second_mismatch"
    assert any("Pump rate" in d and "200" in d for d in case.differences)
    # Screens may name what differs without either value: the items, by id.
    assert case.difference_items == ("pump_rate_ml_per_h",)
    err = refused(sign, case, "pre_infusion", clock)
    assert err.reason == "double_check_mismatch" and err.details
    # The second checker re-enters the right rate: both entries stay in the record.
    sign(case, "double_check_second", clock, **label_typed(case, pump_rate_ml_per_h="209"))
    assert case.state == "pre_infusion"
    assert case.difference_items == ()
    entries = [e for e in case.history if e.step == "double_check_second"]
    assert len(entries) == 2 and entries[0].superseded_by == entries[1].seq
    assert entries[1].values["pump_rate_ml_per_h"] == 209


def test_same_person_twice_is_refused_scenario_13(protocol: Protocol, clock: FixedClock) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "pharmacy_verification", clock)
    # A pharmacist who compounded cannot verify their own preparation.
    case2 = open_case(protocol, clock)
    walk_until(case2, "reconstitution", clock)
    sign(case2, "reconstitution", clock, signer=PHARMACIST_2)
    sign(case2, "dilution", clock, signer=TECH)
    err = refused(sign, case2, "pharmacy_verification", clock, signer=PHARMACIST_2)
    assert err.reason == "same_person"
    sign(case, "pharmacy_verification", clock, signer=PHARMACIST)
    sign(case, "double_check_first", clock, signer=NURSE_A)
    err = refused(sign, case, "double_check_second", clock, signer=NURSE_A)
    assert err.reason == "same_person"
    sign(case, "double_check_second", clock, signer=NURSE_B)
    assert case.state == "pre_infusion"


def test_beyond_use_time_passed_ends_as_wasted_scenario_12(
    protocol: Protocol, clock: FixedClock
) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "pre_infusion", clock)
    clock.advance(hours=49)
    err = refused(sign, case, "pre_infusion", clock)
    assert err.reason == "beyond_use_time_passed" and "wasted" in err.message
    err = refused(case.cancel, PRESCRIBER, clock.now(), "order_error")
    assert err.reason == "bag_prepared"
    case.waste(PHARMACIST, clock.now(), "beyond_use_time_passed")
    assert case.state == "wasted" and case.end["reason"] == "beyond_use_time_passed"  # type: ignore[index]
    err = refused(sign, case, "pre_infusion", clock)
    assert err.reason == "case_closed"


def test_beyond_use_counts_to_the_end_of_the_infusion(
    protocol: Protocol, clock: FixedClock
) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "pre_infusion", clock)
    bud = case.beyond_use_at
    assert bud is not None
    clock.set(bud - timedelta(minutes=14))
    err = refused(case.sign, "pre_infusion", {}, NURSE_A, clock.now())
    assert err.reason == "beyond_use_time_passed"


def test_infusion_start_enforces_q8h(protocol: Protocol, clock: FixedClock) -> None:
    first = open_case(protocol, clock)
    walk_all(first, clock)
    status = course_status([first])
    due = first.given_at + timedelta(hours=8)  # type: ignore[operator]
    dose = next_dose(protocol, status, due)
    second = open_case(protocol, clock, dose=dose)
    walk_until(second, "infusion_start", clock)
    assert clock.now() < due
    err = refused(sign, second, "infusion_start", clock)
    assert err.reason == "too_soon"
    clock.set(due)
    sign(second, "infusion_start", clock, minutes=0)
    assert second.given


def test_infusion_duration_deviation_is_flagged(protocol: Protocol, clock: FixedClock) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "infusion_stop", clock)
    sign(case, "infusion_stop", clock, minutes=22)
    assert [f.code for f in case.flags] == ["infusion_duration_deviation"]


def test_weight_correction_scenario_16(protocol: Protocol, clock: FixedClock) -> None:
    case = open_case(protocol, clock, weight="27")
    order = case.current["order"]
    assert "weight_outside_adult_range" in order.outcome["warnings"][0]["code"]
    walk_until(case, "dilution", clock)
    wrong = case.plan
    assert wrong is not None and wrong.dose_iu == 16200000
    clock.advance(minutes=3)
    case.correct(
        order.seq, {"dosing_weight_kg": "72"}, "typed 27 instead of 72", PRESCRIBER, clock.now()
    )
    assert case.plan is not None and case.plan.dose_iu == 43200000
    # Work done on the wrong weight must be done again.
    assert case.state == "order_verification"
    assert "reconstitution" not in case.current
    codes = [f.code for f in case.flags]
    assert "corrected" in codes and "steps_reopened" in codes
    old, new = [e for e in case.history if e.step == "order"]
    assert old.superseded_by == new.seq and new.corrects == old.seq
    walk_all(case, clock)
    assert case.state == "completed"
    again = Case.replay(protocol, case.case_id, case.events)
    assert again.state == "completed" and again.plan == case.plan


def test_an_ended_case_takes_no_correction_and_no_failed_attempt(
    protocol: Protocol, clock: FixedClock
) -> None:
    """Issue 11.11: its records are signed; nothing more is written into it."""
    case = open_case(protocol, clock, weight="27")
    walk_all(case, clock)
    version = case.version
    err = refused(
        case.correct,
        case.current["order"].seq,
        {"dosing_weight_kg": "72"},
        "typo",
        PRESCRIBER,
        clock.now(),
    )
    assert err.reason == "case_closed"
    assert refused(case.record_failed_signature, "t.mensah", "wrong_role", clock.now()).reason == (
        "case_closed"
    )
    assert case.version == version and case.state == "completed"


def test_refused_correction_changes_nothing(protocol: Protocol, clock: FixedClock) -> None:
    case = open_case(protocol, clock)
    order = case.current["order"].seq
    version = case.version
    assert (
        refused(case.correct, order, {"dosing_weight_kg": "5"}, "x", PRESCRIBER, clock.now()).field
        == "dosing_weight_kg"
    )
    assert (
        refused(case.correct, order, {"dosing_weight_kg": "70"}, "", PRESCRIBER, clock.now()).field
        == "reason"
    )
    assert (
        refused(case.correct, order, {"dosing_weight_kg": "70"}, "x", NURSE_A, clock.now()).reason
        == "role_not_allowed"
    )
    assert case.version == version


def test_eligibility_abnormal_discontinues(protocol: Protocol, clock: FixedClock) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "eligibility", clock)
    sign(case, "eligibility", clock, stress_test_result="abnormal")
    assert case.state == "discontinued"
    assert "contraindicated" in case.end["note"]  # type: ignore[index]


def test_old_eligibility_result_needs_a_prescribers_signed_reason(
    protocol: Protocol, clock: FixedClock
) -> None:
    """Issue 11.6: a result older than the window is refused, naming the item and the window,
    unless a prescriber signs the step with the reason (then the record keeps both)."""
    case = open_case(protocol, clock)
    walk_until(case, "eligibility", clock)
    old = (clock.now() - timedelta(days=120)).date().isoformat()
    version = case.version
    err = refused(sign, case, "eligibility", clock, stress_test_date=old)
    assert err.reason == "acknowledgement_needed" and err.field == "older_result_reason"
    assert "Thallium stress test" in err.message and "90 days" in err.message
    assert "UNCONFIRMED" in err.message and "prescriber" in err.message
    # A nurse cannot acknowledge it, even with a reason.
    err = refused(
        sign, case, "eligibility", clock, stress_test_date=old, older_result_reason="repeat booked"
    )
    assert err.reason == "role_not_allowed"
    assert case.version == version
    sign(
        case,
        "eligibility",
        clock,
        signer=PRESCRIBER,
        stress_test_date=old,
        older_result_reason="Stable since; repeat test booked for the next course",
    )
    assert case.state == "hold_checks"
    (flag,) = case.flags
    assert flag.code == "eligibility_test_old" and "UNCONFIRMED" in flag.message
    entry = case.current["eligibility"]
    assert entry.signer == PRESCRIBER and "repeat test" in str(entry.values["older_result_reason"])


def test_an_overlay_makes_an_old_eligibility_result_a_hard_stop(clock: FixedClock) -> None:
    from workflow.core.protocol.overlay import load_overlay
    from workflow.resources import default_protocol_path

    base = load_protocol(default_protocol_path())
    strict = load_overlay(
        Path(default_protocol_path()).with_name("aldesleukin.overlay-example.yaml"), base
    )
    case = open_case(strict, clock)
    walk_until(case, "eligibility", clock)
    old = (clock.now() - timedelta(days=120)).date().isoformat()
    err = refused(
        sign,
        case,
        "eligibility",
        clock,
        signer=PRESCRIBER,
        stress_test_date=old,
        older_result_reason="accepting anyway",
    )
    assert err.reason == "eligibility_test_old" and "hard stop" in err.message


def test_a_dose_other_than_the_label_dose_needs_the_prescribers_reason(
    protocol: Protocol, clock: FixedClock
) -> None:
    """Issue 11.7: the label never reduces the dose; another IU/kg is the prescriber's signed
    decision with a reason, before pharmacy verification, and the records show it."""
    case, _ = Case.open(
        protocol,
        "c-dose",
        patient=PATIENT,
        course_id="c-1",
        dose=NextDose(1, 1, 1, clock.now(), None, 1),
        scheduled_at=clock.now(),
        actor=PRESCRIBER,
        at=clock.now(),
    )
    values = order_values("70", clock.now() - timedelta(hours=1))
    values["dose_iu_per_kg"] = "450000"
    err = refused(case.sign, "order", values, PRESCRIBER, clock.now())
    assert err.reason == "acknowledgement_needed" and err.field == "dose_deviation_reason"
    assert "450000 IU/kg" in err.message.replace(",", "") and "600000" in err.message.replace(
        ",", ""
    )
    assert case.version == 1
    values["dose_deviation_reason"] = "Dose reduced per trial protocol amendment 4"
    case.sign("order", values, PRESCRIBER, clock.now())
    assert case.state == "order_verification"
    assert [f.code for f in case.flags] == ["dose_not_label_dose"]
    # A correction to another dose runs the same check.
    err = refused(
        case.correct,
        case.current["order"].seq,
        {"dose_iu_per_kg": "300000", "dose_deviation_reason": ""},
        "typed wrong",
        PRESCRIBER,
        clock.now(),
    )
    assert err.field == "dose_deviation_reason"


def test_exit_reasons_are_checked(protocol: Protocol, clock: FixedClock) -> None:
    case = open_case(protocol, clock)
    assert refused(case.cancel, PRESCRIBER, clock.now(), "bored").field == "reason"
    assert refused(case.cancel, PRESCRIBER, clock.now(), "other").field == "note"
    assert refused(case.waste, PHARMACIST, clock.now(), "preparation_error").reason == "no_bag"
    assert refused(case.resume, PRESCRIBER, clock.now(), "criteria_met").reason == "not_held"
    case.cancel(PRESCRIBER, clock.now(), "order_error")
    assert case.state == "cancelled"


def test_replay_rejects_a_recorded_outcome_that_differs(
    protocol: Protocol, clock: FixedClock
) -> None:
    from dataclasses import replace

    from workflow.core.errors import IntegrityError

    case = open_case(protocol, clock)
    walk_until(case, "hold_checks", clock)
    sign(case, "hold_checks", clock, spo2_pct="88")
    tampered = list(case.events)
    last = tampered[-1]
    tampered[-1] = replace(last, data={**last.data, "outcome": {}})
    with pytest.raises(IntegrityError):
        Case.replay(protocol, case.case_id, tampered)


def test_correction_during_the_infusion_never_undoes_the_dose(
    protocol: Protocol, clock: FixedClock
) -> None:
    case = open_case(protocol, clock, weight="27")
    walk_until(case, "infusion_stop", clock)
    started = case.given_at
    case.correct(
        case.current["order"].seq, {"dosing_weight_kg": "72"}, "typo", PRESCRIBER, clock.now()
    )
    assert case.given and case.given_at == started
    assert case.state == "infusion_stop"
    assert "dose_given_from_corrected_value" in [f.code for f in case.flags]
    sign(case, "infusion_stop", clock, minutes=15)
    assert case.state == "observation"


def test_cases_share_their_protocol_machine_and_leave_no_cyclic_garbage(
    protocol: Protocol, clock: FixedClock
) -> None:
    """A replay must not build a machine of its own: each one was thousands of objects in
    reference cycles, and the collector's passes over that garbage made the web's latency
    tail (README, Web UI bench)."""
    case = open_case(protocol, clock, weight="68")
    walk_all(case, clock)
    again = Case.replay(protocol, case.case_id, case.events)
    assert again._machine is case._machine is machine_for(protocol)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(3):
            Case.replay(protocol, case.case_id, case.events)
        gc.collect()
        left = [type(o).__qualname__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == [], sorted(set(left))


def test_threads_replaying_on_the_shared_machine_agree(
    protocol: Protocol, clock: FixedClock
) -> None:
    """Cases in many threads (uvicorn's pool) move on one machine without seeing each other."""
    walked = []
    for weight, until in (("68", None), ("39", "double_check_first"), ("118", "infusion_start")):
        case = open_case(protocol, clock, weight=weight)
        if until is None:
            walk_all(case, clock)
        else:
            walk_until(case, until, clock)
        walked.append(case)
    expected = [(c.state, c.version) for c in walked]
    seen: list[list[tuple[str, int]]] = []
    start = threading.Barrier(8)

    def run() -> None:
        start.wait()
        mine = []
        for _ in range(20):
            for c in walked:
                again = Case.replay(protocol, c.case_id, c.events)
                mine.append((again.state, again.version))
        seen.append(mine)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8
    assert all(mine == expected * 20 for mine in seen)


# -- issue 11: the checks hold on corrections too ----------------------------------------------


def _at_pre_infusion(protocol: Protocol, clock: FixedClock) -> Case:
    case = open_case(protocol, clock, weight="70")
    walk_until(case, "pre_infusion", clock)
    return case


def test_a_checker_never_corrects_the_other_checkers_blinded_entry(
    protocol: Protocol, clock: FixedClock
) -> None:
    """Issue 11.1: the first checker's correction of the second check (209 -> 999) was
    accepted, raised no mismatch and showed the first checker as the blinded second."""
    case = _at_pre_infusion(protocol, clock)
    second = case.current["double_check_second"]
    version = case.version
    err = refused(
        case.correct, second.seq, {"pump_rate_ml_per_h": "999"}, "typo", NURSE_A, clock.now()
    )
    assert err.reason == "same_person"
    # Nor does a third nurse, who did not do that check.
    third = Signer("n.okoye", "Ife Okoye, RN", "nurse")
    err = refused(
        case.correct, second.seq, {"pump_rate_ml_per_h": "999"}, "typo", third, clock.now()
    )
    assert err.reason == "not_your_entry"
    assert case.version == version and case.state == "pre_infusion"


def test_a_correction_to_either_check_reopens_the_comparison(
    protocol: Protocol, clock: FixedClock
) -> None:
    # Both checks typed off the label (not scanned): a scanned code would refuse a corrected
    # rate it contradicts, naming the item.
    case = open_case(protocol, clock, weight="70")
    walk_until(case, "double_check_first", clock)
    sign(case, "double_check_first", clock, NURSE_A, **label_typed(case))
    sign(case, "double_check_second", clock, NURSE_B, **label_typed(case))
    assert case.state == "pre_infusion"
    second = case.current["double_check_second"]
    clock.advance(minutes=1)
    case.correct(second.seq, {"pump_rate_ml_per_h": "200"}, "misread", NURSE_B, clock.now())
    assert case.state == "double_check_second_mismatch"
    assert case.difference_items == ("pump_rate_ml_per_h",)
    err = refused(sign, case, "pre_infusion", clock)
    assert err.reason == "double_check_mismatch"
    # The refusal names what differs and never a value either checker must find again.
    assert "Pump rate" in err.message and "209" not in err.message and "200" not in err.message
    assert err.details == ("Pump rate",)
    # The first checker's own entry, corrected to agree: the comparison is redone and passes.
    first = case.current["double_check_first"]
    case.correct(first.seq, {"pump_rate_ml_per_h": "200"}, "re-read", NURSE_A, clock.now())
    # Both now say 200 where the plan says 209: still a mismatch (the plan is a third source).
    assert case.state == "double_check_second_mismatch"
    sign(case, "double_check_second", clock, NURSE_B, **label_typed(case, pump_rate_ml_per_h="209"))
    sign(case, "double_check_first", clock, NURSE_A, **label_typed(case, pump_rate_ml_per_h="209"))
    assert case.state == "pre_infusion"
    again = Case.replay(protocol, case.case_id, case.events)
    assert again.state == case.state and again.difference_items == ()


def test_preparation_and_its_verification_keep_their_separation_on_corrections(
    protocol: Protocol, clock: FixedClock
) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "double_check_first", clock)
    recon = case.current["reconstitution"]
    verification = case.current["pharmacy_verification"]
    # The verifying pharmacist may not rewrite the preparation they verified...
    err = refused(
        case.correct, recon.seq, {"vial_lot": "PLK9999"}, "lot typo", PHARMACIST, clock.now()
    )
    assert err.reason == "same_person"
    # ...and a technician may not correct a pharmacist's verification.
    err = refused(case.correct, verification.seq, {"label_checked": True}, "x", TECH, clock.now())
    assert err.reason == "role_not_allowed"


def test_a_corrected_hold_check_runs_the_rules(protocol: Protocol, clock: FixedClock) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "dilution", clock)
    checks = case.current["hold_checks"]
    case.correct(checks.seq, {"spo2_pct": "88"}, "read the wrong monitor", NURSE_A, clock.now())
    assert case.state == "held"
    assert [f.rule_id for f in case.active_holds] == ["spo2_below_90"]
    err = refused(sign, case, "dilution", clock)
    assert err.reason == "case_held"
    again = Case.replay(protocol, case.case_id, case.events)
    assert again.state == "held"


def test_a_refused_form_names_every_problem_in_words_with_rounded_numbers(
    protocol: Protocol, clock: FixedClock
) -> None:
    """Issue 11.10: every missing or wrong field at once, by label, with range and unit, and
    numbers at the protocol's display decimals (the plan is exact: 2.3333... mL)."""
    case = open_case(protocol, clock, weight="70")
    walk_until(case, "dilution", clock)
    err = refused(
        sign,
        case,
        "dilution",
        clock,
        withdrawn_volume_ml="2.5",
        d5w_lot=None,
        container="glass_bottle",
    )
    assert set(err.fields) == {"withdrawn_volume_ml", "d5w_lot", "container"}
    assert len(err.details) == 3 and err.exit_code == 2
    assert "Reconstituted solution withdrawn: entered 2.5 mL, expected 2.33 mL" in err.message
    assert "withdrawn_volume_ml" not in err.message and "2.333" not in err.message
    assert "D5W bag lot: required" in err.message and "Container:" in err.message


def test_an_independent_check_never_shows_the_expected_value(
    protocol: Protocol, clock: FixedClock
) -> None:
    """Issue 11.3 on every path: the two-identifier step names what differs, never the
    record's value (the command line has no viewer to blind, so the machine says it so)."""
    case = _at_pre_infusion(protocol, clock)
    err = refused(
        sign,
        case,
        "pre_infusion",
        clock,
        pump_rate_set_ml_per_h="200",
        patient_identifier_mrn="MRN-0000",
        bag_at_room_temperature=None,
    )
    assert set(err.fields) == {
        "pump_rate_set_ml_per_h",
        "patient_identifier_mrn",
        "bag_at_room_temperature",
    }
    assert "Identifier 1: MRN from the wristband: does not match this patient's record" in (
        err.message
    )
    assert "MRN-5521" not in err.message and "209" not in err.message
