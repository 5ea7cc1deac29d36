"""Turn a replayed case into its two record documents, using only what its events say.

Nothing is re-typed: every row comes from an entry, a flag, a hold or the dose plan that the
case rebuilt from its own events, and the events themselves are embedded for replay. A dose
that never reached compounding gets only an administration record.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from .dosing import fmt
from .events import format_time
from .items import display
from .machine import Case, Entry
from .names import with_id
from .protocol.model import Item, Step
from .records.document import (
    ProtocolRef,
    RecordDocument,
    Row,
    Section,
    SignatureManifestation,
    Table,
)
from .rules import Firing

_COMPOUNDING_STEPS = ("reconstitution", "dilution", "pharmacy_verification")


def _when(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else "-"


def _who(entry: Entry) -> str:
    signer = entry.signer
    return f"{with_id(signer.name, signer.user_id)}, {signer.role}, {_when(entry.at)}"


def _step_rows(
    case: Case,
    step_id: str,
    skip: Iterable[str] = (),
    only: Iterable[str] | None = None,
    signed_by: bool = True,
) -> list[Row]:
    step = case.protocol.step(step_id)
    entry = case.current.get(step_id)
    if entry is None:
        return [Row(step.title, "not signed")]
    keep = set(only) if only is not None else None
    rows = [
        Row(item.label, display(item, entry.values.get(item.id)))
        for item in step.items
        if item.id not in set(skip)
        and item.id in entry.values
        and (keep is None or item.id in keep)
    ]
    if signed_by:
        rows.append(Row("Signed by", _who(entry)))
    return rows


def _signatures(
    case: Case, steps: Iterable[str] | None = None
) -> tuple[SignatureManifestation, ...]:
    wanted = set(steps) if steps is not None else None
    out: list[SignatureManifestation] = []
    for event in case.events:
        if event.actor is None or event.meaning is None:
            continue
        if wanted is not None and event.step not in wanted:
            continue
        what = event.step or event.type
        out.append(
            SignatureManifestation(
                printed_name=event.actor.name,
                user_id=event.actor.user_id,
                role=f"{event.actor.role} - {what}",
                signed_at_utc=_when(event.at),
                meaning=event.meaning,
                content_hash=event.content_hash(),
            )
        )
    return tuple(out)


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


def _course_section(case: Case) -> Section | None:
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
            f"{by.get('name', '-')} ({by.get('role', '-')}), "
            f"{str(start.get('at', '-'))[:16].replace('T', ' ')} UTC, "
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
        tuple(Row(f.code, f.message, note=f"event {f.seq}", flag="review") for f in case.flags),
    )


def _history(case: Case, steps: Iterable[str]) -> Section | None:
    wanted = set(steps)
    old = [e for e in case.history if e.superseded_by is not None and e.step in wanted]
    if not old:
        return None
    rows = []
    for e in old:
        step = case.protocol.step(e.step)
        values = "; ".join(
            f"{_label(step, k)}: {display(step.item(k) or _any_item(step), v)}"
            for k, v in e.values.items()
        )
        rows.append(
            Row(
                f"{step.title} (event {e.seq})",
                values,
                note=f"{_who(e)}; superseded by event {e.superseded_by}",
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
    rows = [
        Row("Dosing weight", f"{fmt(plan.weight_kg)} kg"),
        Row(
            "Dose",
            f"{fmt(plan.weight_kg)} kg x {fmt(plan.dose_iu_per_kg, 0)} IU/kg = "
            f"{fmt(plan.dose_iu, 0)} IU",
            note=f"source: {d.dose_per_kg.source}",
        ),
        Row("Dose in mg", f"{fmt(plan.dose_mg, 4)} mg", note=plan.mg_convention),
        Row(
            "Vials",
            f"{plan.vials} x {fmt(d.vial_content.value, 0)} IU ({fmt(d.vial_mass.value)} mg)",
        ),
        Row(
            "Reconstitution",
            f"{fmt(plan.reconstitution_volume_ml_per_vial)} mL sterile water "
            f"per vial -> {fmt(d.reconstituted_concentration.value, 0)} IU/mL",
        ),
        Row(
            "Reconstituted volume",
            f"{fmt(plan.dose_iu, 0)} IU / "
            f"{fmt(d.reconstituted_concentration.value, 0)} IU/mL = "
            f"{fmt(plan.reconstituted_volume_ml, 2)} mL",
        ),
        Row(
            "D5W volume",
            f"{fmt(plan.diluent_volume_ml, 0)} mL",
            note=plan.band_text() + f" [source: {plan.diluent_band.source}]",
        ),
        Row("Final volume", f"{fmt(plan.final_volume_ml, 2)} mL"),
        Row(
            "Final concentration",
            f"{fmt(plan.final_concentration_mcg_per_ml, 1)} mcg/mL",
            note=f"window {fmt(d.concentration_min.value)}-{fmt(d.concentration_max.value)} mcg/mL",
        ),
        Row(
            "Pump rate",
            f"{fmt(plan.pump_rate_ml_per_h, 1)} mL/h over {fmt(plan.infusion_minutes)} min",
        ),
    ]
    for w in plan.warnings:
        rows.append(Row("Warning", w.message, note=w.code, flag="warning"))
    return Section("calculations", "Dose calculation and its variables", tuple(rows))


def _end_rows(case: Case) -> list[Row]:
    end = case.end or {}
    rows = [Row("State", case.state)]
    if end.get("reason"):
        rows.append(Row("Reason", str(end.get("reason")), note=str(end.get("note") or "") or None))
    if end.get("at"):
        rows.append(Row("At", str(end["at"])))
    return rows


def compounding_record(case: Case, chain_hash: str) -> RecordDocument | None:
    if "reconstitution" not in {e.step for e in case.history}:
        return None
    recon = case.current.get("reconstitution")
    dil = case.current.get("dilution")
    ingredients: list[tuple[str, ...]] = []
    if recon is not None:
        v = recon.values
        step = case.protocol.step("reconstitution")
        why = step.item("vial_typed_reason")
        reason = v.get("vial_typed_reason")
        entry = (
            "scanned"
            if v.get("vial_entry") == "scanned"
            else f"typed in: {display(why, reason) if why and reason else '-'}"
        )
        expiry = step.item("vial_expiry")
        w_expiry = step.item("diluent_expiry")
        ingredients.append(
            (
                f"{case.protocol.brand} ({case.protocol.drug}) vial",
                str(v.get("vial_gtin", "-")),
                str(v.get("vial_lot", "-")),
                display(expiry, v.get("vial_expiry")) if expiry else "-",
                f"{display(_any_item(step), v.get('vial_count'))} vial(s), {entry}",
            )
        )
        ingredients.append(
            (
                "Sterile Water for Injection",
                "-",
                str(v.get("diluent_lot", "-")),
                display(w_expiry, v.get("diluent_expiry")) if w_expiry else "-",
                f"{v.get('diluent_volume_ml_per_vial', '-')} mL per vial",
            )
        )
    if dil is not None:
        v = dil.values
        step = case.protocol.step("dilution")
        d_expiry = step.item("d5w_expiry")
        ingredients.append(
            (
                "5% Dextrose Injection (D5W) bag",
                "-",
                str(v.get("d5w_lot", "-")),
                display(d_expiry, v.get("d5w_expiry")) if d_expiry else "-",
                f"{v.get('d5w_bag_volume_ml', '-')} mL, {v.get('container', '-')}",
            )
        )
    order = case.current.get("order")
    sections = [
        Section(
            "order",
            "Order and dose",
            tuple(
                [
                    Row("Prescription / case", case.case_id),
                    Row(
                        "Drug and strength",
                        f"{case.protocol.brand} ({case.protocol.drug}) "
                        f"{fmt(case.protocol.dosing.vial_content.value, 0)} IU "
                        f"({fmt(case.protocol.dosing.vial_mass.value)} mg) single-dose vial, "
                        "lyophilized powder",
                    ),
                    Row(
                        "Master formulation",
                        f"{case.protocol.name}, protocol {case.protocol.version}",
                    ),
                ]
                + (_step_rows(case, "order") if order else [])
            ),
        ),
        _plan_section(case),
        Section(
            "ingredients",
            "Ingredients, lots and expiries",
            tables=(
                Table(
                    "ingredients",
                    "Ingredients",
                    ("Ingredient", "GTIN / NDC", "Lot", "Expiry", "Amount"),
                    tuple(ingredients),
                ),
            ),
        ),
        Section(
            "reconstitution",
            "Reconstitution",
            tuple(
                _step_rows(
                    case,
                    "reconstitution",
                    skip=("vial_lot", "vial_expiry", "vial_gtin", "diluent_lot", "diluent_expiry"),
                )
            ),
        ),
        Section(
            "dilution",
            "Dilution",
            tuple(_step_rows(case, "dilution", skip=("d5w_lot", "d5w_expiry", "label_applied"))),
        ),
        Section(
            "label",
            "Label and beyond-use time",
            tuple(
                [
                    *_step_rows(case, "dilution", only=("label_applied",), signed_by=False),
                    Row(
                        "Beyond-use time",
                        _when(case.beyond_use_at),
                        note=f"infusion must END by then ({case.protocol.dosing.beyond_use.note})",
                    ),
                ]
            ),
        ),
        Section(
            "qa",
            "Quality checks (visual inspection)",
            tuple(
                _step_rows(
                    case, "pharmacy_verification", only=("visual_inspection",), signed_by=False
                )
            ),
        ),
        Section(
            "verification",
            "Pharmacist verification",
            tuple(_step_rows(case, "pharmacy_verification", skip=("visual_inspection",))),
        ),
        Section("outcome", "Outcome", tuple(_end_rows(case))),
    ]
    for extra in (_course_section(case), _flags(case), _history(case, _COMPOUNDING_STEPS)):
        if extra is not None:
            sections.append(extra)
    return RecordDocument(
        kind="compounding",
        title=f"Compounding record: {case.protocol.drug}",
        record_id=f"{case.case_id}-compounding",
        case_id=case.case_id,
        drug=case.protocol.drug,
        subject=_subject(case),
        sections=tuple(sections),
        signatures=_signatures(case, ("order", *_COMPOUNDING_STEPS)),
        protocol=_protocol(case),
        chain_hash=chain_hash,
        events=tuple(e.to_json() for e in case.events),
    )


def _double_check_table(case: Case) -> Table | None:
    first = case.protocol.step("double_check_first")
    a = case.current.get("double_check_first")
    b = case.current.get("double_check_second")
    if a is None and b is None:
        return None
    rows = []
    for item in first.items:
        rows.append(
            (
                item.label,
                display(item, a.values.get(item.id)) if a else "-",
                display(item, b.values.get(item.id)) if b else "-",
            )
        )
    cols = (
        "Item",
        f"First: {with_id(a.signer.name, a.signer.user_id) if a else '-'}",
        f"Second (blinded): {with_id(b.signer.name, b.signer.user_id) if b else '-'}",
    )
    return Table("double_check", "Independent double check", cols, tuple(rows))


def _hold_rows(case: Case) -> list[Row]:
    rows: list[Row] = []
    for h in case.hold_log:
        kind = str(h["kind"])
        if kind in ("held", "discontinued", "finding_after_dose"):
            for f in (Firing.from_json(x) for x in h.get("firings", [])):
                rows.append(
                    Row(
                        f"{kind} ({h['at']})",
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
                    f"resumed ({h['at']})",
                    f"{by.get('name', '-')} ({by.get('role', '-')}): {h.get('reason')}",
                    note=str(h.get("note") or "") or None,
                )
            )
        elif kind == "cleared":
            rows.append(Row(f"resume criteria met ({h['at']})", ", ".join(h.get("rules", []))))
    return rows


def administration_record(case: Case, chain_hash: str) -> RecordDocument:
    order = case.current.get("order")
    weight_rows = []
    if order is not None:
        step = case.protocol.step("order")
        for item_id in (
            "dosing_weight_kg",
            "weight_source",
            "weight_measured_at",
            "dose_iu_per_kg",
            "dose_deviation_reason",
        ):
            item = step.item(item_id)
            if item is not None and item_id in order.values:
                weight_rows.append(Row(item.label, display(item, order.values.get(item_id))))
    started, stopped = case.given_at, case.stopped_at
    infusion = [Row("Started", _when(started)), Row("Stopped", _when(stopped))]
    if started and stopped:
        minutes = round((stopped - started).total_seconds() / 60)
        planned = case.protocol.dosing.infusion_duration.value
        infusion.append(
            Row(
                "Actual duration",
                f"{minutes} min",
                note=f"protocol: {fmt(planned)} min",
                flag="deviation" if minutes != planned else None,
            )
        )
    dc = _double_check_table(case)
    pre = "pre_infusion"
    sections = [
        Section(
            "order",
            "Order and dosing weight",
            tuple(
                (weight_rows or [Row("Weight", "-")])
                + ([Row("Ordered by", _who(order))] if order else [])
            ),
        ),
        Section("eligibility", "Eligibility on file", tuple(_step_rows(case, "eligibility"))),
        Section("hold_checks", "Pre-dose hold checks", tuple(_step_rows(case, "hold_checks"))),
        Section(
            "identification",
            "Patient identification (two identifiers)",
            tuple(
                _step_rows(
                    case,
                    pre,
                    only=("patient_identifier_mrn", "patient_identifier_dob"),
                    signed_by=False,
                )
            ),
        ),
        Section(
            "double_check",
            "Independent double check (blinded)",
            tables=(dc,) if dc else (),
            rows=tuple(Row("Difference", d, flag="mismatch") for d in case.differences),
        ),
        Section(
            "bag",
            "Bag checks (temperature, beyond-use time, no in-line filter)",
            tuple(
                [
                    *_step_rows(
                        case,
                        pre,
                        only=("bag_at_room_temperature", "no_in_line_filter", "dedicated_line"),
                    ),
                    Row(
                        "Beyond-use time",
                        _when(case.beyond_use_at),
                        note="the infusion must end by then",
                    ),
                ]
            ),
        ),
        Section(
            "infusion",
            "Infusion (start, stop, pump rate)",
            tuple(
                _step_rows(case, pre, only=("pump_rate_set_ml_per_h",), signed_by=False) + infusion
            ),
        ),
        Section("observation", "Post-infusion observation", tuple(_step_rows(case, "observation"))),
        Section(
            "exits",
            "Holds, resumptions, discontinuation, cancellation",
            tuple((_hold_rows(case) or [Row("Holds", "none")]) + _end_rows(case)),
        ),
        _plan_section(case),
    ]
    if case.assessments:
        sections.append(
            Section(
                "assessments",
                "Assessments during therapy",
                tuple(
                    Row(
                        f"{a['at']}",
                        ", ".join(f"{k}={v}" for k, v in a["values"].items()),
                        note=with_id(str(a["by"]["name"]), str(a["by"]["user_id"])),
                    )
                    for a in case.assessments
                ),
            )
        )
    admin_steps = [s.id for s in case.walk_steps() if s.id not in _COMPOUNDING_STEPS]
    for extra in (_course_section(case), _flags(case), _history(case, admin_steps)):
        if extra is not None:
            sections.append(extra)
    exits = [e for e in case.events if e.step is None and e.meaning is not None]
    sigs = _signatures(case, admin_steps) + tuple(
        SignatureManifestation(
            printed_name=e.actor.name,
            user_id=e.actor.user_id,
            role=f"{e.actor.role} - {e.type}",
            signed_at_utc=_when(e.at),
            meaning=e.meaning,
            content_hash=e.content_hash(),
        )
        for e in exits
        if e.actor is not None and e.meaning is not None
    )
    return RecordDocument(
        kind="administration",
        title=f"Administration record: {case.protocol.drug}",
        record_id=f"{case.case_id}-administration",
        case_id=case.case_id,
        drug=case.protocol.drug,
        subject=_subject(case),
        sections=tuple(sections),
        signatures=sigs,
        protocol=_protocol(case),
        chain_hash=chain_hash,
        events=tuple(e.to_json() for e in case.events),
    )


def record_documents(case: Case, chain_hash: str) -> list[RecordDocument]:
    docs = []
    comp = compounding_record(case, chain_hash)
    if comp is not None:
        docs.append(comp)
    docs.append(administration_record(case, chain_hash))
    return docs


__all__ = ["administration_record", "compounding_record", "format_time", "record_documents"]
