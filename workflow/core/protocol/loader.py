"""Load and completely validate a protocol file before any machine is built from it.

transitions only notices a bad state name or callback when a trigger fires, at the bedside.
So everything is checked here first: types, required and unknown keys, references between
steps, roles, items, rules and sources, reachability and dead ends, and the numbers. Every
problem found is reported as ``FILE:LINE: what is wrong and what is allowed``, all at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from workflow.core.errors import ProtocolError

from . import (
    _course,
    _display,
    _dosing,
    _eligibility,
    _gravimetric,
    _groups,
    _head,
    _rules,
    _sittings,
    _steps,
)
from ._context import Context
from ._fields import Issues, MapReader
from ._yaml import YList, load_document, read_file
from .model import (
    FINAL_STATES,
    Acknowledgement,
    CourseStart,
    Dosing,
    Eligibility,
    Gravimetric,
    Protocol,
    RecordSpec,
    Rule,
    Schedule,
    SideExit,
    Step,
)
from .words import legacy_words


def load_protocol(path: str | Path) -> Protocol:
    """Read, validate and freeze a protocol file; raise ProtocolError listing every problem."""
    return parse_protocol(read_file(path), str(Path(path)))


def parse_protocol(data: bytes, filename: str) -> Protocol:
    root = load_document(data, filename)
    issues = Issues(filename)
    protocol = _validate(Context(issues), root, hashlib.sha256(data).hexdigest(), filename)
    if issues.items or protocol is None:
        raise ProtocolError(sorted(issues.items, key=lambda i: i.line))
    return protocol


@dataclass
class _Sections:
    """What each section gave (None where it was missing or wrong), before assembly."""

    meta: tuple[str, str, str, str, str] | None = None
    route: str | None = None
    dosing: Dosing | None = None
    schedule: Schedule | None = None
    eligibility: Eligibility | None = None
    resume_step: str | None = None
    initial: str | None = None
    steps_list: YList | None = None
    steps: tuple[Step, ...] = ()
    side_exits: dict[str, SideExit] | None = None
    rules: tuple[Rule, ...] = ()
    acks: tuple[Acknowledgement, ...] = ()
    start: CourseStart | None = None
    words: dict[str, str] | None = None
    records: tuple[RecordSpec, ...] | None = None
    gravimetric: Gravimetric | None = None
    sittings: tuple[tuple[str, ...], ...] = ()


def _validate(ctx: Context, root: Any, content_hash: str, filename: str) -> Protocol | None:
    """Check every section (each in its own module) into ``ctx``; the Protocol when clean."""
    top = MapReader(ctx.issues, root, "protocol file", 1)
    if not top.ok:
        return None
    s = _read_main(ctx, top)
    _read_optional(ctx, top, s)
    top.done()
    _check_references(ctx, top, s)
    if ctx.issues.items:
        return None
    return _assemble(ctx, s, content_hash, filename)


def _read_main(ctx: Context, top: MapReader) -> _Sections:
    """The required sections, in the order later ones need them (roles before steps, ...)."""
    s = _Sections()
    head = top.sub("protocol")
    s.route = _head.route(head) if head else None
    s.meta = _head.meta(head) if head else None
    sources_node = top.sub("sources")
    if sources_node:
        _head.sources(ctx, sources_node)
    roles_node = top.sub("roles")
    if roles_node:
        _head.roles(ctx, roles_node)
    dosing_node = top.sub("dosing")
    s.dosing = _dosing.dosing(ctx, dosing_node) if dosing_node else None
    schedule_node = top.sub("schedule")
    s.schedule = _dosing.schedule(ctx, schedule_node) if schedule_node else None
    elig_node = top.sub("eligibility")
    s.resume_step = top.ident("resume_step")
    s.initial = top.ident("initial")
    s.steps_list = top.seq("steps")
    s.steps = _steps.steps(ctx, s.steps_list) if s.steps_list is not None else ()
    finals = top.ident_list("final_states", required=True)
    if top.has("final_states") and tuple(sorted(finals)) != tuple(sorted(FINAL_STATES)):
        ctx.issues.add(
            top.line_of("final_states"),
            f"final_states must be exactly {', '.join(FINAL_STATES)} (the side "
            f"exits the engine implements), got {', '.join(finals) or 'none'}",
        )
    exits_node = top.sub("side_exits")
    s.side_exits = _head.side_exits(ctx, exits_node) if exits_node else None
    rules_list = top.seq("rules")
    s.rules = _rules.rules(ctx, rules_list, s.steps) if rules_list is not None else ()
    s.eligibility = _eligibility.eligibility(ctx, elig_node, s.steps) if elig_node else None
    return s


def _read_optional(ctx: Context, top: MapReader, s: _Sections) -> None:
    """The sections older protocol texts lack (acknowledgements, course_start, words, records,
    gravimetric, sittings)."""
    acks_list = top.seq("acknowledgements", required=False)
    if acks_list is not None:
        elig_step = s.eligibility.step if s.eligibility else None
        s.acks = _course.acknowledgements(ctx, acks_list, s.steps, s.initial, elig_step)
    start_node = top.sub("course_start", required=False)
    s.start = _course.course_start(ctx, start_node, s.rules) if start_node else None
    words_node = top.sub("words", required=False)
    s.words = _display.words(ctx, words_node) if words_node else None
    if not ctx.scans_declared:
        s.steps = tuple(replace(step, scans=_display.legacy_scans(step)) for step in s.steps)
    _steps.check_scan_kinds(ctx, s.steps)
    _groups.check_against_rules(
        ctx.issues, s.steps, s.rules, lambda sid: ctx.step_nodes[sid].line_of("normal_groups")
    )
    records_node = top.sub("records", required=False)
    s.records = _display.records(ctx, records_node, s.steps) if records_node else None
    grav_node = top.sub("gravimetric", required=False)
    s.gravimetric = _gravimetric.gravimetric(ctx, grav_node, s.steps) if grav_node else None
    sittings_list = top.seq("sittings", required=False)
    if sittings_list is not None:
        s.sittings = _sittings.sittings(ctx.issues, sittings_list, s.steps)


def _check_references(ctx: Context, top: MapReader, s: _Sections) -> None:
    """Citations, the initial and resume steps, and the walk through the steps."""
    ctx.check_sources()
    step_ids = [step.id for step in s.steps]
    if s.initial and s.steps and s.initial not in step_ids:
        ctx.issues.add(
            top.line_of("initial"),
            f"initial step '{s.initial}' does not exist (steps: {', '.join(step_ids)})",
        )
    if s.resume_step and s.steps and s.resume_step not in step_ids:
        ctx.issues.add(
            top.line_of("resume_step"),
            f"resume_step '{s.resume_step}' does not exist (steps: {', '.join(step_ids)})",
        )
    if s.initial and s.steps_list is not None:
        _steps.graph(ctx, s.steps, s.initial, s.steps_list)
    _steps.check_route_expects(ctx, s.steps, s.route)


def _assemble(ctx: Context, s: _Sections, content_hash: str, filename: str) -> Protocol | None:
    if (
        s.meta is None
        or s.dosing is None
        or s.schedule is None
        or s.eligibility is None
        or s.initial is None
        or s.resume_step is None
        or s.side_exits is None
    ):
        return None
    return Protocol(
        id=s.meta[0],
        name=s.meta[1],
        version=s.meta[2],
        drug=s.meta[3],
        brand=s.meta[4],
        content_hash=content_hash,
        path=filename,
        sources=ctx.sources,
        roles=ctx.roles,
        steps=s.steps,
        initial=s.initial,
        rules=s.rules,
        dosing=s.dosing,
        schedule=s.schedule,
        eligibility=s.eligibility,
        resume_step=s.resume_step,
        final_states=FINAL_STATES,
        side_exits=s.side_exits,
        acknowledgements=s.acks,
        course_start=s.start,
        words=s.words if s.words is not None else legacy_words(s.dosing, s.steps),
        records=(
            s.records if s.records is not None else _display.legacy_records(s.steps, s.initial)
        ),
        gravimetric=s.gravimetric,
        sittings=s.sittings,
        route=s.route,
    )
