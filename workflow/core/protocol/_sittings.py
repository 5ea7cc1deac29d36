"""The ``sittings`` section: consecutive steps one person does at one sitting, signed together.

A sitting is shown as one form and signed with one signature: the password is typed once for
all its steps (21 CFR 11.200(a)(1)(i): one signing, with one component inside a continuous
session). Each step still gets its own signed event, with its own items, checks and meaning,
exactly as when it is signed alone, and can still be signed alone.

Signing together must not let one step decide for another, so a sitting is refused at load
unless its steps follow each other in the walk (each one's ``next`` is the following one), a
role may sign them all, no item id repeats (the form names fields by item id), and no step
but the last one evaluates rules (a hold would stop the walk before the next step), starts the
infusion (the time must pass before anything after it), checks another step of the sitting,
or is one side of an independent double check (another person signs the blinded side).
"""

from __future__ import annotations

from itertools import pairwise

from ._fields import Issues, MapReader
from ._yaml import YList
from .model import Step, common_roles


def sittings(issues: Issues, seq: YList, steps: tuple[Step, ...]) -> tuple[tuple[str, ...], ...]:
    by_id = {s.id: s for s in steps}
    out: list[tuple[str, ...]] = []
    taken: dict[str, int] = {}
    for i, node in enumerate(seq):
        r = MapReader(issues, node, f"sittings[{i}]", seq.line_of(i))
        if not r.ok:
            continue
        ids = r.ident_list("steps", required=True)
        r.done()
        line = r.line_of("steps") if r.has("steps") else r.line
        problems = _problems(ids, by_id, taken, i)
        for message in problems:
            issues.add(line, f"sittings[{i}].steps: {message}")
        for sid in ids:
            taken.setdefault(sid, i)
        if not problems:
            out.append(ids)
    return tuple(out)


def _problems(
    ids: tuple[str, ...], by_id: dict[str, Step], taken: dict[str, int], index: int
) -> list[str]:
    if len(ids) < 2:
        return ["a sitting has at least two steps"]
    unknown = [sid for sid in ids if sid not in by_id]
    if unknown:
        return [f"'{sid}' is not a step (steps: {', '.join(by_id)})" for sid in unknown]
    out = [f"'{sid}' is in sittings[{taken[sid]}] too" for sid in ids if sid in taken]
    chosen = [by_id[sid] for sid in ids]
    for here, after in pairwise(chosen):
        if here.next != after.id:
            out.append(f"'{after.id}' does not follow '{here.id}' (its next is '{here.next}')")
    if not common_roles(chosen):
        out.append("no role may sign every step of it")
    seen: dict[str, str] = {}
    for step in chosen:
        for item in step.items:
            if item.id in seen:
                out.append(f"item '{item.id}' is in '{seen[item.id]}' and '{step.id}'")
            seen[item.id] = step.id
        if step.blinded_against or any(s.blinded_against == step.id for s in by_id.values()):
            out.append(f"'{step.id}' is one side of an independent double check")
        if set(step.verifies) & set(ids):
            out.append(f"'{step.id}' checks another step of the same sitting")
    for step in chosen[:-1]:
        if step.evaluates_rules:
            out.append(f"'{step.id}' evaluates rules, so only the last step may")
        if step.starts_infusion:
            out.append(f"'{step.id}' starts the infusion, so only the last step may")
    return out
