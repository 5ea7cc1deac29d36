"""The protocol's display words: how pages, the bag label and the records name clinical facts.

Python prints no clinical word or number of its own: the drug's product description, the
diluents, the route, the concentration window, "no in-line filter" and the beyond-use rule are
text in the protocol's ``words`` section. A number in that text is a placeholder for one of the
protocol's quantities (``{dosing.beyond_use}``), filled when printed from the protocol in use,
so an institution overlay that tightens the number changes the words with it and nothing
printed contradicts it.

Placeholders: ``{protocol.drug}`` (also ``brand``, ``name``, ``version``); a quantity path as
the protocol file writes it (``{dosing.concentration_window.min}``; ``QUANTITY_PATHS``), printed
as its value; ``{words.KEY}`` inside templates other than the words themselves; and whatever
the caller adds (a step's entries, for the ingredient table).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Dosing, Protocol, Step

# The words Bedside prints, each with what it is for (the loader lists these when one is
# missing or unknown).
WORD_KEYS: dict[str, str] = {
    "product": "the vial as the compounding record names it (drug, strength, form)",
    "route": "the route, in full (FHIR dosage)",
    "route_short": "the route as the bag label abbreviates it",
    "reconstitution_diluent": "the reconstitution diluent's name",
    "final_diluent": "the infusion diluent's full name (ingredient table)",
    "final_diluent_short": "the infusion diluent's short name (label, pages, dose plan)",
    "concentration_window": "the final concentration window",
    "outside_window": "why a concentration outside the window is flagged",
    "in_line_filter": "what the bag label says about in-line filters",
    "beyond_use": "the beyond-use rule, as the records state it",
    "label_dose_only": "why an ordered dose other than the label dose is flagged",
}

# Quantity paths as the protocol file writes them -> the model attribute that holds the value
# in use (an overlay's tightened number replaces the attribute, never the path).
QUANTITY_PATHS: dict[str, str] = {
    "dosing.dose_per_kg": "dosing.dose_per_kg",
    "dosing.vial_content": "dosing.vial_content",
    "dosing.vial_mass": "dosing.vial_mass",
    "dosing.reconstitution.volume": "dosing.reconstitution_volume",
    "dosing.reconstitution.concentration": "dosing.reconstituted_concentration",
    "dosing.reconstitution.mass_concentration": "dosing.reconstituted_mass_concentration",
    "dosing.concentration_window.min": "dosing.concentration_min",
    "dosing.concentration_window.max": "dosing.concentration_max",
    "dosing.infusion_duration": "dosing.infusion_duration",
    "dosing.beyond_use": "dosing.beyond_use",
    "dosing.weight.accepted_min": "dosing.weight_accepted_min",
    "dosing.weight.accepted_max": "dosing.weight_accepted_max",
    "dosing.weight.adult_min": "dosing.weight_adult_min",
    "dosing.weight.adult_max": "dosing.weight_adult_max",
    "dosing.weight.max_age": "dosing.weight_max_age",
    "schedule.min_interval": "schedule.min_interval",
    "schedule.max_doses_per_cycle": "schedule.max_doses_per_cycle",
    "schedule.max_doses_per_course": "schedule.max_doses_per_course",
    "schedule.max_cycles_per_course": "schedule.max_cycles_per_course",
    "schedule.cycle_days": "schedule.cycle_days",
    "schedule.rest_days": "schedule.rest_days",
    "eligibility.max_age": "eligibility.max_age",
}
PROTOCOL_FIELDS: tuple[str, ...] = ("drug", "brand", "name", "version")

_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.]*)\}")


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def unknown_placeholders(template: str, *, words: bool, extra: tuple[str, ...] = ()) -> list[str]:
    """Placeholders in ``template`` that nothing can fill (the loader refuses them)."""
    bad = []
    for name in placeholders(template):
        known = (
            name in QUANTITY_PATHS
            or (name.startswith("protocol.") and name.removeprefix("protocol.") in PROTOCOL_FIELDS)
            or (words and name.startswith("words.") and name.removeprefix("words.") in WORD_KEYS)
            or name in extra
        )
        if not known:
            bad.append(name)
    return bad


def number_text(value: Decimal) -> str:
    """A protocol number as text: trimmed, thousands grouped (22,000,000; 1.3; 48)."""
    n = value.normalize()
    if n == n.to_integral_value():
        return f"{int(n):,}"
    return f"{n:,f}"


def _attr(protocol: Any, dotted: str) -> Any:
    obj = protocol
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def fill_protocol_text(
    protocol: Protocol, template: str, values: Mapping[str, str] | None = None
) -> str:
    """``template`` with every placeholder filled from ``protocol`` (its quantities in use,
    its fields, its words) and ``values``. The loader has checked every placeholder."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if values is not None and name in values:
            return values[name]
        if name in QUANTITY_PATHS:
            return number_text(_attr(protocol, QUANTITY_PATHS[name]).value)
        if name.startswith("protocol."):
            return str(getattr(protocol, name.removeprefix("protocol.")))
        if name.startswith("words."):
            return protocol.say(name.removeprefix("words."))
        return match.group(0)

    return _PLACEHOLDER.sub(one, template)


def _option_label(steps: tuple[Step, ...], option_id: str) -> str:
    for step in steps:
        for item in step.items:
            for opt in item.options:
                if opt.id == option_id:
                    return opt.label
    return option_id


def legacy_words(dosing: Dosing, steps: tuple[Step, ...]) -> dict[str, str]:
    """Words for a protocol text written before ``words`` existed (cases pinned to it still
    print their records): built from that text's own data only (its option labels and
    quantities), never from another protocol's words. What the text has no data for is left
    empty and not printed."""
    window = "{dosing.concentration_window.min}-{dosing.concentration_window.max} mcg/mL"
    final = _option_label(steps, dosing.final_diluent)
    return {
        "product": "{protocol.brand} ({protocol.drug}) {dosing.vial_content} IU "
        "({dosing.vial_mass} mg)",
        "route": "",
        "route_short": "",
        "reconstitution_diluent": _option_label(steps, dosing.reconstitution_diluent),
        "final_diluent": final,
        "final_diluent_short": final,
        "concentration_window": window,
        "outside_window": f"outside the {window} window",
        "in_line_filter": "",
        "beyond_use": "beyond-use time {dosing.beyond_use} h",
        "label_dose_only": "",
    }
