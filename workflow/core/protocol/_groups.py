"""A step's ``normal_groups``: findings recorded with one "all normal" tap (issue 12.4).

Each group lists items of its step with the value a normal finding records. The value is an
ordinary entry (a choice's option, a yes/no, a number), so the rules read it exactly as a value
entered item by item. A group whose normal values would fire a rule is refused at load: an
"all normal" tap can never record a finding the protocol calls abnormal.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from ._fields import Issues, MapReader
from ._yaml import YList
from .model import Item, NormalGroup, Rule, Step


def normal_groups(
    issues: Issues, seq: YList, where: str, items: tuple[Item, ...]
) -> tuple[NormalGroup, ...]:
    by_id = {it.id: it for it in items}
    out: list[NormalGroup] = []
    seen: dict[str, str] = {}
    for i, node in enumerate(seq):
        r = MapReader(issues, node, f"{where}.normal_groups[{i}]", seq.line_of(i))
        if not r.ok:
            continue
        gid, title = r.ident("id"), r.text("title")
        normal = r.raw("normal", required=True)
        r.done()
        if not isinstance(normal, dict) or not normal:
            issues.add(r.line_of("normal"), f"{r.where}.normal must map item ids to values")
            continue
        values: list[tuple[str, str | bool]] = []
        for key, raw in normal.items():
            item = by_id.get(key)
            if item is None:
                issues.add(r.line_of("normal"), f"{r.where}.normal: '{key}' is not an item here")
                continue
            if key in seen:
                issues.add(
                    r.line_of("normal"), f"{r.where}.normal: '{key}' is in group '{seen[key]}' too"
                )
            seen[key] = gid or "?"
            value = _value(item, raw)
            if value is None:
                issues.add(
                    r.line_of("normal"),
                    f"{r.where}.normal: {raw!r} is not a value of {item.type} item '{key}'",
                )
                continue
            values.append((key, value))
        if gid and title and values:
            out.append(NormalGroup(gid, title, tuple(values)))
    return tuple(out)


def _value(item: Item, raw: Any) -> str | bool | None:
    if item.must_be is not None:
        return None  # an attestation is ticked on its own, never by a group
    if item.type == "boolean":
        return raw if isinstance(raw, bool) else None
    if item.type == "choice":
        return raw if isinstance(raw, str) and raw in item.option_ids() else None
    if item.type in ("number", "integer") and not isinstance(raw, bool):
        try:
            number = Decimal(str(raw))
        except InvalidOperation:
            return None
        if item.type == "integer" and number != number.to_integral_value():
            return None
        if (item.min is not None and number < item.min) or (
            item.max is not None and number > item.max
        ):
            return None
        return str(raw)
    return None


def check_against_rules(
    issues: Issues, steps: Sequence[Step], rules: Sequence[Rule], line_of: Any
) -> None:
    """No group's normal values may fire a rule (they are normal only if no rule says not)."""
    from workflow.core.rules import test  # the rules read protocol models: import when loaded

    for step in steps:
        for group in step.normal_groups:
            values = dict(group.normal)
            for rule in rules:
                if test(rule.when, values) is True:
                    issues.add(
                        line_of(step.id),
                        f"step '{step.id}' normal group '{group.id}' fires rule '{rule.id}'",
                    )
