"""Institution overlays: a YAML file beside the protocol that may only tighten or add.

An overlay adds items (extra findings, attestations, non-label practice such as albumin) to
steps, adds hold / discontinue rules, replaces a protocol rule with a provably stricter one,
tightens protocol numbers in their safe direction, adds course rules ("held 3 times:
discontinue") and lists the products a scanned barcode may be (the formulary). Every addition
names its own source.

"Tighten only" is checked mechanically, never trusted: a replacement rule must fire whenever
the protocol's rule fires (proved from the condition shapes, see ``implies``), keep or raise its
action (a discontinue never becomes a hold) and resume no earlier; a number may move only in the
direction that refuses or flags more often; nothing can be removed (there is no key for it).
Anything that cannot be proved tighter is refused, naming the rule or key, with FILE:LINE.

The combination is identified by the hash of ``combination_text`` (the protocol file's hash and
the overlay file's hash), so a case records and replays on exactly that pair.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from workflow.core.errors import ProtocolError, ProtocolIssue

from . import _gravimetric, _head, _rules
from ._context import Context
from ._fields import Issues, MapReader
from ._items import read_items
from ._yaml import YList, YMap, load_document, read_file
from .model import (
    Acknowledgement,
    Condition,
    CourseRule,
    CourseStart,
    Gravimetric,
    Item,
    OverlayRef,
    Product,
    Protocol,
    Quantity,
    Rule,
    RuleAction,
    Step,
)

Direction = Literal["raise", "lower"]

# Protocol numbers an overlay may change, and the only direction that is stricter. Everything
# else (the label dose, vial content, reconstitution volume, D5W bands...) is fixed.
TIGHTEN: dict[str, tuple[str, str, Direction]] = {
    # key: (section attribute path, unit, stricter direction)
    "schedule.min_interval": ("schedule.min_interval", "h", "raise"),
    "schedule.max_doses_per_cycle": ("schedule.max_doses_per_cycle", "doses", "lower"),
    "schedule.max_doses_per_course": ("schedule.max_doses_per_course", "doses", "lower"),
    "schedule.max_cycles_per_course": ("schedule.max_cycles_per_course", "cycles", "lower"),
    "schedule.cycle_days": ("schedule.cycle_days", "d", "lower"),
    "schedule.rest_days": ("schedule.rest_days", "d", "raise"),
    "dosing.beyond_use": ("dosing.beyond_use", "h", "lower"),
    "dosing.concentration_window.min": ("dosing.concentration_min", "mcg/mL", "raise"),
    "dosing.concentration_window.max": ("dosing.concentration_max", "mcg/mL", "lower"),
    "dosing.weight.accepted_min": ("dosing.weight_accepted_min", "kg", "raise"),
    "dosing.weight.accepted_max": ("dosing.weight_accepted_max", "kg", "lower"),
    "dosing.weight.adult_min": ("dosing.weight_adult_min", "kg", "raise"),
    "dosing.weight.adult_max": ("dosing.weight_adult_max", "kg", "lower"),
    "dosing.weight.max_age": ("dosing.weight_max_age", "h", "lower"),
    "eligibility.max_age": ("eligibility.max_age", "d", "lower"),
}
COMBINATION_KIND = "combination"


def combination_text(protocol_hash: str, overlay_hash: str) -> bytes:
    """The stored text naming a protocol + overlay pair; its SHA-256 identifies the pair."""
    return json.dumps(
        {
            "kind": "bedside-protocol-combination",
            "overlay": overlay_hash,
            "protocol": protocol_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode("utf-8")


def parse_combination(text: bytes) -> tuple[str, str]:
    """(protocol hash, overlay hash) of a stored combination text."""
    data = json.loads(text.decode("utf-8"))
    return str(data["protocol"]), str(data["overlay"])


def load_overlay(path: str | Path, protocol: Protocol) -> Protocol:
    """Read an overlay file and combine it with ``protocol``; ProtocolError lists every problem."""
    return parse_overlay(read_file(path), str(Path(path)), protocol)


def parse_overlay(data: bytes, filename: str, protocol: Protocol) -> Protocol:
    if protocol.overlay is not None:
        raise ProtocolError(
            [ProtocolIssue(filename, 0, "the protocol already carries an overlay; apply one only")]
        )
    root = load_document(data, filename)
    issues = Issues(filename)
    overlay_hash = hashlib.sha256(data).hexdigest()
    combined = _OverlayReader(issues, root, protocol, overlay_hash, filename).run()
    if issues.items or combined is None:
        raise ProtocolError(sorted(issues.items, key=lambda i: i.line))
    return combined


class _OverlayReader:
    def __init__(
        self, issues: Issues, root: Any, base: Protocol, overlay_hash: str, filename: str
    ) -> None:
        self.issues = issues
        self.root = root
        self.base = base
        self.overlay_hash = overlay_hash
        self.filename = filename
        # The protocol loader's readers check items, conditions and citations the same way.
        self.v = Context(issues)
        self.v.sources = dict(base.sources)
        self.v.roles = dict(base.roles)

    def run(self) -> Protocol | None:
        top = MapReader(self.issues, self.root, "overlay file", 1)
        if not top.ok:
            return None
        head = top.sub("overlay")
        ref = self._head(head) if head else None
        src = top.sub("sources", required=False)
        if src:
            before = set(self.base.sources)
            for key in list(src.node):
                if key in before:
                    self.issues.add(
                        src.line_of(key),
                        f"sources.{key} is a protocol source; an overlay may add sources, "
                        "not redefine them",
                    )
            _head.sources(self.v, src)
        steps = self._add_items(top.seq("add_items", required=False))
        rules = self._rules(top, steps)
        numbers = self._numbers(top.sub("tighten_numbers", required=False))
        course_rules = self._course_rules(top.seq("course_rules", required=False))
        formulary = self._formulary(top.seq("formulary", required=False))
        acks, start = self._hard_stops(top.seq("hard_stops", required=False))
        gravimetric = self._gravimetric(top.sub("gravimetric", required=False), steps)
        top.done()
        self.v.check_sources()
        if ref is None or self.issues.items:
            return None
        sections: dict[str, Any] = {
            "schedule": self.base.schedule,
            "dosing": self.base.dosing,
            "eligibility": self.base.eligibility,
        }
        for key, q in numbers.items():
            section, attr = TIGHTEN[key][0].split(".", 1)
            sections[section] = replace(sections[section], **{attr: q})
        combo = combination_text(self.base.content_hash, self.overlay_hash)
        return replace(
            self.base,
            steps=steps,
            rules=rules,
            sources=self.v.sources,
            schedule=sections["schedule"],
            dosing=sections["dosing"],
            eligibility=sections["eligibility"],
            course_rules=course_rules,
            formulary=formulary,
            acknowledgements=acks,
            course_start=start,
            gravimetric=gravimetric,
            overlay=ref,
            base_hash=self.base.content_hash,
            content_hash=hashlib.sha256(combo).hexdigest(),
        )

    # -- sections ------------------------------------------------------------------------------
    def _head(self, r: MapReader) -> OverlayRef | None:
        oid, name, version = r.text("id"), r.text("name"), r.text("version")
        target = r.text("protocol")
        r.done()
        if target is not None and target != self.base.id:
            self.issues.add(
                r.line_of("protocol"),
                f"overlay.protocol '{target}' does not match the protocol's id '{self.base.id}'",
            )
            return None
        if oid is None or name is None or version is None or target is None:
            return None
        return OverlayRef(oid, name, version, self.overlay_hash, self.filename)

    def _add_items(self, seq: YList | None) -> tuple[Step, ...]:
        steps = {s.id: s for s in self.base.steps}
        for i, node in enumerate(seq or []):
            r = MapReader(self.issues, node, f"add_items[{i}]", seq.line_of(i) if seq else 1)
            if not r.ok:
                continue
            step_id = r.ident("step")
            source = r.text("source")
            items_seq = r.seq("items")
            r.done()
            self.v.cite(r.line_of("source"), source, r.where)
            if step_id is None or items_seq is None:
                continue
            step = steps.get(step_id)
            if step is None:
                self.issues.add(
                    r.line_of("step"),
                    f"add_items[{i}].step '{step_id}' is not a protocol step "
                    f"(steps: {', '.join(steps)})",
                )
                continue
            new = read_items(self.v, items_seq, f"add_items[{i}] ({step_id})")
            if new is None:
                continue
            clash = [it.id for it in new if step.item(it.id) is not None]
            if clash:
                self.issues.add(
                    items_seq.line,
                    f"add_items[{i}]: step '{step_id}' already has item(s) {', '.join(clash)}; "
                    "an overlay adds items, it cannot redefine them",
                )
                continue
            steps[step_id] = replace(step, items=(*step.items, *_sourced(new, source)))
        return tuple(steps[s.id] for s in self.base.steps)

    def _rules(self, top: MapReader, steps: tuple[Step, ...]) -> tuple[Rule, ...]:
        add = top.seq("add_rules", required=False)
        tighten = top.seq("tighten_rules", required=False)
        base_ids = {r.id for r in self.base.rules}
        added = _rules.rules(self.v, add, steps) if add is not None else ()
        for rule in added:
            if rule.id in base_ids:
                self.issues.add(
                    _rule_line(add, rule.id),
                    f"add_rules: rule '{rule.id}' is already a protocol rule; "
                    "use tighten_rules to make it stricter",
                )
        stricter = _rules.rules(self.v, tighten, steps) if tighten is not None else ()
        replaced: dict[str, Rule] = {}
        for new in stricter:
            line = _rule_line(tighten, new.id)
            if new.id not in base_ids:
                self.issues.add(
                    line,
                    f"tighten_rules: '{new.id}' is not a protocol rule "
                    "(add new rules under add_rules)",
                )
                continue
            problem = loosens(self.base.rule(new.id), new)
            if problem:
                self.issues.add(line, f"tighten_rules: rule '{new.id}' {problem}")
                continue
            replaced[new.id] = new
        return (*(replaced.get(r.id, r) for r in self.base.rules), *added)

    def _numbers(self, r: MapReader | None) -> dict[str, Quantity]:
        out: dict[str, Quantity] = {}
        if r is None:
            return out
        for key in list(r.node):
            if key not in TIGHTEN:
                r.seen.add(key)
                self.issues.add(
                    r.line_of(key),
                    f"tighten_numbers: '{key}' cannot be changed by an overlay (allowed: "
                    f"{', '.join(TIGHTEN)})",
                )
                continue
            path, unit, direction = TIGHTEN[key]
            new = self.v.quantity(r, key, unit, f"tighten_numbers.{key}")
            if new is None:
                continue
            old = _attr(self.base, path)
            looser = new.value < old.value if direction == "raise" else new.value > old.value
            if looser:
                word = "lowered" if direction == "raise" else "raised"
                self.issues.add(
                    r.line_of(key),
                    f"tighten_numbers: '{key}' {word} from {old.value} to {new.value} "
                    f"{unit} loosens the protocol (it may only be "
                    f"{'raised' if direction == 'raise' else 'lowered'})",
                )
                continue
            out[key] = new
        r.done()
        return out

    def _gravimetric(self, r: MapReader | None, steps: tuple[Step, ...]) -> Gravimetric | None:
        """A site turns gravimetric verification on (or keeps it off) and sets its own
        tolerance and specific gravities, each cited: the protocol's are unconfirmed
        placeholders, not limits to tighten. Once on, every weighed step needs its items."""
        base = self.base.gravimetric
        if r is None:
            return base
        if base is None:
            r.done(allowed_extra=tuple(r.node))
            self.issues.add(r.line, "gravimetric: the protocol has no gravimetric section")
            return None
        enabled = r.flag("enabled", default=base.enabled)
        tolerance, gravities = _gravimetric.quantities(self.v, r, "gravimetric", required=False)
        r.done()
        unknown = [k for k in gravities if k not in base.specific_gravity]
        for liquid in unknown:
            self.issues.add(
                r.line,
                f"gravimetric.specific_gravity.{liquid}: the protocol weighs no such liquid "
                f"(liquids: {', '.join(base.specific_gravity)})",
            )
        combined = replace(
            base,
            enabled=enabled,
            tolerance=tolerance or base.tolerance,
            specific_gravity={**base.specific_gravity, **gravities},
        )
        by_id = {s.id: s for s in steps}
        for addition in combined.additions if enabled else ():
            step = by_id.get(addition.step)
            for message in _gravimetric.missing_items(addition, step) if step else []:
                self.issues.add(
                    r.line,
                    f"gravimetric: {message} (add it with add_items) to weigh '{addition.title}'",
                )
        return combined

    def _hard_stops(
        self, seq: YList | None
    ) -> tuple[tuple[Acknowledgement, ...], CourseStart | None]:
        """Turn acknowledgements (or the retreatment override) into hard stops: tightening only."""
        acks = {a.id: a for a in self.base.acknowledgements}
        start = self.base.course_start
        for i, node in enumerate(seq or []):
            r = MapReader(self.issues, node, f"hard_stops[{i}]", seq.line_of(i) if seq else 1)
            if not r.ok:
                continue
            target = r.ident("id")
            source = r.text("source")
            r.done()
            self.v.cite(r.line_of("source"), source, r.where)
            if target is None or source is None:
                continue
            if target == "retreatment" and start is not None and start.retreatment is not None:
                start = replace(start, retreatment=replace(start.retreatment, override_roles=()))
            elif target in acks:
                acks[target] = replace(
                    acks[target], refuse=True, source=source, note=f"hard stop ({source})"
                )
            else:
                self.issues.add(
                    r.line_of("id"),
                    f"hard_stops[{i}].id '{target}' is neither an acknowledgement of the "
                    f"protocol ({', '.join(acks) or 'none'}) nor 'retreatment'",
                )
        return tuple(acks.values()), start

    def _course_rules(self, seq: YList | None) -> tuple[CourseRule, ...]:
        out: list[CourseRule] = []
        for i, node in enumerate(seq or []):
            r = MapReader(self.issues, node, f"course_rules[{i}]", seq.line_of(i) if seq else 1)
            if not r.ok:
                continue
            rid, action, text = r.ident("id"), r.text("action"), r.text("text")
            count = r.whole("held_doses_at_least")
            source = r.text("source")
            confirmed = r.flag("confirmed", default=True)
            note = r.text("note", required=False, default="") or ""
            r.done()
            self.v.cite(r.line_of("source"), source, f"course rule '{rid}'")
            if action is not None and action != "discontinue":
                self.issues.add(
                    r.line_of("action"),
                    f"course_rules[{i}].action '{action}' is not allowed (allowed: discontinue)",
                )
                continue
            if count is not None and count < 1:
                self.issues.add(
                    r.line_of("held_doses_at_least"),
                    f"course_rules[{i}].held_doses_at_least must be 1 or more",
                )
                continue
            if rid and action and text and count and source:
                act: RuleAction = "discontinue"
                out.append(CourseRule(rid, act, text, count, source, confirmed, note))
        return tuple(out)

    def _formulary(self, seq: YList | None) -> tuple[Product, ...]:
        out: list[Product] = []
        for i, node in enumerate(seq or []):
            r = MapReader(self.issues, node, f"formulary[{i}]", seq.line_of(i) if seq else 1)
            if not r.ok:
                continue
            gtin, kind = r.text("gtin"), r.ident("kind")
            description, source = r.text("description"), r.text("source")
            confirmed = r.flag("confirmed", default=True)
            r.done()
            self.v.cite(r.line_of("source"), source, f"formulary[{i}]")
            if gtin is not None and not (gtin.isdigit() and len(gtin) == 14):
                self.issues.add(
                    r.line_of("gtin"), f"formulary[{i}].gtin must be 14 digits, got '{gtin}'"
                )
                continue
            kinds = self.base.scan_steps()
            if kind is not None and kind not in kinds:
                self.issues.add(
                    r.line_of("kind"),
                    f"formulary[{i}].kind '{kind}' is not a product the protocol scans "
                    f"(allowed: {', '.join(kinds) or 'none'})",
                )
                continue
            if gtin and kind and description and source:
                out.append(Product(gtin, kind, description, source, confirmed))
        return tuple(out)


def _rule_line(seq: YList | None, rule_id: str) -> int:
    """The line of the rule with this id in ``seq`` (so a refusal points at the rule)."""
    if seq is None:
        return 1
    for i, node in enumerate(seq):
        if isinstance(node, YMap) and node.get("id") == rule_id:
            return seq.line_of(i)
    return seq.line


def _sourced(items: tuple[Item, ...], source: str | None) -> tuple[Item, ...]:
    # Items carry no source field of their own; the overlay's source is shown in their help.
    if not source:
        return items
    return tuple(
        replace(it, help=(f"{it.help} " if it.help else "") + f"[overlay source: {source}]")
        for it in items
    )


def _attr(protocol: Protocol, path: str) -> Quantity:
    section, attr = path.split(".", 1)
    value = getattr(getattr(protocol, section), attr)
    assert isinstance(value, Quantity)
    return value


# -- tighter-than proofs ----------------------------------------------------------------------
def loosens(old: Rule, new: Rule) -> str | None:
    """Why ``new`` is not provably at least as strict as ``old`` (None: it is)."""
    if old.action == "discontinue" and new.action == "hold":
        return "would turn a discontinue rule into a hold"
    if not implies(old.when, new.when):
        return (
            "loosens 'when': the overlay's condition does not provably fire whenever the "
            "protocol's does"
        )
    if new.action == "discontinue":
        return None  # a discontinue never resumes: stricter than any resume criterion
    if old.resume_when is not None:
        if new.resume_when is None or not implies(new.resume_when, old.resume_when):
            return (
                "loosens 'resume_when': the overlay's criterion must be met only when the "
                "protocol's is"
            )
    elif new.resume_when is not None:
        return "adds a resume criterion the protocol's rule does not have (it could resume earlier)"
    return None


def implies(a: Condition, b: Condition) -> bool:
    """True when every set of values that makes ``a`` true also makes ``b`` true.

    Sound but not complete: proved from the shapes only. False means "not proved", which the
    overlay check treats as loosening.
    """
    if b.any_of and any(implies(a, sub) for sub in b.any_of):
        return True
    if a.any_of:
        return all(implies(sub, b) for sub in a.any_of)
    if b.all_of:
        return all(implies(a, sub) for sub in b.all_of)
    if a.all_of:
        return any(implies(sub, b) for sub in a.all_of)
    if b.any_of:
        return False
    return _leaf_implies(a, b)


def _leaf_implies(a: Condition, b: Condition) -> bool:
    if a.item != b.item or a.op is None or b.op is None:
        return False
    if isinstance(a.value, Decimal) and isinstance(b.value, Decimal):
        return _numeric_implies(a.op, a.value, b.op, b.value)
    sa, sb = _value_set(a), _value_set(b)
    if sa is not None and sb is not None:
        return sa <= sb
    return a.op == b.op and a.value == b.value


def _value_set(c: Condition) -> frozenset[str] | None:
    if c.op == "eq" and isinstance(c.value, str | bool):
        return frozenset({str(c.value)})
    if c.op == "in" and isinstance(c.value, tuple):
        return frozenset(c.value)
    return None


def _numeric_implies(op_a: str, x: Decimal, op_b: str, y: Decimal) -> bool:
    # Upper tails: "value > x" implies "value > y" when y < x (or equal with a looser op).
    upper = {"gt", "ge"}
    lower = {"lt", "le"}
    if op_a in upper and op_b in upper:
        return y < x or (y == x and (op_b == "ge" or op_a == "gt"))
    if op_a in lower and op_b in lower:
        return y > x or (y == x and (op_b == "le" or op_a == "lt"))
    if op_a == "eq":
        return {
            "eq": x == y,
            "ge": x >= y,
            "gt": x > y,
            "le": x <= y,
            "lt": x < y,
            "ne": x != y,
        }.get(op_b, False)
    return op_a == op_b and x == y
