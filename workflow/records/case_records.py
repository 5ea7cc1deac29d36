"""Turn a replayed case into its two record documents, using only what its events say.

Nothing is re-typed: every row comes from an entry, a flag, a hold or the dose plan that the
case rebuilt from its own events, and the events themselves are embedded for replay. A dose
that never reached compounding gets only an administration record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from functools import cache
from typing import Literal

from workflow.core.dosing import fmt
from workflow.core.events import ORDER_NOTICE, STEP_REJECTED, Event, format_time, parse_time
from workflow.core.gravimetric import balance_replies, recorded_weighings
from workflow.core.items import display
from workflow.core.machine import Case, Entry
from workflow.core.names import with_id
from workflow.core.photos import photos_of
from workflow.core.protocol.model import Item, RecordSection, RecordSpec, Step
from workflow.core.rules import Firing
from workflow.core.titles import event_title, role_title, warning_title
from workflow.records.document import (
    ProtocolRef,
    RecordDocument,
    Row,
    Section,
    SignatureManifestation,
    Table,
    Thumbnail,
)

RecordKind = Literal["compounding", "administration"]


class _CompoundingOnlySteps:
    """The steps only the compounding record prints, read from the shipped protocol's
    ``records``. Kept under this name for workflow/dev/seed.py, which imports it (another
    change's file); new code reads ``protocol.record(kind).steps`` of the case's protocol."""

    def __contains__(self, step_id: object) -> bool:
        return step_id in _shipped_compounding_only()


@cache
def _shipped_compounding_only() -> frozenset[str]:
    from workflow.core.protocol.loader import load_protocol
    from workflow.resources import default_protocol_path

    protocol = load_protocol(default_protocol_path())
    comp, admin = protocol.record("compounding"), protocol.record("administration")
    return frozenset(comp.steps if comp else ()) - frozenset(admin.steps if admin else ())


_COMPOUNDING_STEPS = _CompoundingOnlySteps()


def _when(dt: datetime | None, tz: tzinfo) -> str:
    """A time as people read it: the site's zone, to the minute ("2026-12-02 14:05 CET")."""
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if dt else "-"


def _when_text(text: object, tz: tzinfo) -> str:
    """A time stored as ISO text in the case (holds, assessments, the end), read back and shown
    like :func:`_when`; text that is not a time is shown as it is."""
    try:
        return _when(parse_time(str(text)), tz)
    except (ValueError, TypeError):
        return str(text)


def _who(case: Case, entry: Entry, tz: tzinfo) -> str:
    signer = entry.signer
    role = role_title(case.protocol, signer.role)
    return f"{with_id(signer.name, signer.user_id)}, {role}, {_when(entry.at, tz)}"


def _signatures(
    case: Case, tz: tzinfo, steps: Iterable[str] | None = None
) -> tuple[SignatureManifestation, ...]:
    wanted = set(steps) if steps is not None else None
    out: list[SignatureManifestation] = []
    for event in case.events:
        if event.actor is None or event.meaning is None:
            continue
        if wanted is not None and event.step not in wanted:
            continue
        out.append(
            SignatureManifestation(
                printed_name=event.actor.name,
                user_id=event.actor.user_id,
                # Words, not ids: "Pharmacist - Order verification" wraps between words.
                role=f"{role_title(case.protocol, event.actor.role)} - "
                f"{event_title(case.protocol, event)}{_sitting_words(case, event)}",
                signed_at_utc=_when(event.at, tz),
                meaning=event.meaning,
                content_hash=event.content_hash(),
            )
        )
    return tuple(out)


def _sitting_words(case: Case, event: Event) -> str:
    """A step signed in a sitting says which steps the same signature signed with it."""
    sitting = event.data.get("sitting") or []
    others = [case.protocol.step(s).title for s in sitting if s != event.step]
    return f" (one signature with: {'; '.join(others)})" if others else ""


def _subject(case: Case) -> tuple[tuple[str, str], ...]:
    p = case.patient
    assert p is not None
    per_cycle = int(case.protocol.schedule.max_doses_per_cycle.value)
    per_course = int(case.protocol.schedule.max_doses_per_course.value)
    return (
        ("Patient", p.name),
        ("MRN", p.mrn),
        ("Date of birth", p.date_of_birth.isoformat()),
        (
            "Dose",
            f"cycle {case.cycle}, dose {case.dose_in_cycle} of {per_cycle} "
            f"(course dose {case.dose_in_course} of {per_course})",
        ),
        ("Case", case.case_id),
    )


def _protocol(case: Case) -> ProtocolRef:
    p = case.protocol
    if p.overlay is None:
        return ProtocolRef(p.name, p.version, p.content_hash)
    return ProtocolRef(
        p.name,
        p.version,
        p.content_hash,
        file_sha256=p.file_hash,
        overlay_name=p.overlay.name,
        overlay_version=p.overlay.version,
        overlay_sha256=p.overlay.content_hash,
    )


def _course_section(case: Case, tz: tzinfo) -> Section | None:
    """The course's signed start (attestations, any retreatment override), as every dose of the
    course carries it in its opening event; None for courses started before it was kept."""
    start = case.course_start
    if not start:
        return None
    spec = case.protocol.course_start
    labels = {it.id: it.label for it in spec.items} if spec else {}
    rows = [
        Row(labels.get(key, key), "attested" if value is True else str(value))
        for key, value in sorted((start.get("attestations") or {}).items())
    ]
    by = start.get("by") or {}
    rows.append(
        Row(
            "Signed by",
            f"{with_id(str(by.get('name', '-')), str(by.get('user_id', '-')))}, "
            f"{role_title(case.protocol, str(by.get('role', '-')))}, "
            f"{_when_text(start.get('at', '-'), tz)}, "
            f"{start.get('meaning', '-')}",
            note=f"signed content SHA-256 {start.get('content_hash', '-')}",
        )
    )
    override = start.get("retreatment_override")
    if override:
        against = override.get("contraindication") or {}
        rows.append(
            Row(
                "Retreatment override",
                str(override.get("reason", "-")),
                note=(
                    f"retreatment contraindicated after {against.get('rule_text', '-')} "
                    f"(rule {against.get('rule_id', '-')}, {str(against.get('at', '-'))[:10]}, "
                    f"cycle {against.get('cycle', '-')} dose {against.get('dose_in_cycle', '-')})"
                ),
                flag="override",
            )
        )
    return Section(
        "course_start", "Course start (the prescriber's signed attestations)", tuple(rows)
    )


def _flags(case: Case) -> Section | None:
    if not case.flags:
        return None
    return Section(
        "deviations",
        "Deviations and corrections",
        tuple(
            Row(warning_title(f.code), f.message, note=f"{f.code}, event {f.seq}", flag="review")
            for f in case.flags
        ),
    )


def _order_notices(case: Case, tz: tzinfo) -> Section | None:
    """What the hospital's orders told this dose beyond its order entry (core/order_notice.py):
    a moved due time, a discontinuation after the bag was made (the bag is wasted)."""
    rows = []
    for e in case.events:
        if e.type != ORDER_NOTICE:
            continue
        data = e.data
        who = with_id(e.actor.name, e.actor.user_id) if e.actor else "-"
        if data.get("action") == "rescheduled":
            value = (
                f"due {_when_text(data.get('scheduled_at'), tz)} (was "
                f"{_when_text(data.get('previous_scheduled_at'), tz)})"
            )
            title, flag = "Due time changed", None
        else:
            value, title, flag = "do not give: waste the bag", "Order discontinued", "stop"
        rows.append(
            Row(
                title,
                value,
                note=f"{data.get('note', '')}; {data.get('message', '')}; {who}, "
                f"{_when(e.at, tz)} (event {e.seq})",
                flag=flag,
            )
        )
    if not rows:
        return None
    return Section("order_notices", "Orders from the hospital", tuple(rows))


def _history(case: Case, steps: Iterable[str], tz: tzinfo) -> Section | None:
    wanted = set(steps)
    old = [e for e in case.history if e.superseded_by is not None and e.step in wanted]
    if not old:
        return None
    # Entries a verifier sent back (core/rejection.py) say who did and why.
    sent_back = {
        ev.seq: f"sent back by {ev.actor.name if ev.actor else '-'}: {ev.data.get('reason', '')}"
        for ev in case.events
        if ev.type == STEP_REJECTED
    }
    rows = []
    for e in old:
        step = case.protocol.step(e.step)
        values = "; ".join(
            f"{_label(step, k)}: {display(step.item(k) or _any_item(step), v, tz)}"
            for k, v in e.values.items()
        )
        rows.append(
            Row(
                f"{step.title} (event {e.seq})",
                values,
                note=f"{_who(case, e, tz)}; superseded by event {e.superseded_by}"
                + (f" ({sent_back[e.superseded_by]})" if e.superseded_by in sent_back else ""),
                flag="superseded",
            )
        )
    return Section("history", "Superseded entries (kept, never deleted)", tuple(rows))


def _any_item(step: Step) -> Item:
    return step.items[0]


def _label(step: Step, item_id: str) -> str:
    item = step.item(item_id)
    return item.label if item is not None else item_id


def _plan_section(case: Case) -> Section:
    plan = case.plan
    d = case.protocol.dosing
    if plan is None:
        return Section("calculations", "Dose calculation", (Row("Plan", "no order signed"),))
    words = plan.words()  # the one rounding for people (core/dosing.PLAN_DECIMALS)
    rows = [
        Row("Dosing weight", f"{words['weight_kg']} kg"),
        Row(
            "Dose",
            f"{words['weight_kg']} kg x {words['dose_iu_per_kg']} IU/kg = {words['dose_iu']} IU",
            note=f"source: {d.dose_per_kg.source}",
        ),
        Row("Dose in mg", f"{words['dose_mg']} mg", note=plan.mg_convention),
        Row(
            "Vials",
            f"{plan.vials} x {fmt(d.vial_content.value, 0)} IU ({fmt(d.vial_mass.value)} mg)",
        ),
        Row(
            "Reconstitution",
            f"{words['reconstitution_volume_ml_per_vial']} mL "
            f"{case.protocol.say('reconstitution_diluent')} per vial -> "
            f"{fmt(d.reconstituted_concentration.value, 0)} {d.reconstituted_concentration.unit}",
        ),
        Row(
            "Reconstituted volume",
            f"{words['dose_iu']} IU / "
            f"{fmt(d.reconstituted_concentration.value, 0)} {d.reconstituted_concentration.unit} = "
            f"{words['reconstituted_volume_ml']} mL",
        ),
        Row(
            f"{case.protocol.say('final_diluent_short') or 'Diluent'} volume",
            f"{words['diluent_volume_ml']} mL",
            note=plan.band_text() + f" [source: {plan.diluent_band.source}]",
        ),
        Row("Final volume", f"{words['final_volume_ml']} mL"),
        Row(
            "Final concentration",
            f"{words['final_concentration_mcg_per_ml']} {d.concentration_min.unit}",
            note=f"window {case.protocol.say('concentration_window')}",
        ),
        Row(
            "Pump rate",
            f"{words['pump_rate_ml_per_h']} mL/h over {words['infusion_minutes']} min",
        ),
    ]
    for w in plan.warnings:
        rows.append(Row("Warning", w.message, note=w.code, flag="warning"))
    return Section("calculations", "Dose calculation and its variables", tuple(rows))


def _end_rows(case: Case, tz: tzinfo) -> list[Row]:
    end = case.end or {}
    rows = [Row("State", case.state)]
    if end.get("reason"):
        exit_name = {"discontinued": "discontinue", "cancelled": "cancel", "wasted": "waste"}
        said = _reason_label(case, exit_name.get(case.state, ""), end.get("reason"))
        rows.append(Row("Reason", said, note=str(end.get("note") or "") or None))
    if end.get("at"):
        rows.append(Row("At", _when_text(end["at"], tz)))
    return rows


def _product_rows(case: Case) -> list[Row]:
    p = case.protocol
    return [
        Row("Prescription / case", case.case_id),
        Row("Drug and strength", p.say("product")),
        Row("Master formulation", f"{p.name}, protocol {p.version}"),
    ]


def _beyond_use_row(case: Case, tz: tzinfo) -> Row:
    return Row(
        "Beyond-use time", _when(case.beyond_use_at, tz), note=case.protocol.say("beyond_use")
    )


def _infusion_rows(case: Case, tz: tzinfo) -> list[Row]:
    started, stopped = case.given_at, case.stopped_at
    rows = [Row("Started", _when(started, tz)), Row("Stopped", _when(stopped, tz))]
    if started and stopped:
        minutes = round((stopped - started).total_seconds() / 60)
        planned = case.protocol.dosing.infusion_duration.value
        rows.append(
            Row(
                "Actual duration",
                f"{minutes} min",
                note=f"protocol: {fmt(planned)} min",
                flag="deviation" if minutes != planned else None,
            )
        )
    return rows


def _scanned_item_ids(step: Step) -> set[str]:
    """The items a step's scanned products print in the ingredient table, not its section."""
    return {f"{scan.kind}_{part}" for scan in step.scans for part in ("lot", "expiry", "gtin")}


def _ingredients(case: Case) -> Section:
    """One row per product the protocol's steps identify (``scans``), in walk order."""
    rows: list[tuple[str, ...]] = []
    for step in case.protocol.steps:
        entry = case.current.get(step.id)
        if entry is None or not step.scans:
            continue
        v = entry.values
        shown = {it.id: display(it, v[it.id]) for it in step.items if it.id in v}
        for scan in step.scans:
            kind = scan.kind
            how = v.get(f"{kind}_entry")
            why = step.item(f"{kind}_typed_reason")
            reason = v.get(f"{kind}_typed_reason")
            method = (
                "scanned"
                if how == "scanned"
                else f"typed in: {display(why, reason) if why and reason else '-'}"
                if how == "typed"
                else ""
            )
            amount = case.protocol.text(scan.amount, shown)
            expiry = step.item(f"{kind}_expiry")
            rows.append(
                (
                    case.protocol.text(scan.ingredient, shown),
                    str(v.get(f"{kind}_gtin", "-")),
                    str(v.get(f"{kind}_lot", "-")),
                    display(expiry, v.get(f"{kind}_expiry")) if expiry else "-",
                    ", ".join(part for part in (amount, method) if part) or "-",
                )
            )
    return Section(
        "ingredients",
        "Ingredients, lots and expiries",
        tables=(
            Table(
                "ingredients",
                "Ingredients",
                ("Ingredient", "GTIN / NDC", "Lot", "Expiry", "Amount"),
                tuple(rows),
            ),
        ),
    )


def _row_set(case: Case, name: str, tz: tzinfo) -> list[Row]:
    if name == "product":
        return _product_rows(case)
    if name == "beyond_use":
        return [_beyond_use_row(case, tz)]
    return _infusion_rows(case, tz)  # infusion_times: the loader allows nothing else


def _exits_section(case: Case, spec: RecordSection, tz: tzinfo) -> Section:
    holds = _hold_rows(case, tz) or [Row("Holds", "none")]
    return Section(spec.key, spec.title, tuple(holds + _end_rows(case, tz)))


def _double_check_section(case: Case, spec: RecordSection, tz: tzinfo) -> Section:
    dc = _double_check_table(case, tz)
    return Section(
        spec.key,
        spec.title,
        tables=(dc,) if dc else (),
        rows=tuple(Row("Difference", d, flag="mismatch") for d in case.differences),
    )


def _step_section(case: Case, spec: RecordSection, tz: tzinfo) -> Section:
    assert spec.step is not None  # the loader gives a section a step or a content
    step = case.protocol.step(spec.step)
    entry = case.current.get(spec.step)
    skip = set(spec.skip) | _scanned_item_ids(step)
    rows: list[Row] = [r for name in spec.lead for r in _row_set(case, name, tz)]
    if entry is None:
        rows.append(Row(step.title, "not signed"))
    else:
        keep = set(spec.only) if spec.only else None
        rows += [
            Row(item.label, display(item, entry.values.get(item.id), tz))
            for item in step.items
            if item.id in entry.values
            and (item.id in keep if keep is not None else item.id not in skip)
        ]
        if spec.signed_by:
            rows.append(Row(spec.signer, _who(case, entry, tz)))
    rows += [r for name in spec.add for r in _row_set(case, name, tz)]
    return Section(spec.key, spec.title, tuple(rows))


def _section(case: Case, spec: RecordSection, tz: tzinfo) -> Section:
    if spec.step is not None:
        return _step_section(case, spec, tz)
    if spec.content == "plan":
        return replace(_plan_section(case), key=spec.key, title=spec.title)
    if spec.content == "ingredients":
        return replace(_ingredients(case), key=spec.key, title=spec.title)
    if spec.content == "double_check":
        return _double_check_section(case, spec, tz)
    if spec.content == "exits":
        return _exits_section(case, spec, tz)
    return Section(spec.key, spec.title, tuple(_end_rows(case, tz)))  # outcome


def _gravimetric_section(case: Case) -> Section | None:
    """Each weighed addition: the weights, how they were taken, the computed volume against
    the plan, and the constants used, saying which no source confirms (issue 16.3)."""
    rows: list[Row] = []
    for w in recorded_weighings(case):
        how = "read from the balance" if w.weighed_by == "balance" else "typed in"
        if w.typed_reason:
            item = case.protocol.step(w.addition.step).item(f"{w.addition.id}_typed_reason")
            how += f": {display(item, w.typed_reason) if item else w.typed_reason}"
        replies = balance_replies(case, w.addition.step)
        sg, tol = w.specific_gravity, w.tolerance
        rows += [
            Row(
                f"{w.addition.title}: before",
                f"{fmt(w.before_g, 3)} g",
                note=_weighed_how(how, w.weighed_by, replies.get(f"{w.addition.id}_before_g")),
            ),
            Row(
                f"{w.addition.title}: after",
                f"{fmt(w.after_g, 3)} g",
                note=_weighed_how(how, w.weighed_by, replies.get(f"{w.addition.id}_after_g")),
            ),
            Row(
                f"{w.addition.title}: volume",
                f"{fmt(w.volume_ml, 2)} mL = ({fmt(w.after_g, 3)} g - {fmt(w.before_g, 3)} g)"
                f" / {fmt(sg.value, 4)} g/mL",
                note=f"planned {fmt(w.planned_ml, 2)} mL, {fmt(w.difference_pct, 1)} %",
                flag=None if w.within else "deviation",
            ),
            Row(
                "Specific gravity used",
                f"{fmt(sg.value, 4)} g/mL",
                note=f"source: {sg.source}",
                flag=None if sg.confirmed else "UNCONFIRMED",
            ),
            Row(
                "Tolerance used",
                f"{fmt(tol.value, 2)} %",
                note=f"source: {tol.source}",
                flag=None if tol.confirmed else "UNCONFIRMED",
            ),
        ]
    if not rows:
        return None
    return Section("gravimetric", "Gravimetric verification", tuple(rows))


def _weighed_how(how: str, weighed_by: str, reply: Mapping[str, str] | None) -> str:
    """How a weight was taken, with the balance's own reply line and serial number when the
    balance gave it (kept in the signed event), so the auditor sees it came from the balance."""
    if reply is None:
        return how + ("; no balance reply kept" if weighed_by == "balance" else "")
    serial = reply.get("serial") or "not given"
    said, at = reply.get("reply", ""), reply.get("read_at", "")
    return f"{how}: reply '{said}', balance serial {serial}, read {at}"


def _record(
    case: Case, spec: RecordSpec, chain_hash: str, tz: tzinfo, added: tuple[Section, ...] = ()
) -> RecordDocument:
    sections = [_section(case, s, tz) for s in spec.sections]
    sections += added
    if spec.kind == "administration" and case.assessments:
        sections.append(
            Section(
                "assessments",
                "Assessments during therapy",
                tuple(
                    Row(
                        _when_text(a["at"], tz),
                        ", ".join(f"{k}={v}" for k, v in a["values"].items()),
                        note=with_id(str(a["by"]["name"]), str(a["by"]["user_id"])),
                    )
                    for a in case.assessments
                ),
            )
        )
    if spec.kind == "compounding":
        weighed = _gravimetric_section(case)
        if weighed is not None:
            sections.append(weighed)
    for extra in (
        _course_section(case, tz),
        _order_notices(case, tz),
        _flags(case),
        _history(case, spec.steps, tz),
    ):
        if extra is not None:
            sections.append(extra)
    sigs = _signatures(case, tz, spec.steps)
    if spec.kind == "administration":
        # Side exits (hold decisions, cancel, waste, discontinue) belong to no step.
        sigs += tuple(
            SignatureManifestation(
                printed_name=e.actor.name,
                user_id=e.actor.user_id,
                role=f"{role_title(case.protocol, e.actor.role)} - {event_title(case.protocol, e)}",
                signed_at_utc=_when(e.at, tz),
                meaning=e.meaning,
                content_hash=e.content_hash(),
            )
            for e in case.events
            if e.step is None and e.actor is not None and e.meaning is not None
        )
    kind: RecordKind = "compounding" if spec.kind == "compounding" else "administration"
    return RecordDocument(
        kind=kind,
        title=f"{kind.capitalize()} record: {case.protocol.drug}",
        record_id=f"{case.case_id}-{spec.kind}",
        case_id=case.case_id,
        drug=case.protocol.drug,
        subject=_subject(case),
        sections=tuple(sections),
        signatures=sigs,
        protocol=_protocol(case),
        chain_hash=chain_hash,
        events=tuple(e.to_json() for e in case.events),
    )


# The small JPEG of a stored photo by its SHA-256, or None when the file is not there.
Thumbnails = Callable[[str], bytes | None]


def compounding_record(
    case: Case, chain_hash: str, tz: tzinfo = UTC, thumbnails: Thumbnails | None = None
) -> RecordDocument | None:
    spec = case.protocol.record("compounding")
    if spec is None:
        return None
    if spec.from_step is not None and spec.from_step not in {e.step for e in case.history}:
        return None
    photos = _photos_section(case, spec.steps, thumbnails)
    return _record(case, spec, chain_hash, tz, () if photos is None else (photos,))


def _photos_section(
    case: Case, steps: Iterable[str], thumbnails: Thumbnails | None
) -> Section | None:
    """The in-process photos of the record's current entries (issue 16.2): each with its
    SHA-256 (the hash signed into the step's event) and a thumbnail when the file is there."""
    wanted = set(steps)
    events = {e.seq: e for e in case.events}
    rows: list[Row] = []
    thumbs: list[Thumbnail] = []
    for entry in sorted(case.current.values(), key=lambda e: e.seq):
        if entry.step not in wanted or entry.seq not in events:
            continue
        step = case.protocol.step(entry.step)
        labels = {p.id: p.label for p in step.photos}
        for ref in photos_of(events[entry.seq].data):
            title = f"{step.title}: {labels.get(ref.id, ref.id)}"
            jpeg = thumbnails(ref.sha256) if thumbnails is not None else None
            note = ref.barcode_note or None
            flag = "barcode differs" if ref.barcode_agrees is False else None
            if jpeg is None:
                note = "; ".join(x for x in (note, "photo file not in the archive") if x)
            else:
                thumbs.append(Thumbnail(title, ref.sha256, jpeg))
            rows.append(Row(title, f"SHA-256 {ref.sha256}", note=note, flag=flag))
    if not rows:
        return None
    return Section("photos", "In-process photos", tuple(rows), thumbnails=tuple(thumbs))


def _double_check_table(case: Case, tz: tzinfo) -> Table | None:
    second = next((s for s in case.protocol.steps if s.blinded_against), None)
    if second is None or second.blinded_against is None:
        return None
    first = case.protocol.step(second.blinded_against)
    a = case.current.get(first.id)
    b = case.current.get(second.id)
    if a is None and b is None:
        return None
    rows = []
    for item in first.items:
        rows.append(
            (
                item.label,
                display(item, a.values.get(item.id), tz) if a else "-",
                display(item, b.values.get(item.id), tz) if b else "-",
            )
        )
    cols = (
        "Item",
        f"First: {with_id(a.signer.name, a.signer.user_id) if a else '-'}",
        f"Second (blinded): {with_id(b.signer.name, b.signer.user_id) if b else '-'}",
    )
    return Table("double_check", "Independent double check", cols, tuple(rows))


def _reason_label(case: Case, exit_name: str, reason: object) -> str:
    """A side exit's reason by its label in the protocol ("Toxicity"), else as stored."""
    side = case.protocol.side_exits.get(exit_name)
    found = next((r for r in side.reasons if r.id == reason), None) if side else None
    return found.label if found else str(reason)


def _rule_text(case: Case, rule_id: str) -> str:
    """A rule by its words, with its id for the auditor."""
    try:
        return f"{case.protocol.rule(rule_id).text} ({rule_id})"
    except KeyError:
        return rule_id


def _hold_rows(case: Case, tz: tzinfo) -> list[Row]:
    rows: list[Row] = []
    for h in case.hold_log:
        kind = str(h["kind"])
        if kind in ("held", "discontinued", "finding_after_dose"):
            for f in (Firing.from_json(x) for x in h.get("firings", [])):
                rows.append(
                    Row(
                        f"{kind} ({_when_text(h['at'], tz)})",
                        f.text,
                        note=f"rule {f.rule_id}; values "
                        + ", ".join(f"{k}={v}" for k, v in f.values.items())
                        + f"; source: {f.source}"
                        + ("" if f.reason == "fired" else "; resume criterion not met"),
                        flag=None if f.confirmed else "UNCONFIRMED",
                    )
                )
        elif kind == "resumed":
            by = h.get("by") or {}
            rows.append(
                Row(
                    f"resumed ({_when_text(h['at'], tz)})",
                    f"{by.get('name', '-')} ({role_title(case.protocol, str(by.get('role')))}): "
                    f"{_reason_label(case, 'resume', h.get('reason'))}",
                    note=str(h.get("note") or "") or None,
                )
            )
        elif kind == "cleared":
            when = _when_text(h["at"], tz)
            met = "; ".join(_rule_text(case, str(r)) for r in h.get("rules", []))
            rows.append(Row(f"resume criteria met ({when})", met))
    return rows


def administration_record(case: Case, chain_hash: str, tz: tzinfo = UTC) -> RecordDocument:
    spec = case.protocol.record("administration")
    assert spec is not None  # the loader requires it (or builds it for an older text)
    return _record(case, spec, chain_hash, tz)


def record_documents(
    case: Case, chain_hash: str, tz: tzinfo = UTC, thumbnails: Thumbnails | None = None
) -> list[RecordDocument]:
    """The case's records, times shown in ``tz`` (the site's zone; the embedded events keep
    UTC ISO times for replay), with the photos' thumbnails when ``thumbnails`` finds them."""
    docs = []
    comp = compounding_record(case, chain_hash, tz, thumbnails)
    if comp is not None:
        docs.append(comp)
    docs.append(administration_record(case, chain_hash, tz))
    return docs


__all__ = ["administration_record", "compounding_record", "format_time", "record_documents"]
