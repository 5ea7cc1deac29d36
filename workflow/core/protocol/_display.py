"""Three protocol sections the loader checks here: ``words``, the steps' ``scans``, ``records``.

They declare what Python once knew by name: the display words for clinical facts, which steps
identify products by barcode, and which steps feed which record sections. All three are
optional, so protocol texts pinned by older cases (which had none) still load: their words,
scans and records are then built from that text's own data (``legacy_*``). When present they
are checked completely: every step, item and placeholder they name must exist.
"""

from __future__ import annotations

from ._context import Context
from ._fields import MapReader
from ._yaml import YList
from .model import (
    RECORD_KINDS,
    SECTION_CONTENTS,
    SECTION_ROWS,
    Item,
    RecordSection,
    RecordSpec,
    ScanSpec,
    Step,
)
from .words import WORD_KEYS, unknown_placeholders

# The items a scanned product must have on its step: what the archive indexes and the scan
# check compares.
_SCAN_ITEMS = ("lot", "expiry")


def words(v: Context, r: MapReader) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in list(r.node):
        if key not in WORD_KEYS:
            continue
        text = r.text(key)
        if text is None:
            continue
        bad = unknown_placeholders(text, words=False)
        if bad:
            v.issues.add(
                r.line_of(key),
                f"words.{key}: unknown placeholder(s) {', '.join('{' + b + '}' for b in bad)} "
                "(allowed: a quantity path such as {dosing.beyond_use}, or {protocol.drug}, "
                "{protocol.brand}, {protocol.name}, {protocol.version})",
            )
            continue
        out[key] = text
    missing = [k for k in WORD_KEYS if k not in r.node]
    if missing:
        v.issues.add(
            r.line,
            "words: missing " + "; ".join(f"'{k}' ({WORD_KEYS[k]})" for k in missing),
        )
    r.done(allowed_extra=tuple(WORD_KEYS))
    return out


def scans(v: Context, seq: YList, where: str, items: tuple[Item, ...]) -> tuple[ScanSpec, ...]:
    ids = {it.id for it in items}
    out: list[ScanSpec] = []
    seen: set[str] = set()
    for i, node in enumerate(seq):
        r = MapReader(v.issues, node, f"{where}.scans[{i}]", seq.line_of(i))
        if not r.ok:
            continue
        kind = r.ident("kind")
        ingredient = r.text("ingredient")
        amount = r.text("amount", required=False, default="") or ""
        r.done()
        if kind is None or ingredient is None:
            continue
        if kind in seen:
            v.issues.add(r.line_of("kind"), f"{r.where}: kind '{kind}' is listed twice")
            continue
        seen.add(kind)
        missing = [f"{kind}_{s}" for s in _SCAN_ITEMS if f"{kind}_{s}" not in ids]
        if missing:
            v.issues.add(
                r.line_of("kind"),
                f"{r.where}: a scanned '{kind}' needs the items {', '.join(missing)} on this step",
            )
            continue
        ok = True
        for key, text in (("ingredient", ingredient), ("amount", amount)):
            bad = unknown_placeholders(text, words=True, extra=tuple(sorted(ids)))
            if bad:
                ok = False
                v.issues.add(
                    r.line_of(key),
                    f"{r.where}.{key}: unknown placeholder(s) "
                    f"{', '.join('{' + b + '}' for b in bad)} (allowed: an item of this step, "
                    "{words.KEY}, a quantity path, {protocol.drug} ...)",
                )
        if ok:
            out.append(ScanSpec(kind, ingredient, amount))
    return tuple(out)


