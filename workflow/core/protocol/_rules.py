"""The ``rules`` section (hold and discontinue rules) and the conditions they and items use.

A condition is data, never an expression string: ``{item, op, value}`` or ``{any|all: [...]}``,
and a rule may only test items of the steps that evaluate rules, with values their type allows.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from ._context import Context
from ._fields import MapReader, to_decimal
from ._yaml import YList
from .model import OPS, Condition, Item, Op, Rule, RuleAction, Step


def rules(ctx: Context, seq: YList, steps: tuple[Step, ...]) -> tuple[Rule, ...]:
    rule_items: dict[str, Item] = {}
    for s in steps:
        if s.evaluates_rules:
            for it in s.items:
                rule_items.setdefault(it.id, it)
    out: list[Rule] = []
    seen: set[str] = set()
    for i, node in enumerate(seq):
        r = MapReader(ctx.issues, node, f"rules[{i}]", seq.line_of(i))
        if not r.ok:
            continue
        rid = r.ident("id")
        if rid:
            r.where = f"rule '{rid}'"
            if rid in seen:
                ctx.issues.add(r.line_of("id"), f"duplicate rule id '{rid}'")
                continue
            seen.add(rid)
        rule = _rule(ctx, r, rid, rule_items)
        if rule is not None:
            out.append(rule)
    return tuple(out)


def _rule(ctx: Context, r: MapReader, rid: str | None, rule_items: dict[str, Item]) -> Rule | None:
    action = r.text("action")
    text = r.text("text")
    when_node = r.raw("when", required=True)
    resume_node = r.raw("resume_when")
    resume_confirmed = r.flag("resume_confirmed", default=True)
    source = r.text("source")
    confirmed = r.flag("confirmed", default=True)
    note = r.text("note", required=False, default="") or ""
    r.done()
    ctx.cite(r.line_of("source"), source, r.where)
    if not r.allowed("action", action, ("hold", "discontinue")):
        return None
    when = (
        condition(ctx, when_node, r.line_of("when"), f"{r.where}.when", rule_items)
        if when_node is not None
        else None
    )
    resume = (
        condition(ctx, resume_node, r.line_of("resume_when"), f"{r.where}.resume_when", rule_items)
        if resume_node is not None
        else None
    )
    if action == "discontinue" and resume is not None:
        ctx.issues.add(
            r.line_of("resume_when"),
            f"{r.where}: a discontinue rule ends the course and cannot have resume_when",
        )
    if not (rid and action and text and when and source):
        return None
    if not resume_confirmed:
        note = (note + " " if note else "") + "(resume criterion UNCONFIRMED)"
    return Rule(rid, cast(RuleAction, action), text, when, resume, source, confirmed, note.strip())


def condition(
    ctx: Context, node: Any, line: int, where: str, items: dict[str, Item] | None
) -> Condition | None:
    """Parse ``{item, op, value}`` or ``{any: [...]}`` / ``{all: [...]}``.

    ``items`` is the set the condition may test (None: any item of the step, checked by the
    caller).
    """
    r = MapReader(ctx.issues, node, where, line)
    if not r.ok:
        return None
    if r.has("any") or r.has("all"):
        key = "any" if r.has("any") else "all"
        seq = r.seq(key)
        r.done()
        subs: list[Condition] = []
        for i, sub in enumerate(seq or []):
            c = condition(ctx, sub, seq.line_of(i) if seq else line, f"{where}.{key}[{i}]", items)
            if c is None:
                return None
            subs.append(c)
        if not subs:
            ctx.issues.add(line, f"{where}.{key} needs at least one condition")
            return None
        return Condition(any_of=tuple(subs)) if key == "any" else Condition(all_of=tuple(subs))
    item_id = r.ident("item")
    op = r.text("op")
    raw = r.raw("value", required=True)
    r.done()
    if not r.allowed("op", op, OPS):
        return None
    if item_id is None or op is None or raw is None:
        return None
    item = None
    if items is not None:
        item = items.get(item_id)
        if item is None:
            ctx.issues.add(
                r.line_of("item"),
                f"{where}.item '{item_id}' is not an item of "
                "any step that evaluates rules (known: "
                f"{', '.join(sorted(items))})",
            )
            return None
    value = _condition_value(ctx, r, raw, cast(Op, op), item, where)
    if value is None:
        return None
    return Condition(item=item_id, op=cast(Op, op), value=value)


def _condition_value(
    ctx: Context, r: MapReader, raw: Any, op: Op, item: Item | None, where: str
) -> Decimal | str | bool | tuple[str, ...] | None:
    line = r.line_of("value")
    if op in ("in", "not_in"):
        if not isinstance(raw, YList) or not raw:
            ctx.issues.add(line, f"{where}.value must be a non-empty list for op '{op}'")
            return None
        values = tuple(str(v) for v in raw)
        if item is not None and item.type == "choice":
            bad = [v for v in values if v not in item.option_ids()]
            if bad:
                ctx.issues.add(
                    line,
                    f"{where}.value {bad} not among item '{item.id}' "
                    f"options ({', '.join(item.option_ids())})",
                )
                return None
        elif item is not None:
            ctx.issues.add(
                line, f"{where}: op '{op}' needs a choice item; '{item.id}' is {item.type}"
            )
            return None
        return values
    if item is None:
        if isinstance(raw, bool):
            return raw
        return str(raw)
    if item.type in ("number", "integer"):
        return to_decimal(ctx.issues, raw, line, f"{where}.value")
    if item.type == "boolean":
        if not isinstance(raw, bool) or op not in ("eq", "ne"):
            ctx.issues.add(
                line,
                f"{where}: boolean item '{item.id}' takes op eq/ne with value true or false",
            )
            return None
        return raw
    if item.type == "choice":
        if op not in ("eq", "ne") or str(raw) not in item.option_ids():
            ctx.issues.add(
                line,
                f"{where}: choice item '{item.id}' takes op eq/ne/in/not_in "
                f"with its options ({', '.join(item.option_ids())})",
            )
            return None
        return str(raw)
    ctx.issues.add(line, f"{where}: rules cannot test {item.type} item '{item.id}'")
    return None
