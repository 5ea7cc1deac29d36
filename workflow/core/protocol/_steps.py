"""The ``steps`` section: each step, the references between steps, scans and the walk.

A step's items are read by ``_items``; its scans by ``_display``. Cross-step references
(``verifies``, ``blinded_against``) are checked once every step is known, and the walk through
``next`` (no loop, no dead end, every step reachable, ending in 'completed') last of all.
"""

from __future__ import annotations

from typing import cast

from workflow.core.events import MEANINGS

from . import _display, _groups, _photos
from ._context import Context
from ._fields import MapReader
from ._items import read_items
from ._yaml import YList, is_float_text
from .model import BAG_ITEMS, FINAL_STATES, Item, PhotoSpec, ScanSpec, Step

_FLAGS = (
    "evaluates_rules",
    "within_beyond_use",
    "starts_infusion",
    "stops_infusion",
    "wastable",
    "unprimed",
    "checks_bag",
)


def steps(ctx: Context, seq: YList) -> tuple[Step, ...]:
    out: list[Step] = []
    seen: dict[str, int] = {}
    for i, node in enumerate(seq):
        line = seq.line_of(i)
        r = MapReader(ctx.issues, node, f"steps[{i}]", line)
        if not r.ok:
            continue
        sid = r.ident("id")
        if sid is not None:
            r.where = f"step '{sid}'"
            if sid in seen:
                ctx.issues.add(
                    r.line_of("id"), f"duplicate step id '{sid}' (first at line {seen[sid]})"
                )
                continue
            seen[sid] = r.line_of("id")
        step = _step(ctx, r, sid)
        if step is not None:
            out.append(step)
            ctx.step_nodes[step.id] = r
    # Cross-step references, checked once every step is known.
    index = {s.id: n for n, s in enumerate(out)}
    for n, step in enumerate(out):
        _check_verifies(ctx, step, n, index)
        _check_blinding(ctx, step, out, index)
    return tuple(out)


def _check_verifies(ctx: Context, step: Step, n: int, index: dict[str, int]) -> None:
    """A step verifies only earlier steps that exist."""
    line = ctx.step_nodes[step.id].line_of("verifies")
    for ref in step.verifies:
        if ref not in index:
            ctx.issues.add(
                line,
                f"step '{step.id}'.verifies names step '{ref}', which "
                f"does not exist (steps: {', '.join(index)})",
            )
        elif index[ref] >= n:
            ctx.issues.add(
                line,
                f"step '{step.id}' verifies '{ref}', which comes after "
                "it; a step can only verify earlier steps",
            )


def _check_blinding(ctx: Context, step: Step, steps: list[Step], index: dict[str, int]) -> None:
    """A blinded double check names an existing step it also verifies, and items it has."""
    if step.blinded_against is None:
        return
    line = ctx.step_nodes[step.id].line_of("blinded_against")
    other = steps[index[step.blinded_against]] if step.blinded_against in index else None
    if other is None:
        ctx.issues.add(
            line,
            f"step '{step.id}'.blinded_against names step "
            f"'{step.blinded_against}', which does not exist",
        )
        return
    for item_id in step.compare:
        if other.item(item_id) is None:
            ctx.issues.add(
                line,
                f"step '{step.id}' compares item '{item_id}', "
                f"which step '{other.id}' does not have",
            )
    if step.blinded_against not in step.verifies:
        ctx.issues.add(
            line,
            f"step '{step.id}' is blinded against "
            f"'{step.blinded_against}' and must also list it "
            "under verifies (the checkers must differ)",
        )


def _step(ctx: Context, r: MapReader, sid: str | None) -> Step | None:
    title = r.text("title")
    phase = r.ident("phase")
    roles = r.ident_list("roles", required=True)
    meaning = r.ident("meaning")
    nxt = r.ident("next")
    instructions = _instructions(ctx, r)
    verifies = r.ident_list("verifies")
    blinded = r.ident("blinded_against", required=False)
    compare = r.ident_list("compare")
    flags = {k: r.flag(k) for k in _FLAGS}
    sets_bud = r.ident("sets_beyond_use", required=False)
    items_list = r.seq("items")
    items = read_items(ctx, items_list, r.where) if items_list is not None else None
    groups_list = r.seq("normal_groups", required=False)
    groups = (
        _groups.normal_groups(ctx.issues, groups_list, r.where, items)
        if groups_list is not None and items is not None
        else ()
    )
    scans = _scans(ctx, r, items)
    photos_list = r.seq("photos", required=False)
    photos: tuple[PhotoSpec, ...] = ()
    if photos_list is not None:
        photos = _photos.photos(ctx.issues, photos_list, r.where, scans, items or ())
    r.done()
    _check_roles_and_meaning(ctx, r, roles, meaning)
    if items is not None:
        _check_item_names(ctx, r, items, compare, sets_bud)
        if flags["checks_bag"]:
            _check_bag_items(ctx, r, items)
    if blinded is not None and not compare:
        ctx.issues.add(
            r.line_of("blinded_against"),
            f"{r.where}: a blinded double check must list the items it compares",
        )
    if None in (sid, title, phase, meaning, nxt) or items is None:
        return None
    return Step(
        id=cast(str, sid),
        title=cast(str, title),
        phase=cast(str, phase),
        roles=roles,
        meaning=cast(str, meaning),
        items=items,
        next=cast(str, nxt),
        instructions=instructions,
        verifies=verifies,
        blinded_against=blinded,
        compare=compare,
        sets_beyond_use=sets_bud,
        scans=scans,
        photos=photos,
        normal_groups=groups,
        **flags,
    )


