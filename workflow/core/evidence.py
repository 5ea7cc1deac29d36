"""What a verifier is shown beside the form they sign: the plan against what was measured.

Pure: reads a replayed case. What the viewer may not see is left out by ``Blinding`` (an
independent checker is never shown an expected value), exactly as on every other page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal

from workflow.core.blinding import Blinding
from workflow.core.dosing import fmt
from workflow.core.items import display, matches_expected, tolerance
from workflow.core.machine import Case
from workflow.core.protocol.model import Step


def _exact(value: Decimal) -> str:
    """A computed amount to 4 decimals, trailing zeros dropped (2.2667, 50)."""
    text = fmt(value, 4)
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class Measured:
    """One measured amount of a step ``step`` verifies, beside the plan's value for it."""

    step: str  # the preparation step's title
    label: str
    measured: str  # as entered
    planned: str  # the plan's exact value (the plan is computed, not rounded)
    differs: bool  # outside what the step accepts (its decimals): the plan changed since
    # Any numeric difference, e.g. "+0.0033 mL (accepted: within 0.005 mL)"; "" when exact.
    difference: str = ""


def measured_against_plan(
    case: Case, step: Step, blinding: Blinding, tz: tzinfo | None = None
) -> list[Measured]:
    """Each item of the steps ``step`` verifies that the plan predicts (``expect: plan.*``),
    with what was entered; ``differs`` when the plan now says otherwise (an order corrected
    after the preparation, a recalculated plan). Empty when the viewer may not see the plan."""
    if blinding.plan:
        return []
    out: list[Measured] = []
    for ref in step.verifies:
        prep = case.protocol.step(ref)
        entry = case.current.get(ref)
        if entry is None or blinding.hides_entry(ref):
            continue
        for item in prep.items:
            if not item.expect or not item.expect.startswith("plan."):
                continue
            if item.id not in entry.values or blinding.hides_value(prep, item):
                continue
            value = entry.values[item.id]
            expected = case.expected(item.expect)
            differs = expected is None or not matches_expected(item, value, expected)
            planned = display(item, expected, tz)
            difference = ""
            if isinstance(value, Decimal) and isinstance(expected, Decimal):
                unit = f" {item.unit}" if item.unit else ""
                planned = f"{_exact(expected)}{unit}"
                gap = value - expected
                if gap:
                    verdict = "outside" if differs else "accepted: within"
                    difference = (
                        f"{'+' if gap > 0 else '-'}{fmt(abs(gap), 4)}{unit} ({verdict} "
                        f"{fmt(tolerance(item, value))}{unit})"
                    )
            elif differs:
                difference = "differs from the plan"
            out.append(
                Measured(
                    prep.title,
                    item.label,
                    display(item, value, tz),
                    planned,
                    differs,
                    difference,
                )
            )
    return out
