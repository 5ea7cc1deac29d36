"""Gravimetric verification of a preparation (issue 16.3): the container weighed before and
after each addition, the volume added computed as (after - before) / specific gravity and
judged against the plan within the protocol's tolerance.

Pure: the weights come in as entries (read from the balance by the service, or typed with a
reason), the constants from the protocol (``Protocol.gravimetric``). The specific gravities and
the tolerance are in no retrieved source, so every result carries the constants it used and
whether they are confirmed, for the compounding record to print.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from workflow.core.dosing import fmt
from workflow.core.errors import StepRefused
from workflow.core.protocol.model import Gravimetric, Protocol, Quantity, Step, WeighedAddition

if TYPE_CHECKING:  # the case layers import this module
    from workflow.core.case_state import CaseState


@dataclass(frozen=True)
class Weighing:
    """One addition, weighed and judged."""

    addition: WeighedAddition
    before_g: Decimal
    after_g: Decimal
    weighed_by: str  # "balance" or "typed"
    typed_reason: str | None
    specific_gravity: Quantity
    tolerance: Quantity
    volume_ml: Decimal  # (after - before) / specific gravity
    planned_ml: Decimal

    @property
    def difference_pct(self) -> Decimal:
        return (self.volume_ml - self.planned_ml) / self.planned_ml * 100

    @property
    def within(self) -> bool:
        return abs(self.difference_pct) <= self.tolerance.value

    @property
    def unconfirmed(self) -> tuple[str, ...]:
        """The constants this judgement rests on that no source confirms."""
        out = []
        if not self.specific_gravity.confirmed:
            out.append(f"specific gravity {fmt(self.specific_gravity.value, 4)} g/mL")
        if not self.tolerance.confirmed:
            out.append(f"tolerance {fmt(self.tolerance.value, 2)} %")
        return tuple(out)


def volume_ml(before_g: Decimal, after_g: Decimal, gravity: Quantity) -> Decimal:
    """The volume added, in mL: the weight gained over the liquid's specific gravity."""
    return (after_g - before_g) / gravity.value


def weighings(
    protocol: Protocol,
    step: Step,
    values: Mapping[str, Any],
    planned: Callable[[str], Any],
) -> list[Weighing]:
    """The additions weighed at ``step`` (none when the check is off), from the step's
    entries; ``planned`` resolves an expect reference such as ``plan.reconstituted_volume_ml``.
    Refuses (StepRefused, naming the item) a missing weight or an after lighter than before."""
    g: Gravimetric | None = protocol.gravimetric
    if g is None:
        return []
    out: list[Weighing] = []
    for a in g.at(step.id):
        before, after = values.get(f"{a.id}_before_g"), values.get(f"{a.id}_after_g")
        for item_id, value in ((f"{a.id}_before_g", before), (f"{a.id}_after_g", after)):
            if value is None:
                label = step.item(item_id)
                raise StepRefused(
                    "missing_item",
                    f"{label.label if label else item_id}: required, this site weighs "
                    f"'{a.title}' (gravimetric verification)",
                    field=item_id,
                )
        before_g, after_g = Decimal(str(before)), Decimal(str(after))
        if after_g <= before_g:
            raise StepRefused(
                "gravimetric_weights",
                f"'{step.title}': {a.title}: the weight after ({fmt(after_g, 3)} g) must be more "
                f"than the weight before ({fmt(before_g, 3)} g)",
                field=f"{a.id}_after_g",
            )
        gravity = g.specific_gravity[a.liquid]
        plan_value = planned(a.planned)
        if plan_value is None:
            raise StepRefused("not_ready", f"'{a.title}': no planned volume to weigh against")
        out.append(
            Weighing(
                addition=a,
                before_g=before_g,
                after_g=after_g,
                weighed_by=str(values.get(f"{a.id}_weighed_by") or "typed"),
                typed_reason=(
                    str(values[f"{a.id}_typed_reason"])
                    if values.get(f"{a.id}_typed_reason")
                    else None
                ),
                specific_gravity=gravity,
                tolerance=g.tolerance,
                volume_ml=volume_ml(before_g, after_g, gravity),
                planned_ml=Decimal(str(plan_value)),
            )
        )
    return out


