"""Hold and discontinue rules evaluated over entered values.

Rules are data (item, comparison, threshold, action, source) from the protocol; this module only
compares. A missing value never fires a rule, and never satisfies a resume criterion: resuming
needs evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from workflow.core.protocol.model import Condition, Protocol, Rule


@dataclass(frozen=True)
class Firing:
    """A rule that stops the dose, with the values that made it fire."""

    rule_id: str
    action: str  # "hold" or "discontinue"
    text: str
    source: str
    confirmed: bool
    reason: str  # "fired", or "resume_not_met" for a held rule whose criterion is not yet met
    values: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "action": self.action,
            "text": self.text,
            "source": self.source,
            "confirmed": self.confirmed,
            "reason": self.reason,
            "values": dict(self.values),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Firing:
        return cls(
            str(data["rule_id"]),
            str(data["action"]),
            str(data["text"]),
            str(data["source"]),
            bool(data["confirmed"]),
            str(data["reason"]),
            dict(data.get("values") or {}),
        )

    def describe(self) -> str:
        mark = "" if self.confirmed else " [UNCONFIRMED]"
        shown = ", ".join(f"{k}={v}" for k, v in self.values.items())
        lead = "resume criterion not met: " if self.reason == "resume_not_met" else ""
        return f"{self.rule_id}: {lead}{self.text} ({shown}) [source: {self.source}]{mark}"


def test(cond: Condition, values: Mapping[str, Any]) -> bool | None:
    """True, False, or None when a value it needs was not entered."""
    if cond.any_of:
        results = [test(c, values) for c in cond.any_of]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False
    if cond.all_of:
        results = [test(c, values) for c in cond.all_of]
        if any(r is False for r in results):
            return False
        return None if any(r is None for r in results) else True
    assert cond.item is not None
    assert cond.op is not None
    if cond.item not in values or values[cond.item] is None:
        return None
    return _compare(values[cond.item], cond.op, cond.value)


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if op == "in":
        return str(actual) in expected
    if op == "not_in":
        return str(actual) not in expected
    if isinstance(expected, Decimal):
        a = Decimal(str(actual))
        return {
            "lt": a < expected,
            "le": a <= expected,
            "gt": a > expected,
            "ge": a >= expected,
            "eq": a == expected,
            "ne": a != expected,
        }[op]
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    raise ValueError(f"operator {op} on {expected!r}")  # the loader never lets this through


def evaluate(
    protocol: Protocol, values: Mapping[str, Any], awaiting_resume: Iterable[str] = ()
) -> tuple[Firing, ...]:
    """Every rule that stops the dose for these values.

    ``awaiting_resume`` names rules that held this course earlier: each must now meet its resume
    criterion (or, without one, no longer fire) on values actually entered.
    """
    fired: list[Firing] = []
    pending = set(awaiting_resume)
    for rule in protocol.rules:
        if test(rule.when, values) is True:
            fired.append(_firing(rule, "fired", values))
        elif rule.id in pending:
            criterion = rule.resume_when
            met = (
                test(criterion, values) is True
                if criterion is not None
                else test(rule.when, values) is False
            )
            if not met:
                fired.append(_firing(rule, "resume_not_met", values))
    return tuple(fired)


def _firing(rule: Rule, reason: str, values: Mapping[str, Any]) -> Firing:
    involved = sorted(rule.when.items() | (rule.resume_when.items() if rule.resume_when else set()))
    shown = {k: _text(values[k]) for k in involved if k in values and values[k] is not None}
    return Firing(rule.id, rule.action, rule.text, rule.source, rule.confirmed, reason, shown)


def _text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return value
