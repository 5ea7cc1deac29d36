"""The dose plan: Decimal arithmetic from the protocol's constants, no floats anywhere.

Units: IU for the dose, mL for volumes, mg derived from IU by the protocol's stated convention
(the label's IU/mg pairs disagree with each other), mcg/mL for concentration, mL/h for the pump.
Values are exact Decimals; they are rounded only when shown or printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any

from workflow.core.errors import InputError
from workflow.core.protocol.model import Protocol, VolumeBand

_MINUTES_PER_HOUR = Decimal(60)
_MCG_PER_MG = Decimal(1000)
_WEIGHT_DECIMALS = 2


# How many decimals a person is shown of each plan number; None shows the exact value, trimmed
# (the weight, the per-vial volume and the minutes are typed or protocol values, never a
# quotient). These are the decimals the CLI and the signed record printed before this table
# existed, kept so all three agree; the checklist items' ``decimals:`` say how exactly a value
# is *entered*, which is a different question.
PLAN_DECIMALS: dict[str, int | None] = {
    "weight_kg": None,
    "dose_iu_per_kg": 0,
    "dose_iu": 0,
    "dose_mg": 4,
    "vials": None,
    "reconstitution_volume_ml_per_vial": None,
    "reconstituted_volume_ml": 2,
    "diluent_volume_ml": 0,
    "final_volume_ml": 2,
    "final_concentration_mcg_per_ml": 1,
    "infusion_minutes": None,
    "pump_rate_ml_per_h": 1,
}


@dataclass(frozen=True)
class DoseWarning:
    """Something the person must see before going on. ``code`` is a stable snake_case word."""

    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class DosePlan:
    weight_kg: Decimal
    dose_iu_per_kg: Decimal
    dose_iu: Decimal
    dose_mg: Decimal
    vials: int
    reconstitution_volume_ml_per_vial: Decimal
    reconstituted_volume_ml: Decimal
    diluent: str
    diluent_name: str  # the protocol's display word for it (``words.final_diluent_short``)
    reconstitution_diluent_name: str
    diluent_volume_ml: Decimal
    diluent_band: VolumeBand
    final_volume_ml: Decimal
    final_concentration_mcg_per_ml: Decimal
    infusion_minutes: Decimal
    pump_rate_ml_per_h: Decimal
    mg_convention: str
    warnings: tuple[DoseWarning, ...]

    def value(self, field: str) -> Decimal:
        """A plan value by name, as items' ``expect: plan.<field>`` refer to it."""
        raw = getattr(self, field)
        return Decimal(raw) if isinstance(raw, int) else raw

    def band_text(self) -> str:
        band = self.diluent_band
        text = f"{fmt(band.diluent_volume_ml)} mL {self.diluent_name}".rstrip()
        return f"{text}: {band.note}" if band.note else text

    def words(self) -> dict[str, str]:
        """The plan's numbers as people read them (no units): the one rounding that the CLI,
        the signed record and every web page show, so a technician never sees "2.2667 mL".
        Only the text is rounded; the stored values and the arithmetic stay exact."""
        return {name: fmt(self.value(name), places) for name, places in PLAN_DECIMALS.items()}

    def to_json(self) -> dict[str, Any]:
        """The command-line contract: plain JSON numbers rounded to at most 4 decimals."""
        band = self.diluent_band
        return {
            "weight_kg": json_number(self.weight_kg),
            "dose_iu_per_kg": json_number(self.dose_iu_per_kg),
            "dose_iu": json_number(self.dose_iu),
            "dose_mg": json_number(self.dose_mg),
            "vials": self.vials,
            "reconstitution_volume_ml_per_vial": json_number(
                self.reconstitution_volume_ml_per_vial
            ),
            "reconstituted_volume_ml": json_number(self.reconstituted_volume_ml),
            "diluent": self.diluent,
            "diluent_name": self.diluent_name,
            "reconstitution_diluent_name": self.reconstitution_diluent_name,
            "diluent_volume_ml": json_number(self.diluent_volume_ml),
            "diluent_band": {
                "max_dose_iu": json_number(band.max_dose_iu)
                if band.max_dose_iu is not None
                else None,
                "diluent_volume_ml": json_number(band.diluent_volume_ml),
                "source": band.source,
                "note": band.note,
            },
            "final_volume_ml": json_number(self.final_volume_ml),
            "final_concentration_mcg_per_ml": json_number(self.final_concentration_mcg_per_ml),
            "infusion_minutes": json_number(self.infusion_minutes),
            "pump_rate_ml_per_h": json_number(self.pump_rate_ml_per_h),
            "mg_convention": self.mg_convention,
            "warnings": [w.to_json() for w in self.warnings],
        }