def check_weighings(
    protocol: Protocol, step: Step, values: Mapping[str, Any], planned: Callable[[str], Any]
) -> None:
    """Refuse the step when a weighed volume is outside the tolerance, naming the step, the
    addition, the measured and the planned volume (and the constants, if unconfirmed)."""
    for w in weighings(protocol, step, values, planned):
        if w.within:
            continue
        caveat = f" (unconfirmed: {', '.join(w.unconfirmed)})" if w.unconfirmed else ""
        raise StepRefused(
            "gravimetric_out_of_tolerance",
            f"'{step.title}': {w.addition.title}: weighed {fmt(w.volume_ml, 2)} mL "
            f"(({fmt(w.after_g, 3)} g - {fmt(w.before_g, 3)} g) / "
            f"{fmt(w.specific_gravity.value, 4)} g/mL), planned {fmt(w.planned_ml, 2)} mL: "
            f"{fmt(w.difference_pct, 1)} % is outside the tolerance of "
            f"{fmt(w.tolerance.value, 2)} %{caveat}. Prepare it again or record it as wasted.",
            field=f"{w.addition.id}_after_g",
        )


# The balance's own line for a stable weight in grams (MT-SICS ``SI``: "S S      12.345 g"),
# as workflow.interop.balance accepts it; the weight in the entry must be the one it says.
_STABLE_REPLY = re.compile(r"^S S\s+(-?[0-9]+(?:\.[0-9]+)?)\s+g$")
SERIAL_MAX = 64


def check_balance_readings(
    protocol: Protocol, step: Step, values: Mapping[str, Any], readings: Mapping[str, Any]
) -> dict[str, dict[str, str]]:
    """The balance's replies kept with a step's weights (issue 16, orders16.5): each names a
    weight item of an addition weighed at this step, the addition is marked weighed by the
    balance, and the reply is a stable MT-SICS weight in grams equal to the entry. Returns
    them as the event keeps them: ``{item: {reply, serial, read_at}}`` (serial "" when the
    balance gave none). Refuses naming the item otherwise."""
    g = protocol.gravimetric
    items = {
        f"{a.id}_{suffix}": a.id
        for a in (g.at(step.id) if g is not None else ())
        for suffix in ("before_g", "after_g")
    }
    out: dict[str, dict[str, str]] = {}
    for item_id, reading in readings.items():
        if item_id not in items:
            raise StepRefused(
                "balance_reading",
                f"a balance reading for '{item_id}', which is not a weight this step weighs",
                field=item_id,
            )
        if values.get(f"{items[item_id]}_weighed_by") != "balance":
            raise StepRefused(
                "balance_reading",
                f"'{item_id}' comes with the balance's reply but is not marked weighed by the "
                "balance",
                field=item_id,
            )
        data = reading if isinstance(reading, Mapping) else {}
        reply = str(data.get("reply", "")).strip()
        serial = str(data.get("serial") or "").strip()[:SERIAL_MAX]
        found = _STABLE_REPLY.match(reply)
        entered = values.get(item_id)
        if found is None or entered is None or Decimal(found.group(1)) != Decimal(str(entered)):
            raise StepRefused(
                "balance_reading",
                f"'{item_id}': the weight entered ({entered}) is not the balance's reply "
                f"('{reply}'); read the balance again",
                field=item_id,
            )
        out[item_id] = {"reply": reply, "serial": serial, "read_at": str(data.get("read_at", ""))}
    return out


def balance_replies(case: CaseState, step_id: str) -> Mapping[str, Mapping[str, str]]:
    """The balance's replies kept with the step's current entry (none for a typed weight, or
    for an entry made before replies were kept, or a correction that typed a new weight)."""
    entry = case.current.get(step_id)
    if entry is None:
        return {}
    event = case.events[entry.seq - 1]
    found = event.data.get("balance_readings")
    return found if isinstance(found, Mapping) else {}


def recorded_weighings(case: CaseState) -> list[Weighing]:
    """The weighings in a case's current (signed) entries, for the compounding record."""
    out: list[Weighing] = []
    g = case.protocol.gravimetric
    if g is None or not g.enabled:
        return out
    for step in case.protocol.steps:
        entry = case.current.get(step.id)
        if entry is not None and g.at(step.id):
            out += weighings(case.protocol, step, entry.values, case._expected)
    return out
