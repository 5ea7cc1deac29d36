"""``bedside checklist validate|show|diagram``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from workflow.core.errors import ProtocolError

from ._common import protocol_from

if TYPE_CHECKING:  # the protocol loads when a command runs, not for --help (start-up)
    from workflow.core.protocol import Protocol
    from workflow.core.protocol.model import Quantity


def register(sub: Any) -> None:
    p = sub.add_parser("checklist", help="validate, show or draw a protocol")
    cs = p.add_subparsers(dest="checklist_command", metavar="ACTION", required=True)
    v = cs.add_parser("validate", help="check a protocol file; exit 0, or 2 with FILE:LINE lines")
    v.add_argument("file")
    v.set_defaults(handler=validate)
    s = cs.add_parser("show", help="readable summary of the protocol")
    s.add_argument("file", nargs="?")
    s.set_defaults(handler=show)
    d = cs.add_parser("diagram", help="Mermaid state diagram of the case machine")
    d.add_argument("file", nargs="?")
    d.set_defaults(handler=diagram)


def _load(args: argparse.Namespace) -> Protocol:
    from workflow.core.protocol import load_protocol

    if getattr(args, "file", None):
        return load_protocol(args.file)
    return protocol_from(args)


def validate(args: argparse.Namespace) -> int:
    from workflow.core.protocol import load_protocol

    try:
        p = load_protocol(args.file)
    except ProtocolError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"bedside: {len(exc.issues)} problem(s) in {args.file}", file=sys.stderr)
        return 2
    unconfirmed = sum(1 for r in p.rules if not r.confirmed)
    print(
        f"{args.file}: valid: {p.name} version {p.version}, {len(p.steps)} steps, "
        f"{len(p.rules)} rules ({unconfirmed} unconfirmed), sha256 {p.content_hash}"
    )
    return 0


def _q(q: Quantity) -> str:
    from workflow.core.dosing import fmt

    mark = "" if q.confirmed else "  [UNCONFIRMED]"
    return f"{fmt(q.value)} {q.unit}  [{q.source}]{mark}"


def show(args: argparse.Namespace) -> int:
    p = _load(args)
    out = [f"{p.name}", f"version {p.version}  sha256 {p.content_hash}"]
    out += _dosing_lines(p) + _schedule_lines(p) + _step_lines(p) + _course_start_lines(p)
    if p.acknowledgements:
        out += ["", "Warnings a signature must answer"]
        for a in p.acknowledgements:
            mark = "" if a.confirmed else " [UNCONFIRMED]"
            how = "hard stop" if a.refuse else f"{' or '.join(a.roles)} signs with {a.item}"
            out.append(f"  {a.warning} at {a.step}: {how} [{a.source}]{mark}")
    out += ["", "Hold and discontinue rules"]
    for r in p.rules:
        mark = "" if r.confirmed else " [UNCONFIRMED]"
        out.append(f"  {r.action:<11} {r.id}: {r.text} [{r.source}]{mark}")
    out += ["", "Sources"]
    for src in p.sources.values():
        out.append(f"  {src.id}: {src.title} ({src.citation})")
    print("\n".join(out))
    return 0


def _dosing_lines(p: Protocol) -> list[str]:
    from workflow.core.dosing import fmt

    d = p.dosing
    out = [
        "",
        "Dosing",
        f"  dose                {_q(d.dose_per_kg)}",
        f"  vial                {_q(d.vial_content)} ({_q(d.vial_mass)})",
        f"  reconstitute        {_q(d.reconstitution_volume)} {d.reconstitution_diluent}",
        f"  reconstituted       {_q(d.reconstituted_concentration)}",
        f"  concentration       {fmt(d.concentration_min.value)}-"
        f"{fmt(d.concentration_max.value)} mcg/mL  [{d.concentration_min.source}]",
        f"  infusion            {_q(d.infusion_duration)}; in-line filter: "
        f"{'allowed' if d.in_line_filter else 'never'}",
        f"  beyond-use          {_q(d.beyond_use)}",
        f"  weight accepted     {fmt(d.weight_accepted_min.value)}-"
        f"{fmt(d.weight_accepted_max.value)} kg, adult {fmt(d.weight_adult_min.value)}-"
        f"{fmt(d.weight_adult_max.value)} kg  [{d.weight_adult_min.source}] [UNCONFIRMED]",
        f"  {p.say('final_diluent_short')} volume by dose:",
    ]
    for b in d.volume_bands:
        limit = f"<= {fmt(b.max_dose_iu, 0)} IU" if b.max_dose_iu is not None else "above"
        out.append(f"    {limit:<22} {fmt(b.diluent_volume_ml)} mL  [{b.source}]")
    return out


def _schedule_lines(p: Protocol) -> list[str]:
    s = p.schedule
    return [
        "",
        "Schedule",
        f"  every               {_q(s.min_interval)}",
        f"  per cycle           {_q(s.max_doses_per_cycle)} within {_q(s.cycle_days)}",
        f"  per course          {_q(s.max_doses_per_course)}, {_q(s.max_cycles_per_course)}",
        f"  rest                {_q(s.rest_days)}",
    ]


def _step_lines(p: Protocol) -> list[str]:
    from workflow.core.blinding import is_unprimed  # brings the case machine

    out = ["", "Steps"]
    verifiers: dict[str, list[str]] = {}
    for step in p.steps:
        for ref in step.verifies:
            verifiers.setdefault(ref, []).append(step.id)
    for n, step in enumerate(p.ordered_steps_from(p.initial), 1):
        extra = f"; verified by {', '.join(verifiers[step.id])}" if step.id in verifiers else ""
        blind = f"; blinded against {step.blinded_against}" if step.blinded_against else ""
        if is_unprimed(p, step):
            blind += "; independent: its signer is not shown what it asks for"
        out.append(
            f"  {n:>2}. {step.title} [{step.id}] - {' or '.join(step.roles)} sign as "
            f"'{step.meaning}'{extra}{blind}"
        )
        for it in step.items:
            req = "required" if it.required else "optional"
            out.append(f"        - {it.label} ({it.type}, {req})")
    return out


def _course_start_lines(p: Protocol) -> list[str]:
    start = p.course_start
    if start is None:
        return []
    out = ["", f"Course start ({' or '.join(start.roles)} attests and signs as '{start.meaning}')"]
    out += [f"  - {it.label} [{it.source}]" for it in start.items]
    if start.retreatment is not None:
        retreat = start.retreatment
        who = " or ".join(retreat.override_roles) or "nobody (hard stop)"
        out.append(
            f"  retreatment refused after: {', '.join(retreat.contraindicated_after)} "
            f"[{retreat.source}]; override with a signed reason: {who}"
        )
    return out


def diagram(args: argparse.Namespace) -> int:
    from workflow.pictures.diagram import mermaid

    print(mermaid(_load(args)))
    return 0
