"""The ``dosing`` and ``schedule`` sections: every number of the dose plan, each with a source.

Quantities are read through ``Context.quantity`` (value, unit, source, confirmed), so an item's
bound may later name one (``dosing.weight.accepted_min``) instead of repeating the number.
"""

from __future__ import annotations

from typing import Any, cast

from ._context import Context
from ._fields import MapReader, to_decimal
from ._yaml import YList
from .model import Dosing, Quantity, Schedule, VolumeBand

# The weight limits, in the order Dosing takes them.
_WEIGHTS = (
    ("accepted_min", "kg"),
    ("accepted_max", "kg"),
    ("adult_min", "kg"),
    ("adult_max", "kg"),
    ("max_age", "h"),
)


def dosing(ctx: Context, r: MapReader) -> Dosing | None:
    q = ctx.quantity
    dose = q(r, "dose_per_kg", "IU/kg", "dosing.dose_per_kg")
    vial = q(r, "vial_content", "IU", "dosing.vial_content")
    vial_mg = q(r, "vial_mass", "mg", "dosing.vial_mass")
    recon_vals = _reconstitution(ctx, r)
    convention = r.text("mg_convention")
    final_diluent = r.ident("final_diluent")
    cmin, cmax = _concentration_window(ctx, r)
    bands = _bands(ctx, r)
    infusion = q(r, "infusion_duration", "min", "dosing.infusion_duration")
    filter_allowed = _in_line_filter(ctx, r)
    bud = q(r, "beyond_use", "h", "dosing.beyond_use")
    wvals = _weights(ctx, r)
    r.done()
    parts = (
        dose,
        vial,
        vial_mg,
        *recon_vals,
        convention,
        final_diluent,
        cmin,
        cmax,
        infusion,
        bud,
        *wvals,
    )
    if any(p is None for p in parts) or filter_allowed is None or bands is None:
        return None
    return Dosing(
        dose_per_kg=cast(Quantity, dose),
        vial_content=cast(Quantity, vial),
        vial_mass=cast(Quantity, vial_mg),
        reconstitution_diluent=recon_vals[0],
        reconstitution_volume=recon_vals[1],
        reconstituted_concentration=recon_vals[2],
        reconstituted_mass_concentration=recon_vals[3],
        final_diluent=cast(str, final_diluent),
        concentration_min=cast(Quantity, cmin),
        concentration_max=cast(Quantity, cmax),
        infusion_duration=cast(Quantity, infusion),
        beyond_use=cast(Quantity, bud),
        volume_bands=bands,
        weight_accepted_min=cast(Quantity, wvals[0]),
        weight_accepted_max=cast(Quantity, wvals[1]),
        weight_adult_min=cast(Quantity, wvals[2]),
        weight_adult_max=cast(Quantity, wvals[3]),
        weight_max_age=cast(Quantity, wvals[4]),
        in_line_filter=filter_allowed,
        mg_convention=cast(str, convention),
    )


def _reconstitution(ctx: Context, r: MapReader) -> tuple[Any, ...]:
    """(diluent, volume, concentration, mass concentration); all None when the part is missing."""
    recon = r.sub("reconstitution")
    if not recon:
        return (None,) * 4
    q = ctx.quantity
    values = (
        recon.ident("diluent"),
        q(recon, "volume", "mL", "dosing.reconstitution.volume"),
        q(recon, "concentration", "IU/mL", "dosing.reconstitution.concentration"),
        q(recon, "mass_concentration", "mg/mL", "dosing.reconstitution.mass_concentration"),
    )
    recon.done()
    return values


def _concentration_window(ctx: Context, r: MapReader) -> tuple[Quantity | None, Quantity | None]:
    window = r.sub("concentration_window")
    if not window:
        return None, None
    cmin = ctx.quantity(window, "min", "mcg/mL", "dosing.concentration_window.min")
    cmax = ctx.quantity(window, "max", "mcg/mL", "dosing.concentration_window.max")
    window.done()
    if cmin and cmax and cmin.value >= cmax.value:
        ctx.issues.add(
            window.line,
            "dosing.concentration_window: min must be below max "
            f"(got {cmin.value} to {cmax.value})",
        )
    return cmin, cmax


def _in_line_filter(ctx: Context, r: MapReader) -> bool | None:
    filt = r.sub("in_line_filter")
    if not filt:
        return None
    allowed = filt.flag("allowed", required=True)
    ctx.cite(filt.line_of("source"), filt.text("source"), "dosing.in_line_filter")
    filt.text("note", required=False)
    filt.done()
    return allowed


