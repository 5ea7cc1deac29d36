"""The dose plan: the label's worked example, the volume table's edges, every warning, every
refused input. Decimal throughout; rounding only when printed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from workflow.core.dosing import beyond_use_at, json_number, order_proposals, plan_dose
from workflow.core.errors import InputError
from workflow.core.protocol import Protocol


def test_label_worked_example_70_kg(protocol: Protocol) -> None:
    plan = plan_dose(protocol, "70")
    assert plan.dose_iu == Decimal("42000000")
    assert plan.reconstituted_volume_ml.quantize(Decimal("0.001")) == Decimal("2.333")
    assert plan.dose_mg.quantize(Decimal("0.001")) == Decimal("2.567")
    assert plan.vials == 2
    assert plan.diluent_volume_ml == Decimal("50")
    assert plan.final_volume_ml.quantize(Decimal("0.01")) == Decimal("52.33")
    assert plan.final_concentration_mcg_per_ml.quantize(Decimal("0.1")) == Decimal("49.0")
    assert plan.pump_rate_ml_per_h.quantize(Decimal("0.1")) == Decimal("209.3")
    assert plan.infusion_minutes == Decimal("15")
    assert plan.warnings == ()
    assert all(
        isinstance(v, Decimal)
        for v in (plan.dose_iu, plan.dose_mg, plan.final_volume_ml, plan.pump_rate_ml_per_h)
    )


@pytest.mark.parametrize(
    ("weight", "band_ml", "vials"),
    [("39", 25, 2), ("68", 50, 2), ("118", 100, 4), ("30", 25, 1), ("250", 100, 7)],
)
def test_scenario_weights_pick_the_label_band(
    protocol: Protocol, weight: str, band_ml: int, vials: int
) -> None:
    plan = plan_dose(protocol, weight)
    assert plan.diluent_volume_ml == band_ml
    assert plan.vials == vials
    # The pump rate follows the bag: final volume over 15 minutes.
    q = Decimal("0.0000000001")
    assert plan.pump_rate_ml_per_h.quantize(q) == (plan.final_volume_ml * 4).quantize(q)


def test_low_weight_stays_in_window_and_says_why(protocol: Protocol) -> None:
    plan = plan_dose(protocol, "39")
    assert Decimal(30) <= plan.final_concentration_mcg_per_ml <= Decimal(70)
    assert "25 mL" in plan.band_text() and "<= 25.4 million IU" in plan.band_text()
    assert plan.diluent_band.source == "handbook"


@pytest.mark.parametrize(
    ("dose_iu", "band_ml"),
    [("25400000", 25), ("25400001", 50), ("60000000", 50), ("60000001", 100)],
)
def test_volume_table_boundaries(protocol: Protocol, dose_iu: str, band_ml: int) -> None:
    # weight x 600,000 = dose; pick the weight that lands on the boundary exactly.
    per_kg = Decimal(dose_iu) / Decimal(100)
    plan = plan_dose(protocol, "100", per_kg)
    assert plan.dose_iu == Decimal(dose_iu)
    assert plan.diluent_volume_ml == band_ml


def test_boundary_by_weight(protocol: Protocol) -> None:
    # 60,000,000 IU is exactly 100 kg: still the 50 mL band (<=).
    assert plan_dose(protocol, "100").diluent_volume_ml == 50
    assert plan_dose(protocol, "100.01").diluent_volume_ml == 100


def codes(plan: object) -> set[str]:
    return {w.code for w in plan.warnings}  # type: ignore[attr-defined]


def test_warning_concentration_above_window(protocol: Protocol) -> None:
    plan = plan_dose(protocol, "250")
    assert plan.final_concentration_mcg_per_ml > 70
    assert "concentration_above_window" in codes(plan)


def test_warning_concentration_below_window(protocol: Protocol) -> None:
    plan = plan_dose(protocol, "70", "150000")
    assert plan.final_concentration_mcg_per_ml < 30
    assert codes(plan) >= {"concentration_below_window", "dose_not_label_dose"}


def test_warning_dose_not_label_dose(protocol: Protocol) -> None:
    plan = plan_dose(protocol, "70", "720000")
    assert "dose_not_label_dose" in codes(plan)
    assert "600,000" in next(w.message for w in plan.warnings if w.code == "dose_not_label_dose")


@pytest.mark.parametrize("weight", ["27", "25.5", "251", "300"])
def test_warning_weight_outside_adult_range(protocol: Protocol, weight: str) -> None:
    assert "weight_outside_adult_range" in codes(plan_dose(protocol, weight))


def test_warning_weight_stale(protocol: Protocol) -> None:
    now = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    fresh = plan_dose(protocol, "70", weight_measured_at=now - timedelta(hours=23), now=now)
    stale = plan_dose(protocol, "70", weight_measured_at=now - timedelta(hours=25), now=now)
    assert "weight_stale" not in codes(fresh)
    assert "weight_stale" in codes(stale)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (None, "required"),
        ("", "required"),
        ("abc", "not a number"),
        ("0", "greater than 0"),
        ("-70", "greater than 0"),
        ("19.99", "plausible"),
        ("350.01", "plausible"),
        ("1000", "plausible"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("70.123", "decimals"),
    ],
)
def test_refused_weights_name_the_field_and_range(
    protocol: Protocol, raw: object, fragment: str
) -> None:
    with pytest.raises(InputError) as exc:
        plan_dose(protocol, raw)
    assert exc.value.field == "weight_kg"
    assert exc.value.exit_code == 2
    assert fragment in exc.value.message
    assert "20 to 350 kg" in exc.value.message


def test_cachectic_and_heavy_adults_are_accepted(protocol: Protocol) -> None:
    for weight in ("30", "250", "20", "350"):
        plan_dose(protocol, weight)


@pytest.mark.parametrize("raw", ["0", "-1", "x"])
def test_refused_dose_per_kg(protocol: Protocol, raw: str) -> None:
    with pytest.raises(InputError) as exc:
        plan_dose(protocol, "70", raw)
    assert exc.value.field == "dose_iu_per_kg"


def test_beyond_use_is_48_hours_from_preparation(protocol: Protocol) -> None:
    prepared = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    assert beyond_use_at(protocol, prepared) == prepared + timedelta(hours=48)


def test_json_numbers_round_only_when_printed() -> None:
    assert json_number(Decimal("209.333333")) == 209.3333
    assert json_number(Decimal("42000000")) == 42000000
    assert isinstance(json_number(Decimal("2.0000001")), int)


def test_the_order_step_proposes_the_label_dose_and_no_other_step_does(
    protocol: Protocol,
) -> None:
    # The label dose, as a form posts it; the prescriber confirms or types another (flagged).
    assert order_proposals(protocol, protocol.initial) == {"dose_iu_per_kg": "600000"}
    proposed = order_proposals(protocol, "order")["dose_iu_per_kg"]
    assert [w.code for w in plan_dose(protocol, "68", proposed).warnings] == []
    other = plan_dose(protocol, "68", "500000")
    assert [w.code for w in other.warnings] == ["dose_not_label_dose"]
    for step in protocol.steps:
        if step.id != protocol.initial:
            assert order_proposals(protocol, step.id) == {}, step.id
