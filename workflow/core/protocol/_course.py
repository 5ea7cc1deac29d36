"""Two protocol sections the loader checks here: ``acknowledgements`` and ``course_start``.

Both are optional, so protocol texts pinned by older cases (which had neither) still load; the
shipped protocol has both. Everything is checked before anything is built, like the rest of the
loader: every step, item, role, rule and source they name must exist.
"""

from __future__ import annotations

from workflow.core.events import MEANINGS

from ._context import Context
from ._fields import MapReader
from ._items import read_items
from ._yaml import YList
from .model import WARNING_CODES, Acknowledgement, CourseStart, Item, Retreatment, Rule, Step


def _where_warning_arises(
    code: str, steps: tuple[Step, ...], initial: str | None, eligibility_step: str | None
) -> set[str]:
    kind = WARNING_CODES[code]
    if kind == "initial":
        return {initial} if initial else set()
    if kind == "eligibility":
        return {eligibility_step} if eligibility_step else set()
    return {s.id for s in steps if s.stops_infusion}


def acknowledgements(
    v: Context,
    seq: YList,
    steps: tuple[Step, ...],
    initial: str | None,
    eligibility_step: str | None,
) -> tuple[Acknowledgement, ...]:
    out: list[Acknowledgement] = []
    seen: set[str] = set()
    for i, node in enumerate(seq):
        r = MapReader(v.issues, node, f"acknowledgements[{i}]", seq.line_of(i))
        if not r.ok:
            continue
        aid = r.ident("id")
        fields = (r.ident("warning"), r.ident("step"), r.ident("item"))
        roles = r.ident_list("roles", required=True)
        refuse = r.flag("refuse")
        source = r.text("source")
        confirmed = r.flag("confirmed", default=True)
        note = r.text("note", required=False, default="") or ""
        r.done()
        v.cite(r.line_of("source"), source, r.where)
        if aid in seen:
            v.issues.add(r.line_of("id"), f"duplicate acknowledgement id '{aid}'")
            continue
        if aid:
            seen.add(aid)
        if not _acknowledgement_fits(v, r, fields, roles, steps, initial, eligibility_step):
            continue
        warning, step_id, item_id = fields
        if aid and warning and step_id and item_id and roles and source:
            out.append(
                Acknowledgement(
                    aid, warning, step_id, item_id, roles, refuse, source, confirmed, note
                )
            )
    return tuple(out)


def _acknowledgement_fits(
    v: Context,
    r: MapReader,
    fields: tuple[str | None, str | None, str | None],
    roles: tuple[str, ...],
    steps: tuple[Step, ...],
    initial: str | None,
    eligibility_step: str | None,
) -> bool:
    """The warning exists and arises at the step; the reason item is an optional text item of
    that step; the roles may sign it. Each problem is reported with its line."""
    warning, step_id, item_id = fields
    if warning is not None and warning not in WARNING_CODES:
        v.issues.add(
            r.line_of("warning"),
            f"{r.where}.warning '{warning}' is not a warning Bedside raises "
            f"(allowed: {', '.join(WARNING_CODES)})",
        )
        return False
    step = next((s for s in steps if s.id == step_id), None)
    if step_id and steps and step is None:
        v.issues.add(r.line_of("step"), f"{r.where}.step '{step_id}' does not exist")
        return False
    if step is None or warning is None:
        return True
    arises = _where_warning_arises(warning, steps, initial, eligibility_step)
    if step.id not in arises:
        v.issues.add(
            r.line_of("step"),
            f"{r.where}: warning '{warning}' is never raised at step '{step.id}' "
            f"(it arises at: {', '.join(sorted(arises)) or 'no step'})",
        )
        return False
    item = step.item(item_id) if item_id else None
    if item_id and (item is None or item.type != "text" or item.required):
        v.issues.add(
            r.line_of("item"),
            f"{r.where}.item '{item_id}' must be an optional text item of step "
            f"'{step.id}' (it holds the reason, required only when the warning arises)",
        )
        return False
    outside = [role for role in roles if role not in step.roles]
    if outside:
        v.issues.add(
            r.line_of("roles"),
            f"{r.where}.roles: {', '.join(outside)} may not sign step '{step.id}' "
            f"(its roles: {', '.join(step.roles)})",
        )
        return False
    return True


def course_start(v: Context, r: MapReader, rules: tuple[Rule, ...]) -> CourseStart | None:
    roles = r.ident_list("roles", required=True)
    meaning = r.ident("meaning")
    seq = r.seq("attestations")
    retreat_node = r.sub("retreatment", required=False)
    r.done()
    for role in roles:
        if role not in v.roles:
            v.issues.add(r.line_of("roles"), f"course_start.roles: role '{role}' is not defined")
    if meaning is not None and meaning not in MEANINGS:
        v.issues.add(
            r.line_of("meaning"),
            f"course_start.meaning '{meaning}' is not a Part 11 signature meaning "
            f"(allowed: {', '.join(sorted(MEANINGS))})",
        )
    items: tuple[Item, ...] = ()
    parsed = read_items(v, seq, "course_start.attestations") if seq is not None else None
    for i, it in enumerate(parsed or ()):
        if it.type != "boolean" or it.must_be is not True or not it.required or not it.source:
            v.issues.add(
                seq.line_of(i) if seq is not None else r.line,
                f"course_start.attestations: '{it.id}' must be a required boolean with "
                "must_be: true and a source (an attestation is ticked, or the course waits)",
            )
            parsed = None
    if parsed is not None:
        items = parsed
    retreatment = _retreatment(v, retreat_node, rules) if retreat_node else None
    if not roles or meaning is None or not items:
        return None
    return CourseStart(roles, meaning, items, retreatment)


def _retreatment(v: Context, r: MapReader, rules: tuple[Rule, ...]) -> Retreatment | None:
    after = r.ident_list("contraindicated_after", required=True)
    source = r.text("source")
    override_roles = r.ident_list("override_roles")
    r.done()
    v.cite(r.line_of("source"), source, "course_start.retreatment")
    known = {rule.id: rule for rule in rules}
    for rid in after:
        rule = known.get(rid)
        if rule is None or rule.action != "discontinue":
            v.issues.add(
                r.line_of("contraindicated_after"),
                f"course_start.retreatment.contraindicated_after: '{rid}' is not a "
                "discontinue rule of this protocol",
            )
    for role in override_roles:
        if role not in v.roles:
            v.issues.add(
                r.line_of("override_roles"),
                f"course_start.retreatment.override_roles: role '{role}' is not defined",
            )
    if not after or source is None:
        return None
    return Retreatment(after, source, override_roles)