def legacy_scans(step: Step) -> tuple[ScanSpec, ...]:
    """A text from before ``scans`` marked a product by its items: ``{kind}_entry`` offering
    "scanned", with ``{kind}_lot`` and ``{kind}_expiry``. Its ingredient is named by the lot
    item's label ("Sterile water lot" -> "Sterile water")."""
    out = []
    for entry in step.items:
        kind = entry.id.removesuffix("_entry")
        if kind == entry.id or "scanned" not in entry.option_ids():
            continue
        lot = step.item(f"{kind}_lot")
        if lot is None or step.item(f"{kind}_expiry") is None:
            continue
        name = lot.label[: -len(" lot")] if lot.label.lower().endswith(" lot") else lot.label
        out.append(ScanSpec(kind, name, ""))
    return tuple(out)


def _section(v: Context, r: MapReader, by_id: dict[str, Step], kind: str) -> RecordSection | None:
    key = r.ident("key")
    title = r.text("title")
    step_id = r.ident("step", required=False)
    content = r.ident("content", required=False)
    only = r.ident_list("only")
    skip = r.ident_list("skip")
    signed_by = r.flag("signed_by", default=True)
    signer = r.text("signer", required=False, default="Signed by") or "Signed by"
    lead = r.ident_list("lead")
    add = r.ident_list("add")
    r.done()
    ok = key is not None and title is not None
    ok &= _content_fits(v, r, by_id, step_id, content)
    ok &= _rows_known(v, r, lead, add)
    if step_id is not None:
        step = by_id.get(step_id)
        if step is None:
            v.issues.add(
                r.line_of("step"),
                f"{r.where}.step '{step_id}' does not exist (steps: {', '.join(by_id)})",
            )
            return None
        ok &= _items_named(v, r, step, only, skip)
    elif only or skip or r.has("signed_by") or r.has("signer"):
        v.issues.add(r.line, f"{r.where}: only, skip, signed_by and signer need a 'step'")
        ok = False
    if not ok or key is None or title is None:
        return None
    return RecordSection(key, title, step_id, content, only, skip, signed_by, signer, lead, add)


def _content_fits(
    v: Context, r: MapReader, by_id: dict[str, Step], step_id: str | None, content: str | None
) -> bool:
    """Exactly one of step and content; a known content, with the steps it draws on."""
    ok = True
    if (step_id is None) == (content is None):
        v.issues.add(r.line, f"{r.where}: give exactly one of 'step' (its entries) or 'content'")
        ok = False
    if content is not None and content not in SECTION_CONTENTS:
        v.issues.add(
            r.line_of("content"),
            f"{r.where}.content '{content}' is not known (allowed: {', '.join(SECTION_CONTENTS)})",
        )
        ok = False
    if content == "double_check" and not any(s.blinded_against for s in by_id.values()):
        v.issues.add(
            r.line_of("content"),
            f"{r.where}: content 'double_check' needs a step with blinded_against",
        )
        ok = False
    if content == "ingredients" and not any(s.scans for s in by_id.values()):
        v.issues.add(
            r.line_of("content"), f"{r.where}: content 'ingredients' needs a step with scans"
        )
        ok = False
    return ok


def _rows_known(v: Context, r: MapReader, lead: tuple[str, ...], add: tuple[str, ...]) -> bool:
    ok = True
    for name, rows in (("lead", lead), ("add", add)):
        for row in rows:
            if row not in SECTION_ROWS:
                v.issues.add(
                    r.line_of(name),
                    f"{r.where}.{name}: '{row}' is not known (allowed: {', '.join(SECTION_ROWS)})",
                )
                ok = False
    return ok


def _items_named(
    v: Context, r: MapReader, step: Step, only: tuple[str, ...], skip: tuple[str, ...]
) -> bool:
    """``only`` or ``skip`` (not both) name items of the section's step."""
    ok = True
    if only and skip:
        v.issues.add(r.line_of("only"), f"{r.where}: give 'only' or 'skip', not both")
        ok = False
    for name, ids in (("only", only), ("skip", skip)):
        for item_id in ids:
            if step.item(item_id) is None:
                v.issues.add(
                    r.line_of(name),
                    f"{r.where}.{name}: step '{step.id}' has no item '{item_id}'",
                )
                ok = False
    return ok