def json_number(value: Decimal) -> int | float:
    """Round for printing only; integers stay integers."""
    rounded = value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    if rounded == rounded.to_integral_value():
        return int(rounded)
    return float(rounded)


def fmt(value: Decimal, decimals: int | None = None) -> str:
    """Human text for a Decimal: fixed decimals when asked, else trimmed."""
    if decimals is not None:
        return f"{value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP):,f}"
    text = format(value.normalize(), "f")
    return text


def parse_decimal(field: str, raw: object, allowed: str) -> Decimal:
    """A number typed by a person, or a clear InputError naming the field and the range."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InputError(field, "is required", allowed)
    if isinstance(raw, bool | float):
        raw = str(raw)
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise InputError(field, f"'{raw}' is not a number", allowed) from None
    if not value.is_finite():
        raise InputError(field, f"'{raw}' is not a finite number", allowed)
    return value


def check_weight(protocol: Protocol, raw: object) -> Decimal:
    d = protocol.dosing
    lo, hi = d.weight_accepted_min.value, d.weight_accepted_max.value
    allowed = f"{fmt(lo)} to {fmt(hi)} kg, at most {_WEIGHT_DECIMALS} decimals"
    weight = parse_decimal("weight_kg", raw, allowed)
    if weight <= 0:
        raise InputError("weight_kg", f"must be greater than 0, got {fmt(weight)}", allowed)
    if weight < lo or weight > hi:
        raise InputError("weight_kg", f"{fmt(weight)} kg is not a plausible adult weight", allowed)
    exponent = weight.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > _WEIGHT_DECIMALS:
        raise InputError("weight_kg", f"{weight} has too many decimals", allowed)
    return weight


def check_dose_per_kg(raw: object) -> Decimal:
    allowed = "a positive number of IU/kg"
    value = parse_decimal("dose_iu_per_kg", raw, allowed)
    if value <= 0:
        raise InputError("dose_iu_per_kg", f"must be greater than 0, got {fmt(value)}", allowed)
    return value


def diluent_band(protocol: Protocol, dose_iu: Decimal) -> VolumeBand:
    for band in protocol.dosing.volume_bands:
        if band.max_dose_iu is None or dose_iu <= band.max_dose_iu:
            return band
    raise AssertionError("the loader guarantees a last band without an upper bound")


# The order step's item the plan takes the ordered dose per kg from (CaseState._plan_for).
ORDERED_DOSE_ITEM = "dose_iu_per_kg"


def order_proposals(protocol: Protocol, step_id: str) -> dict[str, str]:
    """What the order step proposes for the prescriber to confirm (issue 12.4), as a form
    posts it: the protocol's dose per kg, the label dose. Nothing at any other step, nor at an
    order step that is an independent check. A different dose typed over it still raises
    ``dose_not_label_dose`` (acknowledged with a reason): proposing it removes no check."""
    step = protocol.step(step_id)
    if (
        step_id != protocol.initial
        or protocol.unprimed(step)
        or step.item(ORDERED_DOSE_ITEM) is None
    ):
        return {}
    return {ORDERED_DOSE_ITEM: fmt(protocol.dosing.dose_per_kg.value)}


def plan_dose(
    protocol: Protocol,
    weight_kg: object,
    dose_iu_per_kg: object | None = None,
    *,
    weight_measured_at: datetime | None = None,
    now: datetime | None = None,
) -> DosePlan:
    """Compute the whole preparation from a weight. Raises InputError for a bad weight."""
    d = protocol.dosing
    weight = check_weight(protocol, weight_kg)
    per_kg = d.dose_per_kg.value if dose_iu_per_kg is None else check_dose_per_kg(dose_iu_per_kg)
    with localcontext() as ctx:
        ctx.prec = 34
        dose_iu = weight * per_kg
        recon_conc = d.reconstituted_concentration.value
        recon_volume = dose_iu / recon_conc
        dose_mg = dose_iu * d.reconstituted_mass_concentration.value / recon_conc
        vials = int((dose_iu / d.vial_content.value).to_integral_value(rounding=ROUND_CEILING))
        band = diluent_band(protocol, dose_iu)
        final_volume = band.diluent_volume_ml + recon_volume
        concentration = dose_mg * _MCG_PER_MG / final_volume
        minutes = d.infusion_duration.value
        rate = final_volume * _MINUTES_PER_HOUR / minutes
    warnings = [
        *_dose_warnings(protocol, per_kg),
        *_concentration_warnings(protocol, concentration),
        *_weight_warnings(protocol, weight, weight_measured_at, now),
    ]
    return DosePlan(
        weight_kg=weight,
        dose_iu_per_kg=per_kg,
        dose_iu=dose_iu,
        dose_mg=dose_mg,
        vials=vials,
        reconstitution_volume_ml_per_vial=d.reconstitution_volume.value,
        reconstituted_volume_ml=recon_volume,
        diluent=d.final_diluent,
        diluent_name=protocol.say("final_diluent_short"),
        reconstitution_diluent_name=protocol.say("reconstitution_diluent"),
        diluent_volume_ml=band.diluent_volume_ml,
        diluent_band=band,
        final_volume_ml=final_volume,
        final_concentration_mcg_per_ml=concentration,
        infusion_minutes=minutes,
        pump_rate_ml_per_h=rate,
        mg_convention=d.mg_convention,
        warnings=tuple(warnings),
    )


def _dose_warnings(protocol: Protocol, per_kg: Decimal) -> list[DoseWarning]:
    """An ordered dose other than the protocol's label dose."""
    d, say = protocol.dosing, protocol.say
    if per_kg == d.dose_per_kg.value:
        return []
    why = f" ({say('label_dose_only')})" if say("label_dose_only") else ""
    return [
        DoseWarning(
            "dose_not_label_dose",
            f"Ordered {fmt(per_kg, 0)} IU/kg; the protocol dose is "
            f"{fmt(d.dose_per_kg.value, 0)} IU/kg{why}",
        )
    ]


