"""Rules over entered values, and the course schedule (q8h, 14 a cycle, 28 a course, rest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from workflow.core.errors import StepRefused
from workflow.core.protocol import Protocol
from workflow.core.rules import evaluate
from workflow.core.schedule import CourseStatus, GivenDose, earliest_time, next_dose
from workflow.dev.walk import normal_checks

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


def checks(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {k: v for k, v in normal_checks().items()}
    values["sbp_mmhg"] = Decimal(str(values["sbp_mmhg"]))
    values["spo2_pct"] = Decimal(str(values["spo2_pct"]))
    values["vt_sustained_beats"] = Decimal(0)
    values.update(changes)
    return values


def fired(protocol: Protocol, **changes: object) -> dict[str, str]:
    return {f.rule_id: f.action for f in evaluate(protocol, checks(**changes))}


def test_normal_checks_fire_nothing(protocol: Protocol) -> None:
    assert fired(protocol) == {}


@pytest.mark.parametrize(
    ("changes", "rule", "action"),
    [
        ({"spo2_pct": Decimal(88)}, "spo2_below_90", "hold"),
        ({"sbp_mmhg": Decimal(85)}, "systolic_bp_below_90", "hold"),
        ({"rhythm": "arrhythmia_needing_treatment"}, "arrhythmia_needing_treatment", "hold"),
        ({"mental_status": "moderate_confusion_or_agitation"}, "mental_status_changes", "hold"),
        ({"lethargy": "moderate"}, "lethargy_moderate_or_severe", "hold"),
        ({"lethargy": "severe"}, "lethargy_moderate_or_severe", "hold"),
        ({"occult_blood": "positive"}, "occult_blood_positive", "hold"),
        ({"vt_sustained_beats": Decimal(7)}, "sustained_vt", "discontinue"),
        ({"vt_sustained_beats": Decimal(5)}, "sustained_vt", "discontinue"),
        ({"rhythm": "rhythm_uncontrolled"}, "rhythm_uncontrolled", "discontinue"),
        ({"ischemia_or_chest_pain": True}, "ischemia_or_chest_pain", "discontinue"),
        ({"cardiac_tamponade": True}, "cardiac_tamponade", "discontinue"),
        ({"intubation_hours": Decimal(73)}, "intubation_over_72h", "discontinue"),
        ({"dialysis_hours": Decimal(80)}, "dialysis_over_72h", "discontinue"),
        (
            {"coma_or_toxic_psychosis_hours": Decimal(49)},
            "coma_or_toxic_psychosis_over_48h",
            "discontinue",
        ),
        ({"seizures": "repetitive_or_difficult_to_control"}, "seizures_repetitive", "discontinue"),
        ({"bowel_ischemia_or_perforation": True}, "bowel_ischemia_or_perforation", "discontinue"),
        ({"gi_bleeding_requiring_surgery": True}, "gi_bleeding_requiring_surgery", "discontinue"),
        ({"serum_creatinine_mg_dl": Decimal("4.6")}, "creatinine_above_4_5", "hold"),
    ],
)
def test_each_rule_fires_on_its_threshold(
    protocol: Protocol, changes: dict[str, object], rule: str, action: str
) -> None:
    assert fired(protocol, **changes).get(rule) == action


@pytest.mark.parametrize(
    "changes",
    [
        {"spo2_pct": Decimal(90)},
        {"sbp_mmhg": Decimal(90)},
        {"vt_sustained_beats": Decimal(4)},
        {"intubation_hours": Decimal(72)},
        {"lethargy": "mild"},
        {"mental_status": "mild_changes"},
        {"serum_creatinine_mg_dl": Decimal("4.5")},
        {"occult_blood": "negative"},
    ],
)
def test_thresholds_are_exact(protocol: Protocol, changes: dict[str, object]) -> None:
    assert fired(protocol, **changes) == {}


def test_resume_criteria_need_evidence(protocol: Protocol) -> None:
    # Held for SpO2 < 90: 90 is not above 90, so the hold stands.
    still = evaluate(protocol, checks(spo2_pct=Decimal(90)), awaiting_resume=["spo2_below_90"])
    assert [(f.rule_id, f.reason) for f in still] == [("spo2_below_90", "resume_not_met")]
    assert evaluate(protocol, checks(spo2_pct=Decimal(95)), ["spo2_below_90"]) == ()
    # Held for a positive FOBT: no result entered is not a negative result.
    pending = evaluate(protocol, checks(), awaiting_resume=["occult_blood_positive"])
    assert [f.rule_id for f in pending] == ["occult_blood_positive"]
    assert evaluate(protocol, checks(occult_blood="negative"), ["occult_blood_positive"]) == ()


def test_firing_keeps_rule_source_and_values(protocol: Protocol) -> None:
    (f,) = evaluate(protocol, checks(spo2_pct=Decimal(88)))
    assert f.source == "label_current" and f.confirmed
    assert f.values == {"spo2_pct": "88"}
    assert "O2 saturation" in f.describe() and "[source: label_current]" in f.describe()
    (u,) = evaluate(protocol, checks(serum_creatinine_mg_dl=Decimal(5)))
    assert not u.confirmed and "UNCONFIRMED" in u.describe()


def course(*hours: float, cycle: int = 1, start: datetime = T0) -> tuple[GivenDose, ...]:
    return tuple(GivenDose(cycle, start + timedelta(hours=h)) for h in hours)


def test_first_dose(protocol: Protocol) -> None:
    dose = next_dose(protocol, CourseStatus(()), T0)
    assert (dose.cycle, dose.dose_in_cycle, dose.dose_in_course) == (1, 1, 1)


def test_too_soon_is_refused(protocol: Protocol) -> None:
    status = CourseStatus(course(0))
    with pytest.raises(StepRefused) as exc:
        next_dose(protocol, status, T0 + timedelta(hours=5))
    assert exc.value.reason == "too_soon"
    ok = next_dose(protocol, status, T0 + timedelta(hours=8))
    assert (ok.dose_in_cycle, ok.dose_in_course) == (2, 2)


def test_fifteenth_dose_in_a_cycle_is_refused_until_the_rest_is_over(protocol: Protocol) -> None:
    given = course(*[8 * i for i in range(14)])  # 14 doses over days 1-5
    status = CourseStatus(given)
    with pytest.raises(StepRefused) as exc:
        next_dose(protocol, status, given[-1].given_at + timedelta(hours=8))
    assert exc.value.reason == "rest_period"
    last_day = given[-1].given_at.date()
    rest_end = datetime.combine(last_day + timedelta(days=10), datetime.min.time(), tzinfo=UTC)
    with pytest.raises(StepRefused):
        next_dose(protocol, status, rest_end - timedelta(minutes=1))
    second = next_dose(protocol, status, rest_end)
    assert (second.cycle, second.dose_in_cycle, second.dose_in_course) == (2, 1, 15)
    assert earliest_time(protocol, status) == rest_end


def test_cycle_does_not_stretch_past_day_5(protocol: Protocol) -> None:
    given = course(0, 8, 16)  # three doses on day 1, then nothing (held)
    with pytest.raises(StepRefused) as exc:
        next_dose(protocol, CourseStatus(given), T0 + timedelta(days=5))
    assert exc.value.reason == "rest_period"


def test_twenty_ninth_dose_is_refused(protocol: Protocol) -> None:
    c1 = course(*[8 * i for i in range(14)])
    c2 = course(*[8 * i for i in range(14)], cycle=2, start=T0 + timedelta(days=14))
    with pytest.raises(StepRefused) as exc:
        next_dose(protocol, CourseStatus(c1 + c2), T0 + timedelta(days=30))
    assert exc.value.reason == "course_limit"


def test_third_cycle_is_refused(protocol: Protocol) -> None:
    c1 = course(0)
    c2 = course(0, cycle=2, start=T0 + timedelta(days=14))
    with pytest.raises(StepRefused) as exc:
        next_dose(protocol, CourseStatus(c1 + c2), T0 + timedelta(days=40))
    assert exc.value.reason == "course_limit"


def test_discontinued_course_refuses_every_dose(protocol: Protocol) -> None:
    with pytest.raises(StepRefused) as exc:
        next_dose(
            protocol, CourseStatus(course(0), discontinued="sustained VT"), T0 + timedelta(days=1)
        )
    assert exc.value.reason == "course_discontinued"
    assert "sustained VT" in exc.value.message


def test_no_doubling_while_a_dose_is_open(protocol: Protocol) -> None:
    with pytest.raises(StepRefused) as exc:
        next_dose(protocol, CourseStatus(course(0), active_case="abc"), T0 + timedelta(hours=9))
    assert exc.value.reason == "dose_in_progress"