def records(v: Context, r: MapReader, steps: tuple[Step, ...]) -> tuple[RecordSpec, ...]:
    by_id = {s.id: s for s in steps}
    out: list[RecordSpec] = []
    if not r.has("administration"):
        v.issues.add(r.line, "records: missing 'administration' (every dose has one)")
    for kind in RECORD_KINDS:
        spec = r.sub(kind, required=False)
        if spec is None:
            continue
        from_step = spec.ident("from_step", required=False)
        step_ids = spec.ident_list("steps", required=True)
        seq = spec.seq("sections")
        spec.done()
        for sid in (*step_ids, *([from_step] if from_step else [])):
            if sid not in by_id:
                v.issues.add(
                    spec.line_of("steps"),
                    f"records.{kind}: step '{sid}' does not exist (steps: {', '.join(by_id)})",
                )
        sections: list[RecordSection] = []
        keys: set[str] = set()
        for i, node in enumerate(seq or []):
            line = seq.line_of(i) if seq is not None else spec.line
            sr = MapReader(v.issues, node, f"records.{kind}.sections[{i}]", line)
            if not sr.ok:
                continue
            section = _section(v, sr, by_id, kind)
            if section is None:
                continue
            if section.key in keys:
                v.issues.add(sr.line_of("key"), f"{sr.where}: key '{section.key}' is used twice")
                continue
            keys.add(section.key)
            sections.append(section)
        out.append(RecordSpec(kind, from_step, step_ids, tuple(sections)))
    r.done()
    # Every signed step's signature must be printed on some record.
    covered = {sid for spec in out for sid in spec.steps}
    lost = [s.id for s in steps if s.id not in covered]
    if out and lost:
        v.issues.add(
            r.line,
            f"records: step(s) {', '.join(lost)} are on no record's 'steps' (every signature "
            "must be printed on a record)",
        )
    return tuple(out)


def legacy_records(steps: tuple[Step, ...], initial: str) -> tuple[RecordSpec, ...]:
    """Records for a text from before ``records``: one section per step. The preparation is
    the phase of the step that starts the beyond-use clock; it and the order make the
    compounding record, every other step the administration record."""
    starts = next((s for s in steps if s.sets_beyond_use), None)
    phase = starts.phase if starts else None
    prepared = tuple(s.id for s in steps if phase is not None and s.phase == phase)
    pair = {s.id for s in steps if s.blinded_against} | {
        s.blinded_against for s in steps if s.blinded_against
    }

    def own(step: Step) -> RecordSection:
        return RecordSection(step.id, step.title, step=step.id)

    out: list[RecordSpec] = []
    first = next(s for s in steps if s.id == initial)
    if starts is not None:
        out.append(
            RecordSpec(
                "compounding",
                starts.id,
                (initial, *prepared),
                (
                    RecordSection(initial, first.title, step=initial, lead=("product",)),
                    RecordSection("calculations", "Dose calculation", content="plan"),
                    *(
                        (RecordSection("ingredients", "Ingredients", content="ingredients"),)
                        if any(s.scans for s in steps)
                        else ()
                    ),
                    *(own(s) for s in steps if s.id in prepared),
                    RecordSection("outcome", "Outcome", content="outcome"),
                ),
            )
        )
    rest = tuple(s for s in steps if s.id not in prepared)
    sections: list[RecordSection] = []
    for s in rest:
        if s.id in pair:
            if s.blinded_against:
                sections.append(RecordSection("double_check", s.title, content="double_check"))
            continue
        sections.append(own(s))
    sections.append(RecordSection("exits", "Holds and exits", content="exits"))
    sections.append(RecordSection("calculations", "Dose calculation", content="plan"))
    out.append(RecordSpec("administration", None, tuple(s.id for s in rest), tuple(sections)))
    return tuple(out)