def _instructions(ctx: Context, r: MapReader) -> tuple[str, ...]:
    instructions_list = r.seq("instructions", required=False)
    instructions: list[str] = []
    for i, v in enumerate(instructions_list or []):
        if not isinstance(v, str) or is_float_text(v):
            ctx.issues.add(
                instructions_list.line_of(i) if instructions_list else r.line,
                f"{r.where}.instructions[{i}] must be text",
            )
        else:
            instructions.append(v)
    return tuple(instructions)


def _scans(ctx: Context, r: MapReader, items: tuple[Item, ...] | None) -> tuple[ScanSpec, ...]:
    scans_list = r.seq("scans", required=False)
    if scans_list is None:
        return ()
    ctx.scans_declared = True
    return _display.scans(ctx, scans_list, r.where, items) if items is not None else ()


def _check_roles_and_meaning(
    ctx: Context, r: MapReader, roles: tuple[str, ...], meaning: str | None
) -> None:
    for role in roles:
        if role not in ctx.roles:
            ctx.issues.add(
                r.line_of("roles"),
                f"{r.where}.roles: role '{role}' is not defined (roles: {', '.join(ctx.roles)})",
            )
    if not roles and r.has("roles"):
        ctx.issues.add(r.line_of("roles"), f"{r.where}.roles must name at least one role")
    if meaning is not None and meaning not in MEANINGS:
        ctx.issues.add(
            r.line_of("meaning"),
            f"{r.where}.meaning '{meaning}' is not a "
            f"Part 11 signature meaning (allowed: "
            f"{', '.join(sorted(MEANINGS))})",
        )


def _check_item_names(
    ctx: Context,
    r: MapReader,
    items: tuple[Item, ...],
    compare: tuple[str, ...],
    sets_bud: str | None,
) -> None:
    """``compare`` and ``sets_beyond_use`` name items of this step (the latter a datetime)."""
    ids = {it.id for it in items}
    for cid in compare:
        if cid not in ids:
            ctx.issues.add(
                r.line_of("compare"),
                f"{r.where}.compare names item '{cid}', which this step lacks",
            )
    if sets_bud is not None:
        it = next((x for x in items if x.id == sets_bud), None)
        if it is None or it.type != "datetime":
            ctx.issues.add(
                r.line_of("sets_beyond_use"),
                f"{r.where}.sets_beyond_use must name a datetime item of "
                f"this step, got '{sets_bud}'",
            )


def _check_bag_items(ctx: Context, r: MapReader, items: tuple[Item, ...]) -> None:
    """A step that identifies the bag by its label's code carries the items that record it."""
    ids = {it.id for it in items}
    for needed in BAG_ITEMS:
        if needed not in ids:
            ctx.issues.add(
                r.line_of("checks_bag"),
                f"{r.where}.checks_bag needs the item '{needed}' on this step "
                f"(the bag's code and how it was identified)",
            )


def check_route_expects(ctx: Context, steps: tuple[Step, ...], route: str | None) -> None:
    """An item checked against ``protocol.route`` needs the protocol to name its route
    (``protocol: route:``) and must offer it as an option, or no entry could ever match."""
    for step in steps:
        for item in step.items:
            if item.expect != "protocol.route":
                continue
            line = ctx.step_nodes[step.id].line_of("items")
            where = f"step '{step.id}' item '{item.id}'"
            if route is None:
                ctx.issues.add(
                    line,
                    f"{where} is checked against protocol.route, but the protocol names no "
                    "route (add protocol: route: <the route's id>)",
                )
            elif route not in item.option_ids():
                ctx.issues.add(
                    line,
                    f"{where} is checked against protocol.route '{route}', which is not one of "
                    f"its options (allowed: {', '.join(item.option_ids())})",
                )


def check_scan_kinds(ctx: Context, steps: tuple[Step, ...]) -> None:
    """A product kind is identified on one step only: a scan names its kind, not its step."""
    first: dict[str, str] = {}
    for step in steps:
        for scan in step.scans:
            if scan.kind in first:
                ctx.issues.add(
                    ctx.step_nodes[step.id].line_of("scans"),
                    f"step '{step.id}'.scans: kind '{scan.kind}' is already scanned on "
                    f"step '{first[scan.kind]}'",
                )
            first.setdefault(scan.kind, step.id)


def graph(ctx: Context, steps: tuple[Step, ...], initial: str, seq: YList) -> None:
    ids = [s.id for s in steps]
    lines = {s.id: seq.line_of(i) for i, s in enumerate(steps)}
    targets = set(ids) | set(FINAL_STATES)
    for s in steps:
        if s.next not in targets:
            ctx.issues.add(
                ctx.step_nodes[s.id].line_of("next"),
                f"step '{s.id}'.next '{s.next}' is neither a step "
                f"nor a final state (allowed: "
                f"{', '.join(ids + list(FINAL_STATES))})",
            )
    if initial not in ids:
        return
    # Walk from the initial step; a step seen twice is a loop that never ends.
    seen: list[str] = []
    current = initial
    while current in ids:
        if current in seen:
            ctx.issues.add(
                lines[current],
                f"step '{current}' is reached again through next: the walk loops and never ends",
            )
            return
        seen.append(current)
        current = next(s for s in steps if s.id == current).next
    if current != "completed" and current in targets:
        ctx.issues.add(
            lines[seen[-1]],
            f"the walk from '{initial}' ends in '{current}'; it must end in 'completed'",
        )
    for s in steps:
        if s.id not in seen:
            ctx.issues.add(
                lines[s.id],
                f"step '{s.id}' is unreachable: the walk from "
                f"'{initial}' never gets to it through next",
            )
