"""Closing the loop at the bedside (issue 16.4): the bag's label code must name this dose.

The label (workflow/records/labels.py) carries :func:`bag_code_of` as a GS1 code; at a step
that ``checks_bag`` the nurse scans it, and :func:`check_bag` refuses a bag made for another
case or another dose (so another patient's too), and a bag past its beyond-use time, naming both the
bag and this dose in words. Every path reaches it: signing the step (``case_checks``), the
service's ``check_bag_scan`` (CLI ``bedside scan --item bag``, the JSON API's scan).

The refusal never prints this patient's MRN or date of birth: the step that scans the bag is
unprimed (the nurse reads them from the wristband), so only the name and the dose are said.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from workflow.core.errors import StepRefused
from workflow.core.events import format_time
from workflow.core.gs1 import BagCode, parse_bag_code, stored_form
from workflow.core.items import Value, display, matches_expected
from workflow.core.protocol.model import BAG_ITEMS, Item, Step

__all__ = [
    "BAG_ITEMS",
    "asked_now",
    "bag_code_of",
    "bag_fills",
    "check_bag",
    "check_bag_entry",
    "complete_from_bag",
]

# What a bag code carries, by the reference an item ``expect``s: a compared item of a step
# that ``checks_bag`` expecting one of these is filled from the scanned code (never from the
# case or the plan: at a blinded check the code is the label the checker holds).
_CARRIED: dict[str, str] = {
    "case.beyond_use_at": "use_before",
    "case.cycle": "cycle",
    "case.dose_in_cycle": "dose_in_cycle",
    "protocol.drug": "drug",
    "plan.dose_iu": "dose_iu",
    "plan.final_volume_ml": "final_volume_ml",
    "plan.infusion_minutes": "infusion_minutes",
    "plan.pump_rate_ml_per_h": "pump_rate_ml_per_h",
    "protocol.route": "route",
}

if TYPE_CHECKING:  # the case layers import this module; only the type is needed here
    from workflow.core.case_state import CaseState


def bag_code_of(case: CaseState) -> BagCode:
    """The code a prepared bag's label carries; refused before the preparation is signed."""
    bud = case.beyond_use_at
    if case.patient is None or bud is None:
        raise StepRefused(
            "not_prepared", "No bag label yet: the preparation has not been signed for this dose"
        )
    plan = case.plan
    return BagCode(
        case_id=case.case_id,
        cycle=case.cycle,
        dose_in_cycle=case.dose_in_cycle,
        use_before=_to_minute(bud),
        # What the label prints, at the precision it prints it (labels.py).
        drug=case.protocol.drug,
        dose_iu=_printed(plan.dose_iu, 0) if plan is not None else None,
        final_volume_ml=_printed(plan.final_volume_ml, 1) if plan is not None else None,
        # The label prints the minutes as the plan has them (whole for this protocol: its
        # infusion duration) and the rate to 0.1 mL/h.
        infusion_minutes=plan.infusion_minutes.normalize() if plan is not None else None,
        pump_rate_ml_per_h=_printed(plan.pump_rate_ml_per_h, 1) if plan is not None else None,
        route=case.protocol.route,
    )