def _weights(ctx: Context, r: MapReader) -> tuple[Quantity | None, ...]:
    """The weight limits in ``_WEIGHTS`` order; the accepted range must hold the adult one."""
    weight = r.sub("weight")
    if not weight:
        return (None,) * len(_WEIGHTS)
    wvals = tuple(ctx.quantity(weight, k, u, f"dosing.weight.{k}") for k, u in _WEIGHTS)
    weight.done()
    amin, amax, dmin, dmax, _ = wvals
    if not (amin and amax and dmin and dmax):
        return wvals
    if not (amin.value <= dmin.value < dmax.value <= amax.value):
        ctx.issues.add(
            weight.line,
            "dosing.weight: need accepted_min <= adult_min < adult_max <= accepted_max",
        )
    return wvals


def _bands(ctx: Context, r: MapReader) -> tuple[VolumeBand, ...] | None:
    seq = r.seq("dilution_bands")
    if seq is None:
        return None
    bands = _band_rows(ctx, seq)
    if bands is None:
        return None
    if not bands:
        ctx.issues.add(seq.line, "dosing.dilution_bands must list at least one band")
        return None
    return tuple(bands) if _bands_in_order(ctx, seq, bands) else None


def _band_rows(ctx: Context, seq: YList) -> list[VolumeBand] | None:
    """Each band as written, or None when any is wrong (every wrong one is reported)."""
    bands: list[VolumeBand] = []
    ok = True
    for i, node in enumerate(seq):
        where = f"dosing.dilution_bands[{i}]"
        b = MapReader(ctx.issues, node, where, seq.line_of(i))
        if not b.ok:
            ok = False
            continue
        raw_max = b.raw("max_dose_iu", required=True)
        max_iu = (
            None
            if raw_max is None
            else to_decimal(ctx.issues, raw_max, b.line_of("max_dose_iu"), where)
        )
        vol = b.number("diluent_volume_ml")
        source = b.text("source")
        confirmed = b.flag("confirmed", default=True)
        note = b.text("note", required=False, default="") or ""
        b.done()
        ctx.cite(b.line_of("source"), source, where)
        if vol is not None and vol <= 0:
            ctx.issues.add(
                b.line_of("diluent_volume_ml"),
                f"{where}.diluent_volume_ml must be greater than 0, got {vol}",
            )
            ok = False
        if raw_max is not None and max_iu is None:
            ok = False
        if vol is None or source is None:
            ok = False
            continue
        bands.append(VolumeBand(max_iu, vol, source, confirmed, note))
    return bands if ok else None


def _bands_in_order(ctx: Context, seq: YList, bands: list[VolumeBand]) -> bool:
    """Rising max_dose_iu, the last one open (null) so every dose has a volume."""
    for i, band in enumerate(bands):
        last = i == len(bands) - 1
        if band.max_dose_iu is None and not last:
            ctx.issues.add(
                seq.line_of(i),
                f"dosing.dilution_bands[{i}]: only the last band may have max_dose_iu: null",
            )
            return False
        if last and band.max_dose_iu is not None:
            ctx.issues.add(
                seq.line_of(i),
                "dosing.dilution_bands: the last band must have "
                "max_dose_iu: null so every dose has a volume",
            )
            return False
        if i and band.max_dose_iu is not None:
            prev = bands[i - 1].max_dose_iu
            if prev is not None and band.max_dose_iu <= prev:
                ctx.issues.add(
                    seq.line_of(i),
                    f"dosing.dilution_bands[{i}].max_dose_iu must "
                    f"be above the previous band's ({prev})",
                )
                return False
    return True


def schedule(ctx: Context, r: MapReader) -> Schedule | None:
    q = ctx.quantity
    parts = (
        q(r, "min_interval", "h", "schedule.min_interval"),
        q(r, "max_doses_per_cycle", "doses", "schedule.max_doses_per_cycle"),
        q(r, "max_doses_per_course", "doses", "schedule.max_doses_per_course"),
        q(r, "max_cycles_per_course", "cycles", "schedule.max_cycles_per_course"),
        q(r, "cycle_days", "d", "schedule.cycle_days"),
        q(r, "rest_days", "d", "schedule.rest_days"),
    )
    r.done()
    for name, part in zip(
        ("max_doses_per_cycle", "max_doses_per_course", "max_cycles_per_course"),
        parts[1:4],
        strict=True,
    ):
        if part is not None and part.value != part.value.to_integral_value():
            ctx.issues.add(
                r.line_of(name), f"schedule.{name} must be a whole number, got {part.value}"
            )
            return None
    if any(p is None for p in parts):
        return None
    return Schedule(*cast(tuple[Quantity, ...], parts))
