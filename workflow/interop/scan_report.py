"""Scan failures, from the events: every vial, diluent or bag typed in instead of scanned.

Typing a product in is allowed only with a reason code; this report counts those workarounds
by reason, by user and by ward, so a broken scanner or a badly labelled lot shows up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from workflow.core.events import format_time
from workflow.core.machine import Case


@dataclass(frozen=True)
class ScanFailure:
    case_id: str
    item: str  # "vial", "diluent" or "d5w"
    reason: str
    user: str  # user id of the person who signed the typed entry
    user_name: str
    ward: str
    at: str
    lot: str

    def to_json(self) -> dict[str, str]:
        return {
            "case_id": self.case_id,
            "item": self.item,
            "reason": self.reason,
            "user": self.user,
            "user_name": self.user_name,
            "ward": self.ward,
            "at": self.at,
            "lot": self.lot,
        }


def scan_failures(cases: Iterable[Case]) -> list[ScanFailure]:
    """Typed-in entries still in force (a corrected entry counts once, as corrected)."""
    out: list[ScanFailure] = []
    for case in cases:
        for prefix, step_id in case.protocol.scan_steps().items():
            entry = case.current.get(step_id)
            if entry is None or entry.values.get(f"{prefix}_entry") != "typed":
                continue
            out.append(
                ScanFailure(
                    case.case_id,
                    prefix,
                    str(entry.values.get(f"{prefix}_typed_reason") or "not_given"),
                    entry.signer.user_id,
                    entry.signer.name,
                    case.ward,
                    format_time(entry.at),
                    str(entry.values.get(f"{prefix}_lot") or ""),
                )
            )
    return sorted(out, key=lambda f: f.at)


def scan_failure_report(cases: Iterable[Case]) -> dict[str, Any]:
    failures = scan_failures(cases)

    def count(key: str) -> dict[str, int]:
        return dict(sorted(Counter(getattr(f, key) for f in failures).items()))

    return {
        "total": len(failures),
        "by_reason": count("reason"),
        "by_user": count("user_name"),
        "by_ward": count("ward"),
        "by_item": count("item"),
        "failures": [f.to_json() for f in failures],
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [f"scan failures (typed in instead of scanned): {report['total']}"]
    for title, key in (("by reason", "by_reason"), ("by user", "by_user"), ("by ward", "by_ward")):
        lines.append(f"  {title}:")
        lines.extend(f"    {name:<24} {n}" for name, n in report[key].items())
        if not report[key]:
            lines.append("    (none)")
    return "\n".join(lines)
