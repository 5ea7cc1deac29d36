"""Starting a course: the prescriber's signed attestations, and the label's retreatment rule.

Pure: the service hands in the patient's earlier cases and the signer; this decides. A course
start is a signed entry of its own (printed name, role, meaning, time, the content hash of what
was signed: 21 CFR 11.50 / 11.70). Every case opened on the course copies it into its chained
opening event, so each dose's records show the attestations and any retreatment override.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workflow.core.errors import StepRefused, raise_all
from workflow.core.events import (
    Signer,
    canonical_json,
    format_time,
    json_safe,
    parse_time,
    sha256_hex,
)
from workflow.core.items import parse_entries, to_stored
from workflow.core.machine import Case
from workflow.core.protocol.model import Protocol

# Who may start a course when the protocol (an older, pinned one) declares no course_start.
DEFAULT_ROLES = ("prescriber",)


@dataclass(frozen=True)
class RetreatmentBlock:
    """The rule, date and dose that ended an earlier course, after which the label
    contraindicates retreatment."""

    rule_id: str
    rule_text: str
    source: str
    at: datetime
    course_id: str
    case_id: str
    cycle: int
    dose_in_cycle: int
    dose_in_course: int

    def describe(self) -> str:
        return (
            f"{self.rule_text} (rule {self.rule_id}, source: {self.source}) ended course "
            f"{self.course_id} on {self.at.strftime('%Y-%m-%d %H:%M')} UTC at cycle {self.cycle} "
            f"dose {self.dose_in_cycle} (course dose {self.dose_in_course}, case {self.case_id})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "rule_text": self.rule_text,
            "source": self.source,
            "at": format_time(self.at),
            "course_id": self.course_id,
            "case_id": self.case_id,
            "cycle": self.cycle,
            "dose_in_cycle": self.dose_in_cycle,
            "dose_in_course": self.dose_in_course,
        }


def retreatment_block(protocol: Protocol, cases: Iterable[Case]) -> RetreatmentBlock | None:
    """The first of ``cases`` (a patient's earlier doses) ended by a rule after which the
    protocol says retreatment is contraindicated, or None."""
    spec = protocol.course_start.retreatment if protocol.course_start else None
    if spec is None:
        return None
    for case in cases:
        if case.state != "discontinued":
            continue
        for entry in case.hold_log:
            if entry.get("kind") != "discontinued":
                continue
            for firing in entry.get("firings") or []:
                if firing.get("rule_id") in spec.contraindicated_after:
                    return RetreatmentBlock(
                        str(firing["rule_id"]),
                        str(firing.get("text", "")),
                        str(firing.get("source", "")),
                        parse_time(str(entry["at"])),
                        case.course_id,
                        case.case_id,
                        case.cycle,
                        case.dose_in_cycle,
                        case.dose_in_course,
                    )
    return None


def start_record(
    protocol: Protocol,
    attestations: Mapping[str, Any],
    signer: Signer,
    at: datetime,
    block: RetreatmentBlock | None,
    override_reason: str = "",
) -> dict[str, Any]:
    """The signed course-start entry, or StepRefused naming every attestation not given and,
    after a contraindicating toxicity, the rule, date and dose (and how to override, if the
    protocol allows it)."""
    spec = protocol.course_start
    roles = spec.roles if spec else DEFAULT_ROLES
    if signer.role not in roles:
        raise StepRefused(
            "role_not_allowed",
            f"A course is started by a {' or '.join(roles)}; {signer.name} signed as {signer.role}",
        )
    values = _attested(protocol, attestations, at)
    override: dict[str, Any] | None = None
    if block is not None:
        override = _override(protocol, block, signer, override_reason)
    record: dict[str, Any] = {
        "by": signer.to_json(),
        "meaning": spec.meaning if spec else "approved",
        "at": format_time(at),
        "protocol": protocol.identity(),
        "attestations": values,
        "retreatment_override": override,
    }
    # 11.70: the signature is bound to exactly what was signed.
    record["content_hash"] = sha256_hex(canonical_json(json_safe(record)))
    return record


def _attested(protocol: Protocol, given: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    spec = protocol.course_start
    if spec is None:
        return {}
    typed, problems = parse_entries(
        spec.items, given, at, unknown_what="not an attestation of this protocol"
    )
    faulty = {p.field for p in problems}
    for item in spec.items:
        if item.id not in typed and item.id not in faulty:
            problems.append(
                StepRefused(
                    "missing_item",
                    f"{item.label}: must be attested before the course starts "
                    f"[source: {item.source}]",
                    field=item.id,
                )
            )
    values = {item.id: to_stored(item, typed[item.id]) for item in spec.items if item.id in typed}
    raise_all(problems, "The course was not started")
    return values


def _override(
    protocol: Protocol, block: RetreatmentBlock, signer: Signer, reason: str
) -> dict[str, Any]:
    spec = protocol.course_start.retreatment if protocol.course_start else None
    allowed: Sequence[str] = spec.override_roles if spec else ()
    what = (
        f"Retreatment is contraindicated: {block.describe()}"
        f" [source: {spec.source if spec else block.source}]"
    )
    if not allowed:
        raise StepRefused("retreatment_contraindicated", f"{what}. No new course may start.")
    if not reason.strip():
        raise StepRefused(
            "retreatment_contraindicated",
            f"{what}. A {' or '.join(allowed)} may override this only with a signed reason "
            "(override_reason), which every later record shows.",
        )
    if signer.role not in allowed:
        raise StepRefused(
            "role_not_allowed",
            f"{what}. Only a {' or '.join(allowed)} may override it; "
            f"{signer.name} signed as {signer.role}",
        )
    return {"reason": reason.strip(), "contraindication": block.to_json()}