def _concentration_warnings(protocol: Protocol, concentration: Decimal) -> list[DoseWarning]:
    """A final concentration outside the protocol's window."""
    d, say = protocol.dosing, protocol.say
    cmin, cmax = d.concentration_min.value, d.concentration_max.value
    unit = d.concentration_min.unit
    if concentration < cmin:
        return [
            DoseWarning(
                "concentration_below_window",
                f"Final concentration {fmt(concentration, 1)} {unit} is below {fmt(cmin)} {unit}; "
                f"{say('outside_window')}",
            )
        ]
    if concentration > cmax:
        return [
            DoseWarning(
                "concentration_above_window",
                f"Final concentration {fmt(concentration, 1)} {unit} is above {fmt(cmax)} {unit}; "
                f"{say('outside_window')}",
            )
        ]
    return []


def _weight_warnings(
    protocol: Protocol, weight: Decimal, measured_at: datetime | None, now: datetime | None
) -> list[DoseWarning]:
    """A weight outside the adult range, or one measured too long ago."""
    d = protocol.dosing
    out: list[DoseWarning] = []
    amin, amax = d.weight_adult_min.value, d.weight_adult_max.value
    if weight < amin or weight > amax:
        out.append(
            DoseWarning(
                "weight_outside_adult_range",
                f"Weight {fmt(weight)} kg is outside the adult range "
                f"{fmt(amin)}-{fmt(amax)} kg set by "
                "the protocol: check it was typed correctly before preparing",
            )
        )
    if measured_at is not None and now is not None:
        age = now - measured_at
        limit = timedelta(hours=float(d.weight_max_age.value))
        if age > limit:
            hours = Decimal(int(age.total_seconds())) / Decimal(3600)
            out.append(
                DoseWarning(
                    "weight_stale",
                    f"Dosing weight was measured {fmt(hours, 1)} h ago; the protocol flags weights "
                    f"older than {fmt(d.weight_max_age.value)} h",
                )
            )
    return out


def beyond_use_at(protocol: Protocol, prepared_at: datetime) -> datetime:
    """The time by which the infusion must have ENDED (current label wording)."""
    return prepared_at + timedelta(hours=float(protocol.dosing.beyond_use.value))