def _printed(value: Decimal, decimals: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


def _to_minute(at: datetime) -> datetime:
    # 7003 has no seconds: the label's time is the beyond-use time rounded down, never later.
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def _when(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _bag_words(code: BagCode, case: CaseState) -> str:
    # The code names a case, not a person: the bag is this patient's only if it is this case.
    whose = "" if code.case_id == case.case_id else " (another dose: check whose bag it is)"
    return (
        f"bag: case {code.case_id}, dose {code.dose_in_cycle} of cycle {code.cycle}{whose}, "
        f"use before {_when(code.use_before)}"
    )


def _dose_words(case: CaseState, asked: frozenset[str] = frozenset()) -> str:
    name = case.patient.name if case.patient is not None else "(no patient)"
    if asked & {"case.cycle", "case.dose_in_cycle"}:
        # An independent check asks for the dose number: the refusal must not tell it.
        return (
            f"this dose: case {case.case_id} for {name} (dose number not shown at an "
            "independent check)"
        )
    return (
        f"this dose: case {case.case_id}, dose {case.dose_in_cycle} of cycle {case.cycle} "
        f"for {name}"
    )


def check_bag(
    case: CaseState, scan_text: str, at: datetime, asked: frozenset[str] = frozenset()
) -> BagCode:
    """The scanned bag code, if it names this case, dose and patient, carries this
    preparation's beyond-use time, and that time has not passed at ``at``; else StepRefused
    (field ``bag_scan``): ``unreadable``, ``wrong_bag``, ``label_mismatch`` or
    ``bag_expired``. ``asked`` are the references the scanning step ``expect``s: what an
    independent check asks for is not said in the refusal (only what the bag's code says)."""
    code = parse_bag_code(scan_text)
    expected = bag_code_of(case)
    if (code.case_id, code.cycle, code.dose_in_cycle) != (
        expected.case_id,
        expected.cycle,
        expected.dose_in_cycle,
    ):
        raise StepRefused(
            "wrong_bag",
            f"This is not the bag for this dose; do not hang it. {_bag_words(code, case)} — "
            f"{_dose_words(case, asked)}",
            field="bag_scan",
        )
    if code.use_before != expected.use_before:
        theirs = (
            "" if "case.beyond_use_at" in asked else f", use before {_when(expected.use_before)}"
        )
        raise StepRefused(
            "label_mismatch",
            f"The label's beyond-use time is not this preparation's; do not hang the bag. "
            f"{_bag_words(code, case)} — {_dose_words(case, asked)}{theirs}",
            field="bag_scan",
        )
    if at >= code.use_before:
        raise StepRefused(
            "bag_expired",
            f"The bag is past its beyond-use time; do not hang it. {_bag_words(code, case)} — "
            f"it is now {_when(at)}. Record it as wasted (beyond_use_time_passed).",
            field="bag_scan",
        )
    return code


def _asked(step: Step) -> frozenset[str]:
    return frozenset(item.expect for item in step.items if item.expect is not None)


def asked_now(case: CaseState) -> frozenset[str]:
    """What the steps the case is at that scan the bag ask for: a bag scan checked on its own
    (the CLI, the JSON API) must not tell a checker at a double check what it asks."""
    out: frozenset[str] = frozenset()
    for step_id in case.allowed_steps():
        step = case.protocol.step(step_id)
        if step.checks_bag:
            out |= _asked(step)
    return out


def bag_fills(step: Step) -> dict[str, str]:
    """Item id -> the bag code's field it is filled from, on a step that ``checks_bag``.

    Only an item the step ``compare``s: at a double check each checker reads those off the
    label, which is what its code is. A step that compares nothing and still scans the bag
    (at the bedside before hanging it) reads its values elsewhere, e.g. the rate set on the
    pump: the code closes the loop there and fills nothing, so those stay typed. This holds
    for protocol texts already pinned to open cases, whatever their version."""
    if not step.checks_bag:
        return {}
    return {
        item.id: _CARRIED[item.expect]
        for item in step.items
        if item.expect is not None and item.expect in _CARRIED and item.id in step.compare
    }


def _scanned(step: Step, values: Mapping[str, Any]) -> str | None:
    """The bag code of an entry marked (or, left blank, taken as) scanned."""
    code = values.get("bag_scan")
    if not step.checks_bag or not isinstance(code, str) or not code.strip():
        return None
    entry = values.get("bag_entry")
    return code if entry in (None, "", "scanned") else None


def _carried(code: BagCode, attr: str) -> Any:
    return getattr(code, attr)


def _posted(item: Item, value: Any) -> str:
    # As a form or the API posts it, so the filled value is parsed like a typed one.
    # A number keeps the label's precision, not the item's ``decimals``: the pump rate item
    # takes whole mL/h, the label prints 0.1 mL/h, and the comparison (items.matches_expected)
    # already holds an entry finer than ``decimals`` to its own precision, so 209.1 matches a
    # plan of 209.07 and a checker's typed 209. Rounding it again (items.rounded) would round
    # twice: a plan of 208.46 mL/h prints 208.5, would be filled as 209, more than half a unit
    # from the plan, and the check would flag a value nobody typed. Pages show it rounded.
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


def complete_from_bag(
    case: CaseState, step: Step, values: Mapping[str, Any], at: datetime
) -> dict[str, Any]:
    """Fill what a scanned bag entry left blank from the label's code: how the bag was
    identified ("scanned" when a code is given) and each item the code carries
    (:func:`bag_fills`), so the checker types only what the label's code cannot say. What was
    typed stays, and :func:`check_bag_entry` then holds it to the code. The code is checked
    here first (:func:`check_bag`), so a wrong, expired or unreadable bag is the refusal,
    not the items it would have filled; it is kept as one printable line (``<GS>``)."""
    code_text = _scanned(step, values)
    if code_text is None:
        return dict(values)
    out = dict(values)
    if not out.get("bag_entry"):
        out["bag_entry"] = "scanned"
    out["bag_scan"] = stored_form(code_text)
    code = check_bag(case, code_text, at, _asked(step))
    for item_id, attr in bag_fills(step).items():
        carried = _carried(code, attr)
        blank = out.get(item_id) is None or (
            isinstance(out[item_id], str) and not out[item_id].strip()
        )
        if blank and carried is not None:
            item = step.item(item_id)
            if item is not None:
                out[item_id] = _posted(item, carried)
    return out


def check_bag_entry(case: CaseState, step: Step, typed: Mapping[str, Any], at: datetime) -> None:
    """On a step that ``checks_bag``: an entry marked "scanned" must carry a bag code that
    passes :func:`check_bag`, so "scanned" cannot be claimed for a bag never scanned; and each
    item the code carries must say what the code says (``scan_mismatch``, naming the item)."""
    if not step.checks_bag or typed.get("bag_entry") != "scanned":
        return
    code = typed.get("bag_scan")
    if not isinstance(code, str) or not code.strip():
        raise StepRefused(
            "missing_item", "bag_scan: a scanned bag needs its scan", field="bag_scan"
        )
    scanned = check_bag(case, code, at, _asked(step))
    for item_id, attr in bag_fills(step).items():
        carried = _carried(scanned, attr)
        entered: Value | None = typed.get(item_id)
        item = step.item(item_id)
        if carried is None or entered is None or item is None:
            continue
        want = Decimal(carried) if isinstance(carried, int) else carried
        if not matches_expected(item, entered, want):
            raise StepRefused(
                "scan_mismatch",
                f"{item.label}: entered {display(item, entered)}, but the scanned bag label "
                f"says {display(item, want)}; check the label, scan it again or clear the "
                "field",
                field=item_id,
            )
