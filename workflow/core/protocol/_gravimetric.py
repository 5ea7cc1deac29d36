"""The optional ``gravimetric`` section (issue 16.3), checked like every other section: each
problem is one FILE:LINE issue, and nothing is built until the whole section is sound.

    gravimetric:
      enabled: false                # a site turns it on in its overlay
      tolerance: {value: 5, unit: "%", source: ..., confirmed: false}
      specific_gravity:
        reconstituted: {value: 1.0, unit: g/mL, source: ..., confirmed: false}
      additions:
        - {id: dose_added, step: dilution, title: ..., planned: plan.reconstituted_volume_ml,
           liquid: reconstituted}

Each addition's step must carry the items it reads once the check is on: ``{id}_before_g``
and ``{id}_after_g`` (numbers in g), ``{id}_weighed_by`` (a choice with ``balance`` and
``typed``) and ``{id}_typed_reason`` (a choice, required when typed). A site that turns it on
adds them with ``add_items`` in the same overlay, so a site without a balance never sees them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._fields import MapReader
from .model import PLAN_FIELDS, Gravimetric, Quantity, Step, WeighedAddition

if TYPE_CHECKING:
    from ._context import Context

TOLERANCE_UNIT = "%"
GRAVITY_UNIT = "g/mL"


def quantities(
    v: Context, r: MapReader, path: str, required: bool = True
) -> tuple[Quantity | None, dict[str, Quantity]]:
    """The tolerance and the specific gravities of ``r`` (a protocol's, or an overlay's,
    which may leave out either and keep the protocol's)."""
    tolerance = (
        v.quantity(r, "tolerance", TOLERANCE_UNIT, f"{path}.tolerance")
        if required or r.has("tolerance")
        else None
    )
    if tolerance is not None and tolerance.value >= 100:
        v.issues.add(
            r.line_of("tolerance"),
            f"{path}.tolerance must be below 100 %, got {tolerance.value}",
        )
        tolerance = None
    gravities: dict[str, Quantity] = {}
    sg = r.sub("specific_gravity", required=False)
    if sg is not None:
        for liquid in list(sg.node):
            q = v.quantity(sg, str(liquid), GRAVITY_UNIT, f"{path}.specific_gravity.{liquid}")
            if q is not None:
                gravities[str(liquid)] = q
        sg.done()
    return tolerance, gravities


def gravimetric(v: Context, r: MapReader, steps: tuple[Step, ...]) -> Gravimetric | None:
    enabled = r.flag("enabled", required=True)
    tolerance, gravities = quantities(v, r, "gravimetric")
    seq = r.seq("additions")
    additions: list[WeighedAddition] = []
    ok = tolerance is not None and seq is not None
    for i, node in enumerate(seq or []):
        a = MapReader(v.issues, node, f"gravimetric.additions[{i}]", seq.line_of(i) if seq else 0)
        if not a.ok:
            ok = False
            continue
        fields = (a.ident("id"), a.ident("step"), a.text("title"), a.text("planned"))
        liquid = a.ident("liquid")
        a.done()
        aid, step_id, title, planned = fields
        if None in fields or liquid is None:
            ok = False
            continue
        assert aid and step_id and title and planned  # for the type checker: checked above
        if not _fits(v, a, (aid, step_id, planned, liquid), gravities, steps, enabled):
            ok = False
            continue
        additions.append(WeighedAddition(aid, step_id, title, planned, liquid))
    r.done()
    if not ok or tolerance is None:
        return None
    return Gravimetric(enabled, tolerance, gravities, tuple(additions))


def missing_items(addition: WeighedAddition, step: Step) -> list[str]:
    """What ``step`` lacks of the items ``addition`` reads (see the module's docstring)."""
    out: list[str] = []
    aid = addition.id
    for suffix, kind in (
        ("before_g", "number"),
        ("after_g", "number"),
        ("weighed_by", "choice"),
        ("typed_reason", "choice"),
    ):
        item = step.item(f"{aid}_{suffix}")
        if item is None or item.type != kind or (kind == "number" and item.unit != "g"):
            what = "a number in g" if kind == "number" else "a choice"
            out.append(f"step '{step.id}' needs the item '{aid}_{suffix}' ({what})")
    how = step.item(f"{aid}_weighed_by")
    if how is not None and not {"balance", "typed"} <= set(how.option_ids()):
        out.append(f"item '{aid}_weighed_by' needs the options balance and typed")
    return out


def _fits(
    v: Context,
    a: MapReader,
    names: tuple[str, str, str, str],
    gravities: dict[str, Quantity],
    steps: tuple[Step, ...],
    enabled: bool,
) -> bool:
    aid, step_id, planned, liquid = names
    ns, _, name = planned.partition(".")
    problems: list[tuple[str, str]] = []
    if ns != "plan" or PLAN_FIELDS.get(name) != "number" or not name.endswith("_ml"):
        volumes = ", ".join(f"plan.{f}" for f, t in PLAN_FIELDS.items() if f.endswith("_ml"))
        problems.append(("planned", f"'{planned}' is not a planned volume (allowed: {volumes})"))
    if liquid not in gravities:
        known = ", ".join(gravities) or "none"
        problems.append(("liquid", f"'{liquid}' has no specific_gravity (defined: {known})"))
    step = next((s for s in steps if s.id == step_id), None)
    if step is None:
        problems.append(("step", f"step '{step_id}' does not exist"))
    elif enabled:
        addition = WeighedAddition(aid, step_id, "", planned, liquid)
        problems += [("step", m) for m in missing_items(addition, step)]
    for key, message in problems:
        v.issues.add(a.line_of(key), f"{a.where}.{key}: {message}")
    return not problems
