"""The ``eligibility`` section: which step records the screening tests and how old they may be.

Every test names a choice item with a 'normal' option and a date item of that step."""

from __future__ import annotations

from ._context import Context
from ._fields import MapReader
from .model import Eligibility, EligibilityTest, Step


def eligibility(ctx: Context, r: MapReader, steps: tuple[Step, ...]) -> Eligibility | None:
    step_id = r.ident("step")
    max_age = ctx.quantity(r, "max_age", "d", "eligibility.max_age")
    seq = r.seq("tests")
    r.done()
    by_id = {s.id: s for s in steps}
    step = by_id.get(step_id) if step_id else None
    if step_id and steps and step is None:
        ctx.issues.add(r.line_of("step"), f"eligibility.step '{step_id}' does not exist")
    tests: list[EligibilityTest] = []
    for i, node in enumerate(seq or []):
        where = f"eligibility.tests[{i}]"
        t = MapReader(ctx.issues, node, where, seq.line_of(i) if seq else r.line)
        tid, title = t.ident("id"), t.text("title")
        result_item, date_item = t.ident("result_item"), t.ident("date_item")
        source = t.text("source")
        t.done()
        ctx.cite(t.line_of("source"), source, where)
        if step is not None:
            res = step.item(result_item) if result_item else None
            if result_item and (
                res is None or res.type != "choice" or "normal" not in res.option_ids()
            ):
                ctx.issues.add(
                    t.line_of("result_item"),
                    f"{where}.result_item '{result_item}' must be a choice item "
                    f"of step '{step.id}' with a 'normal' option",
                )
            dat = step.item(date_item) if date_item else None
            if date_item and (dat is None or dat.type != "date"):
                ctx.issues.add(
                    t.line_of("date_item"),
                    f"{where}.date_item '{date_item}' must be a date item of step '{step.id}'",
                )
        if tid and title and result_item and date_item and source:
            tests.append(EligibilityTest(tid, title, result_item, date_item, source))
    if step_id is None or max_age is None or not tests:
        if seq is not None and not tests and not ctx.issues.items:
            ctx.issues.add(r.line, "eligibility.tests must list at least one test")
        return None
    return Eligibility(step_id, tuple(tests), max_age)
