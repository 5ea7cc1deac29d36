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
from typing import TYPE_CHECKING, Any

from workflow.core.errors import StepRefused
from workflow.core.gs1 import BagCode, parse_bag_code
from workflow.core.protocol.model import BAG_ITEMS, Step

__all__ = ["BAG_ITEMS", "bag_code_of", "check_bag", "check_bag_entry"]

if TYPE_CHECKING:  # the case layers import this module; only the type is needed here
    from workflow.core.case_state import CaseState


def bag_code_of(case: CaseState) -> BagCode:
    """The code a prepared bag's label carries; refused before the preparation is signed."""
    bud = case.beyond_use_at
    if case.patient is None or bud is None:
        raise StepRefused(
            "not_prepared", "No bag label yet: the preparation has not been signed for this dose"
        )
    return BagCode(
        case_id=case.case_id,
        cycle=case.cycle,
        dose_in_cycle=case.dose_in_cycle,
        use_before=_to_minute(bud),
    )


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


def _dose_words(case: CaseState) -> str:
    name = case.patient.name if case.patient is not None else "(no patient)"
    return (
        f"this dose: case {case.case_id}, dose {case.dose_in_cycle} of cycle {case.cycle} "
        f"for {name}"
    )


def check_bag(case: CaseState, scan_text: str, at: datetime) -> BagCode:
    """The scanned bag code, if it names this case, dose and patient, carries this
    preparation's beyond-use time, and that time has not passed at ``at``; else StepRefused
    (field ``bag_scan``): ``unreadable``, ``wrong_bag``, ``label_mismatch`` or
    ``bag_expired``."""
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
            f"{_dose_words(case)}",
            field="bag_scan",
        )
    if code.use_before != expected.use_before:
        raise StepRefused(
            "label_mismatch",
            f"The label's beyond-use time is not this preparation's; do not hang the bag. "
            f"{_bag_words(code, case)} — {_dose_words(case)}, use before "
            f"{_when(expected.use_before)}",
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


def check_bag_entry(case: CaseState, step: Step, typed: Mapping[str, Any], at: datetime) -> None:
    """On a step that ``checks_bag``: an entry marked "scanned" must carry a bag code that
    passes :func:`check_bag`, so "scanned" cannot be claimed for a bag never scanned."""
    if not step.checks_bag or typed.get("bag_entry") != "scanned":
        return
    code = typed.get("bag_scan")
    if not isinstance(code, str) or not code.strip():
        raise StepRefused(
            "missing_item", "bag_scan: a scanned bag needs its scan", field="bag_scan"
        )
    check_bag(case, code, at)
