"""Load and completely validate a protocol file before any machine is built from it.

transitions only notices a bad state name or callback when a trigger fires, at the bedside.
So everything is checked here first: types, required and unknown keys, references between
steps, roles, items, rules and sources, reachability and dead ends, and the numbers. Every
problem found is reported as ``FILE:LINE: what is wrong and what is allowed``, all at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from workflow.core.errors import ProtocolError
from workflow.core.events import MEANINGS

from . import _course, _display, _photos
from ._fields import Issues, MapReader, to_decimal
from ._yaml import YList, is_float_text, load_located
from .model import (
    EXPECT_NAMESPACES,
    FINAL_STATES,
    ITEM_TYPES,
    OPS,
    SIDE_EXITS,
    Condition,
    Dosing,
    Eligibility,
    EligibilityTest,
    Forbidden,
    Item,
    ItemType,
    Op,
    Option,
    PhotoSpec,
    Protocol,
    Quantity,
    Role,
    Rule,
    RuleAction,
    ScanSpec,
    Schedule,
    SideExit,
    Source,
    Step,
    VolumeBand,
)
from .words import legacy_words

_LABELS = ("current", "old", "none")


def load_protocol(path: str | Path) -> Protocol:
    """Read, validate and freeze a protocol file; raise ProtocolError listing every problem."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        from workflow.core.errors import ProtocolIssue

        raise ProtocolError(
            [ProtocolIssue(str(p), 0, f"cannot read the file: {exc.strerror or exc}")]
        ) from exc
    return parse_protocol(data, str(p))


def parse_protocol(data: bytes, filename: str) -> Protocol:
    issues = Issues(filename)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        from workflow.core.errors import ProtocolIssue

        line = data[: exc.start].count(b"\n") + 1
        raise ProtocolError([ProtocolIssue(filename, line, "the file is not UTF-8 text")]) from exc
    root, yaml_issues = load_located(text, filename)
    issues.items.extend(yaml_issues)
    if root is None or issues.items:
        raise ProtocolError(issues.items or [])
    protocol = _Validator(issues, root, hashlib.sha256(data).hexdigest(), filename).run()
    if issues.items or protocol is None:
        raise ProtocolError(sorted(issues.items, key=lambda i: i.line))
    return protocol


class _Validator:
    def __init__(self, issues: Issues, root: Any, content_hash: str, filename: str) -> None:
        self.issues = issues
        self.root = root
        self.content_hash = content_hash
        self.filename = filename
        self.sources: dict[str, Source] = {}
        self.roles: dict[str, Role] = {}
        self.quantity_refs: dict[str, Quantity] = {}
        # (line, source id) pairs checked once all sources are known.
        self.source_refs: list[tuple[int, str, str]] = []
        self.step_nodes: dict[str, MapReader] = {}
        self.scans_declared = False  # any step with ``scans`` (else inferred, for old texts)

    # -- entry point -----------------------------------------------------------------------
    def run(self) -> Protocol | None:
        top = MapReader(self.issues, self.root, "protocol file", 1)
        if not top.ok:
            return None
        head = top.sub("protocol")
        meta = self._meta(head) if head else None
        sources_node = top.sub("sources")
        if sources_node:
            self._sources(sources_node)
        roles_node = top.sub("roles")
        if roles_node:
            self._roles(roles_node)
        dosing_node = top.sub("dosing")
        dosing = self._dosing(dosing_node) if dosing_node else None
        schedule_node = top.sub("schedule")
        schedule = self._schedule(schedule_node) if schedule_node else None
        elig_node = top.sub("eligibility")
        resume_step = top.ident("resume_step")
        initial = top.ident("initial")
        steps_list = top.seq("steps")
        steps = self._steps(steps_list) if steps_list is not None else ()
        finals = top.ident_list("final_states", required=True)
        if top.has("final_states") and tuple(sorted(finals)) != tuple(sorted(FINAL_STATES)):
            self.issues.add(
                top.line_of("final_states"),
                f"final_states must be exactly {', '.join(FINAL_STATES)} (the side "
                f"exits the engine implements), got {', '.join(finals) or 'none'}",
            )
        exits_node = top.sub("side_exits")
        side_exits = self._side_exits(exits_node) if exits_node else None
        rules_list = top.seq("rules")
        rules = self._rules(rules_list, steps) if rules_list is not None else ()
        eligibility = self._eligibility(elig_node, steps) if elig_node else None
        acks_list = top.seq("acknowledgements", required=False)
        acks = (
            _course.acknowledgements(
                self, acks_list, steps, initial, eligibility.step if eligibility else None
            )
            if acks_list is not None
            else ()
        )
        start_node = top.sub("course_start", required=False)
        start = _course.course_start(self, start_node, rules) if start_node else None
        words_node = top.sub("words", required=False)
        words = _display.words(self, words_node) if words_node else None
        if not self.scans_declared:
            steps = tuple(replace(s, scans=_display.legacy_scans(s)) for s in steps)
        self._check_scan_kinds(steps)
        records_node = top.sub("records", required=False)
        records = _display.records(self, records_node, steps) if records_node else None
        top.done()

        self._check_sources()
        step_ids = [s.id for s in steps]
        if initial and steps and initial not in step_ids:
            self.issues.add(
                top.line_of("initial"),
                f"initial step '{initial}' does not exist (steps: {', '.join(step_ids)})",
            )
        if resume_step and steps and resume_step not in step_ids:
            self.issues.add(
                top.line_of("resume_step"),
                f"resume_step '{resume_step}' does not exist (steps: {', '.join(step_ids)})",
            )
        if initial and steps_list is not None:
            self._graph(steps, initial, steps_list)
        if (
            meta is None
            or dosing is None
            or schedule is None
            or eligibility is None
            or initial is None
            or resume_step is None
            or side_exits is None
            or self.issues.items
        ):
            return None
        return Protocol(
            id=meta[0],
            name=meta[1],
            version=meta[2],
            drug=meta[3],
            brand=meta[4],
            content_hash=self.content_hash,
            path=self.filename,
            sources=self.sources,
            roles=self.roles,
            steps=steps,
            initial=initial,
            rules=rules,
            dosing=dosing,
            schedule=schedule,
            eligibility=eligibility,
            resume_step=resume_step,
            final_states=FINAL_STATES,
            side_exits=side_exits,
            acknowledgements=acks,
            course_start=start,
            words=words if words is not None else legacy_words(dosing, steps),
            records=records if records is not None else _display.legacy_records(steps, initial),
        )

    def _check_scan_kinds(self, steps: tuple[Step, ...]) -> None:
        """A product kind is identified on one step only: a scan names its kind, not its step."""
        first: dict[str, str] = {}
        for step in steps:
            for scan in step.scans:
                if scan.kind in first:
                    self.issues.add(
                        self.step_nodes[step.id].line_of("scans"),
                        f"step '{step.id}'.scans: kind '{scan.kind}' is already scanned on "
                        f"step '{first[scan.kind]}'",
                    )
                first.setdefault(scan.kind, step.id)

    def _side_exits(self, r: MapReader) -> dict[str, SideExit] | None:
        out: dict[str, SideExit] = {}
        for name in SIDE_EXITS:
            sub = r.sub(name)
            if sub is None:
                continue
            roles = sub.ident_list("roles", required=True)
            meaning = sub.ident("meaning")
            reasons: list[Option] = []
            seq = sub.seq("reasons")
            for i, node in enumerate(seq or []):
                o = MapReader(
                    self.issues,
                    node,
                    f"side_exits.{name}.reasons[{i}]",
                    seq.line_of(i) if seq else sub.line,
                )
                oid, label = o.ident("id"), o.text("label")
                o.done()
                if oid and label:
                    reasons.append(Option(oid, label))
            sub.done()
            for role in roles:
                if role not in self.roles:
                    self.issues.add(
                        sub.line_of("roles"),
                        f"side_exits.{name}.roles: role '{role}' is not defined",
                    )
            if meaning is not None and meaning not in MEANINGS:
                self.issues.add(
                    sub.line_of("meaning"),
                    f"side_exits.{name}.meaning '{meaning}' "
                    "is not a Part 11 signature meaning "
                    f"(allowed: {', '.join(sorted(MEANINGS))})",
                )
            if seq is not None and not reasons:
                self.issues.add(
                    sub.line_of("reasons"), f"side_exits.{name}.reasons needs at least one reason"
                )
            if roles and meaning and reasons:
                out[name] = SideExit(name, roles, meaning, tuple(reasons))
        r.done()
        return out if len(out) == len(SIDE_EXITS) else None

    # -- sections ----------------------------------------------------------------------------
    def _meta(self, r: MapReader) -> tuple[str, str, str, str, str] | None:
        pid = r.text("id")
        name = r.text("name")
        version = r.text("version")
        drug = r.text("drug")
        brand = r.text("brand")
        r.done()
        if None in (pid, name, version, drug, brand):
            return None
        return cast(tuple[str, str, str, str, str], (pid, name, version, drug, brand))

    def _sources(self, r: MapReader) -> None:
        for key in list(r.node):
            sub = r.sub(key)
            if sub is None:
                continue
            title = sub.text("title")
            citation = sub.text("citation")
            label = sub.text("label")
            url = sub.text("url", required=False)
            sub.done()
            if label is not None and label not in _LABELS:
                self.issues.add(
                    sub.line_of("label"),
                    f"sources.{key}.label '{label}' is not allowed (allowed: {', '.join(_LABELS)})",
                )
                continue
            if title and citation and label:
                self.sources[key] = Source(key, title, citation, label, url)

    def _roles(self, r: MapReader) -> None:
        for key in list(r.node):
            sub = r.sub(key)
            if sub is None:
                continue
            title = sub.text("title")
            sub.done()
            if title:
                self.roles[key] = Role(key, title)

    def _cite(self, line: int, source: str | None, where: str) -> None:
        if source is not None:
            self.source_refs.append((line, source, where))

    def _check_sources(self) -> None:
        for line, source, where in self.source_refs:
            if source not in self.sources:
                self.issues.add(
                    line,
                    f"{where}: source '{source}' is not defined under "
                    f"sources (defined: {', '.join(sorted(self.sources))})",
                )

    def _quantity(
        self, parent: MapReader, key: str, unit: str, path: str, positive: bool = True
    ) -> Quantity | None:
        r = parent.sub(key)
        if r is None:
            return None
        value = r.number("value")
        got_unit = r.text("unit")
        source = r.text("source")
        confirmed = r.flag("confirmed", default=True)
        note = r.text("note", required=False, default="") or ""
        r.done()
        self._cite(r.line_of("source"), source, path)
        if got_unit is not None and got_unit != unit:
            self.issues.add(
                r.line_of("unit"),
                f"{path}.unit must be '{unit}' (Bedside computes "
                f"in one unit convention), got '{got_unit}'",
            )
            return None
        if value is not None and positive and value <= 0:
            self.issues.add(r.line_of("value"), f"{path}.value must be greater than 0, got {value}")
            return None
        if value is None or source is None:
            return None
        q = Quantity(value, unit, source, confirmed, note)
        self.quantity_refs[path] = q
        return q

    def _dosing(self, r: MapReader) -> Dosing | None:
        q = self._quantity
        dose = q(r, "dose_per_kg", "IU/kg", "dosing.dose_per_kg")
        vial = q(r, "vial_content", "IU", "dosing.vial_content")
        vial_mg = q(r, "vial_mass", "mg", "dosing.vial_mass")
        recon = r.sub("reconstitution")
        recon_vals: tuple[Any, ...] = (None,) * 4
        if recon:
            recon_vals = (
                recon.ident("diluent"),
                q(recon, "volume", "mL", "dosing.reconstitution.volume"),
                q(recon, "concentration", "IU/mL", "dosing.reconstitution.concentration"),
                q(recon, "mass_concentration", "mg/mL", "dosing.reconstitution.mass_concentration"),
            )
            recon.done()
        convention = r.text("mg_convention")
        final_diluent = r.ident("final_diluent")
        window = r.sub("concentration_window")
        cmin = cmax = None
        if window:
            cmin = q(window, "min", "mcg/mL", "dosing.concentration_window.min")
            cmax = q(window, "max", "mcg/mL", "dosing.concentration_window.max")
            window.done()
            if cmin and cmax and cmin.value >= cmax.value:
                self.issues.add(
                    window.line,
                    "dosing.concentration_window: min must be below max "
                    f"(got {cmin.value} to {cmax.value})",
                )
        bands = self._bands(r)
        infusion = q(r, "infusion_duration", "min", "dosing.infusion_duration")
        filt = r.sub("in_line_filter")
        filter_allowed: bool | None = None
        if filt:
            filter_allowed = filt.flag("allowed", required=True)
            self._cite(filt.line_of("source"), filt.text("source"), "dosing.in_line_filter")
            filt.text("note", required=False)
            filt.done()
        bud = q(r, "beyond_use", "h", "dosing.beyond_use")
        weight = r.sub("weight")
        wvals: tuple[Quantity | None, ...] = (None,) * 5
        if weight:
            wvals = tuple(
                q(weight, k, u, f"dosing.weight.{k}")
                for k, u in (
                    ("accepted_min", "kg"),
                    ("accepted_max", "kg"),
                    ("adult_min", "kg"),
                    ("adult_max", "kg"),
                    ("max_age", "h"),
                )
            )
            weight.done()
            amin, amax, dmin, dmax, _ = wvals
            if (
                amin
                and amax
                and dmin
                and dmax
                and not (amin.value <= dmin.value < dmax.value <= amax.value)
            ):
                self.issues.add(
                    weight.line,
                    "dosing.weight: need accepted_min <= adult_min < adult_max <= accepted_max",
                )
        r.done()
        parts = (
            dose,
            vial,
            vial_mg,
            *recon_vals,
            convention,
            final_diluent,
            cmin,
            cmax,
            infusion,
            bud,
            *wvals,
        )
        if any(p is None for p in parts) or filter_allowed is None or bands is None:
            return None
        return Dosing(
            dose_per_kg=cast(Quantity, dose),
            vial_content=cast(Quantity, vial),
            vial_mass=cast(Quantity, vial_mg),
            reconstitution_diluent=recon_vals[0],
            reconstitution_volume=recon_vals[1],
            reconstituted_concentration=recon_vals[2],
            reconstituted_mass_concentration=recon_vals[3],
            final_diluent=cast(str, final_diluent),
            concentration_min=cast(Quantity, cmin),
            concentration_max=cast(Quantity, cmax),
            infusion_duration=cast(Quantity, infusion),
            beyond_use=cast(Quantity, bud),
            volume_bands=bands,
            weight_accepted_min=cast(Quantity, wvals[0]),
            weight_accepted_max=cast(Quantity, wvals[1]),
            weight_adult_min=cast(Quantity, wvals[2]),
            weight_adult_max=cast(Quantity, wvals[3]),
            weight_max_age=cast(Quantity, wvals[4]),
            in_line_filter=filter_allowed,
            mg_convention=cast(str, convention),
        )

    def _bands(self, r: MapReader) -> tuple[VolumeBand, ...] | None:
        seq = r.seq("dilution_bands")
        if seq is None:
            return None
        bands: list[VolumeBand] = []
        ok = True
        for i, node in enumerate(seq):
            where = f"dosing.dilution_bands[{i}]"
            b = MapReader(self.issues, node, where, seq.line_of(i))
            if not b.ok:
                ok = False
                continue
            raw_max = b.raw("max_dose_iu", required=True)
            max_iu = (
                None
                if raw_max is None
                else to_decimal(self.issues, raw_max, b.line_of("max_dose_iu"), where)
            )
            vol = b.number("diluent_volume_ml")
            source = b.text("source")
            confirmed = b.flag("confirmed", default=True)
            note = b.text("note", required=False, default="") or ""
            b.done()
            self._cite(b.line_of("source"), source, where)
            if vol is not None and vol <= 0:
                self.issues.add(
                    b.line_of("diluent_volume_ml"),
                    f"{where}.diluent_volume_ml must be greater than 0, got {vol}",
                )
                ok = False
            if raw_max is not None and max_iu is None:
                ok = False
            if vol is None or source is None:
                ok = False
                continue
            bands.append(VolumeBand(max_iu, vol, source, confirmed, note))
        if not ok:
            return None
        if not bands:
            self.issues.add(seq.line, "dosing.dilution_bands must list at least one band")
            return None
        for i, band in enumerate(bands):
            last = i == len(bands) - 1
            if band.max_dose_iu is None and not last:
                self.issues.add(
                    seq.line_of(i),
                    f"dosing.dilution_bands[{i}]: only the last band may have max_dose_iu: null",
                )
                return None
            if last and band.max_dose_iu is not None:
                self.issues.add(
                    seq.line_of(i),
                    "dosing.dilution_bands: the last band must have "
                    "max_dose_iu: null so every dose has a volume",
                )
                return None
            if i and band.max_dose_iu is not None:
                prev = bands[i - 1].max_dose_iu
                if prev is not None and band.max_dose_iu <= prev:
                    self.issues.add(
                        seq.line_of(i),
                        f"dosing.dilution_bands[{i}].max_dose_iu must "
                        f"be above the previous band's ({prev})",
                    )
                    return None
        return tuple(bands)

    def _schedule(self, r: MapReader) -> Schedule | None:
        q = self._quantity
        parts = (
            q(r, "min_interval", "h", "schedule.min_interval"),
            q(r, "max_doses_per_cycle", "doses", "schedule.max_doses_per_cycle"),
            q(r, "max_doses_per_course", "doses", "schedule.max_doses_per_course"),
            q(r, "max_cycles_per_course", "cycles", "schedule.max_cycles_per_course"),
            q(r, "cycle_days", "d", "schedule.cycle_days"),
            q(r, "rest_days", "d", "schedule.rest_days"),
        )
        r.done()
        for name, part in zip(
            ("max_doses_per_cycle", "max_doses_per_course", "max_cycles_per_course"),
            parts[1:4],
            strict=True,
        ):
            if part is not None and part.value != part.value.to_integral_value():
                self.issues.add(
                    r.line_of(name), f"schedule.{name} must be a whole number, got {part.value}"
                )
                return None
        if any(p is None for p in parts):
            return None
        return Schedule(*cast(tuple[Quantity, ...], parts))

    def _eligibility(self, r: MapReader, steps: tuple[Step, ...]) -> Eligibility | None:
        step_id = r.ident("step")
        max_age = self._quantity(r, "max_age", "d", "eligibility.max_age")
        seq = r.seq("tests")
        r.done()
        by_id = {s.id: s for s in steps}
        step = by_id.get(step_id) if step_id else None
        if step_id and steps and step is None:
            self.issues.add(r.line_of("step"), f"eligibility.step '{step_id}' does not exist")
        tests: list[EligibilityTest] = []
        for i, node in enumerate(seq or []):
            where = f"eligibility.tests[{i}]"
            t = MapReader(self.issues, node, where, seq.line_of(i) if seq else r.line)
            tid, title = t.ident("id"), t.text("title")
            result_item, date_item = t.ident("result_item"), t.ident("date_item")
            source = t.text("source")
            t.done()
            self._cite(t.line_of("source"), source, where)
            if step is not None:
                res = step.item(result_item) if result_item else None
                if result_item and (
                    res is None or res.type != "choice" or "normal" not in res.option_ids()
                ):
                    self.issues.add(
                        t.line_of("result_item"),
                        f"{where}.result_item '{result_item}' must be a choice item "
                        f"of step '{step.id}' with a 'normal' option",
                    )
                dat = step.item(date_item) if date_item else None
                if date_item and (dat is None or dat.type != "date"):
                    self.issues.add(
                        t.line_of("date_item"),
                        f"{where}.date_item '{date_item}' must be a date item of step '{step.id}'",
                    )
            if tid and title and result_item and date_item and source:
                tests.append(EligibilityTest(tid, title, result_item, date_item, source))
        if step_id is None or max_age is None or not tests:
            if seq is not None and not tests and not self.issues.items:
                self.issues.add(r.line, "eligibility.tests must list at least one test")
            return None
        return Eligibility(step_id, tuple(tests), max_age)

    # -- steps and items -----------------------------------------------------------------------
    def _steps(self, seq: YList) -> tuple[Step, ...]:
        steps: list[Step] = []
        seen: dict[str, int] = {}
        for i, node in enumerate(seq):
            line = seq.line_of(i)
            r = MapReader(self.issues, node, f"steps[{i}]", line)
            if not r.ok:
                continue
            sid = r.ident("id")
            if sid is not None:
                r.where = f"step '{sid}'"
                if sid in seen:
                    self.issues.add(
                        r.line_of("id"), f"duplicate step id '{sid}' (first at line {seen[sid]})"
                    )
                    continue
                seen[sid] = r.line_of("id")
            step = self._step(r, sid)
            if step is not None:
                steps.append(step)
                self.step_nodes[step.id] = r
        # Cross-step references, checked once every step is known.
        index = {s.id: n for n, s in enumerate(steps)}
        for n, step in enumerate(steps):
            node = self.step_nodes[step.id]
            line = node.line_of("verifies")
            for ref in step.verifies:
                if ref not in index:
                    self.issues.add(
                        line,
                        f"step '{step.id}'.verifies names step '{ref}', which "
                        f"does not exist (steps: {', '.join(index)})",
                    )
                elif index[ref] >= n:
                    self.issues.add(
                        line,
                        f"step '{step.id}' verifies '{ref}', which comes after "
                        "it; a step can only verify earlier steps",
                    )
            line = node.line_of("blinded_against")
            if step.blinded_against is not None:
                other = (
                    steps[index[step.blinded_against]] if step.blinded_against in index else None
                )
                if other is None:
                    self.issues.add(
                        line,
                        f"step '{step.id}'.blinded_against names step "
                        f"'{step.blinded_against}', which does not exist",
                    )
                else:
                    for item_id in step.compare:
                        if other.item(item_id) is None:
                            self.issues.add(
                                line,
                                f"step '{step.id}' compares item '{item_id}', "
                                f"which step '{other.id}' does not have",
                            )
                    if step.blinded_against not in step.verifies:
                        self.issues.add(
                            line,
                            f"step '{step.id}' is blinded against "
                            f"'{step.blinded_against}' and must also list it "
                            "under verifies (the checkers must differ)",
                        )
        return tuple(steps)

    def _step(self, r: MapReader, sid: str | None) -> Step | None:
        title = r.text("title")
        phase = r.ident("phase")
        roles = r.ident_list("roles", required=True)
        meaning = r.ident("meaning")
        nxt = r.ident("next")
        instructions_list = r.seq("instructions", required=False)
        instructions: list[str] = []
        for i, v in enumerate(instructions_list or []):
            if not isinstance(v, str) or is_float_text(v):
                self.issues.add(
                    instructions_list.line_of(i) if instructions_list else r.line,
                    f"{r.where}.instructions[{i}] must be text",
                )
            else:
                instructions.append(v)
        verifies = r.ident_list("verifies")
        blinded = r.ident("blinded_against", required=False)
        compare = r.ident_list("compare")
        flags = {
            k: r.flag(k)
            for k in (
                "evaluates_rules",
                "within_beyond_use",
                "starts_infusion",
                "stops_infusion",
                "wastable",
                "unprimed",
            )
        }
        sets_bud = r.ident("sets_beyond_use", required=False)
        items_list = r.seq("items")
        items = self._items(items_list, r.where) if items_list is not None else None
        scans_list = r.seq("scans", required=False)
        scans: tuple[ScanSpec, ...] = ()
        if scans_list is not None:
            self.scans_declared = True
            if items is not None:
                scans = _display.scans(self, scans_list, r.where, items)
        photos_list = r.seq("photos", required=False)
        photos: tuple[PhotoSpec, ...] = ()
        if photos_list is not None:
            photos = _photos.photos(self.issues, photos_list, r.where, scans, items or ())
        r.done()
        for role in roles:
            if role not in self.roles:
                self.issues.add(
                    r.line_of("roles"),
                    f"{r.where}.roles: role '{role}' is not "
                    f"defined (roles: {', '.join(self.roles)})",
                )
        if not roles and r.has("roles"):
            self.issues.add(r.line_of("roles"), f"{r.where}.roles must name at least one role")
        if meaning is not None and meaning not in MEANINGS:
            self.issues.add(
                r.line_of("meaning"),
                f"{r.where}.meaning '{meaning}' is not a "
                f"Part 11 signature meaning (allowed: "
                f"{', '.join(sorted(MEANINGS))})",
            )
        if items is not None:
            ids = {it.id for it in items}
            for cid in compare:
                if cid not in ids:
                    self.issues.add(
                        r.line_of("compare"),
                        f"{r.where}.compare names item '{cid}', which this step lacks",
                    )
            if sets_bud is not None:
                it = next((x for x in items if x.id == sets_bud), None)
                if it is None or it.type != "datetime":
                    self.issues.add(
                        r.line_of("sets_beyond_use"),
                        f"{r.where}.sets_beyond_use must name a datetime item of "
                        f"this step, got '{sets_bud}'",
                    )
        if blinded is not None and not compare:
            self.issues.add(
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
            instructions=tuple(instructions),
            verifies=verifies,
            blinded_against=blinded,
            compare=compare,
            sets_beyond_use=sets_bud,
            scans=scans,
            photos=photos,
            **flags,
        )

    def _items(self, seq: YList, where: str) -> tuple[Item, ...] | None:
        items: list[Item] = []
        seen: set[str] = set()
        ok = True
        for i, node in enumerate(seq):
            r = MapReader(self.issues, node, f"{where}.items[{i}]", seq.line_of(i))
            if not r.ok:
                ok = False
                continue
            item = self._item(r)
            if item is None:
                ok = False
                continue
            if item.id in seen:
                self.issues.add(r.line_of("id"), f"{where}: duplicate item id '{item.id}'")
                ok = False
                continue
            seen.add(item.id)
            items.append(item)
        # required_if may only look at items of the same step.
        for item in items:
            if item.required_if is not None:
                for ref in item.required_if.items():
                    if ref not in seen:
                        self.issues.add(
                            seq.line,
                            f"{where}: item '{item.id}'.required_if names "
                            f"item '{ref}', which this step lacks",
                        )
                        ok = False
        return tuple(items) if ok else None

    def _item(self, r: MapReader) -> Item | None:
        iid = r.ident("id")
        if iid:
            r.where = f"{r.where} ('{iid}')"
        label = r.text("label")
        itype = r.text("type")
        required = r.flag("required", required=True)
        unit = r.text("unit", required=False)
        bounds = {k: self._bound(r, k) for k in ("min", "max")}
        options: list[Option] = []
        opt_list = r.seq("options", required=False)
        for i, node in enumerate(opt_list or []):
            o = MapReader(
                self.issues,
                node,
                f"{r.where}.options[{i}]",
                opt_list.line_of(i) if opt_list else r.line,
            )
            oid, olabel = o.ident("id"), o.text("label")
            o.done()
            if oid and olabel:
                options.append(Option(oid, olabel))
        forbidden: list[Forbidden] = []
        forb_list = r.seq("forbidden", required=False)
        for i, node in enumerate(forb_list or []):
            f = MapReader(
                self.issues,
                node,
                f"{r.where}.forbidden[{i}]",
                forb_list.line_of(i) if forb_list else r.line,
            )
            value, reason, source = f.ident("value"), f.text("reason"), f.text("source")
            f.done()
            self._cite(f.line_of("source"), source, f.where)
            if value and reason and source:
                forbidden.append(Forbidden(value, reason, source))
        must_be_raw = r.raw("must_be")
        must_be: bool | None = None
        if must_be_raw is not None:
            if not isinstance(must_be_raw, bool):
                self.issues.add(r.line_of("must_be"), f"{r.where}.must_be must be true or false")
            else:
                must_be = must_be_raw
        expect = r.text("expect", required=False)
        req_if_node = r.raw("required_if")
        max_length = r.whole("max_length", required=False)
        not_future = r.flag("not_future")
        decimals = r.whole("decimals", required=False)
        help_text = r.text("help", required=False, default="") or ""
        item_source = r.text("source", required=False)
        r.done()
        self._cite(r.line_of("source"), item_source, r.where)
        if itype is not None and itype not in ITEM_TYPES:
            self.issues.add(
                r.line_of("type"),
                f"{r.where}.type '{itype}' is not allowed (allowed: {', '.join(ITEM_TYPES)})",
            )
            return None
        if iid is None or label is None or itype is None:
            return None
        t = cast(ItemType, itype)
        line = r.line
        numeric = t in ("number", "integer")
        if not numeric and (
            unit is not None or bounds["min"] is not None or bounds["max"] is not None
        ):
            self.issues.add(
                line, f"{r.where}: unit, min and max are only for number and integer items, not {t}"
            )
        mn, mx = bounds["min"], bounds["max"]
        if mn is not None and mx is not None and mn > mx:
            self.issues.add(line, f"{r.where}: min ({mn}) is above max ({mx})")
        if t == "choice" and not options:
            self.issues.add(line, f"{r.where}: a choice item needs at least one option")
        if t != "choice" and (options or forbidden):
            self.issues.add(line, f"{r.where}: options and forbidden are only for choice items")
        for fb in forbidden:
            if fb.value in {o.id for o in options}:
                self.issues.add(line, f"{r.where}: '{fb.value}' is both an option and forbidden")
        if must_be is not None and t != "boolean":
            self.issues.add(line, f"{r.where}: must_be is only for boolean items")
        if max_length is not None and (t != "text" or max_length <= 0):
            self.issues.add(line, f"{r.where}: max_length must be a positive number on a text item")
        if not_future and t not in ("date", "datetime"):
            self.issues.add(line, f"{r.where}: not_future is only for date and datetime items")
        if decimals is not None and (t != "number" or decimals < 0 or decimals > 6):
            self.issues.add(line, f"{r.where}: decimals (0 to 6) is only for number items")
        if expect is not None:
            self._check_expect(r, expect, t)
            if t == "number" and decimals is None:
                self.issues.add(
                    line,
                    f"{r.where}: a number checked against {expect} must say "
                    "how many decimals an entry needs (decimals: 0 to 6)",
                )
        required_if = None
        if req_if_node is not None:
            required_if = self._condition(
                req_if_node, r.line_of("required_if"), f"{r.where}.required_if", None
            )
        return Item(
            id=iid,
            label=label,
            type=t,
            required=required,
            unit=unit,
            min=mn,
            max=mx,
            options=tuple(options),
            forbidden=tuple(forbidden),
            must_be=must_be,
            expect=expect,
            required_if=required_if,
            max_length=max_length,
            not_future=not_future,
            decimals=decimals,
            help=help_text,
            source=item_source,
        )

    def _bound(self, r: MapReader, key: str) -> Decimal | None:
        value = r.raw(key)
        if value is None:
            return None
        if isinstance(value, str) and not is_float_text(value):
            # A reference to a protocol quantity, e.g. dosing.weight.accepted_min, so a bound
            # is written once with its source.
            q = self.quantity_refs.get(value)
            if q is None:
                self.issues.add(
                    r.line_of(key),
                    f"{r.where}.{key} '{value}' is neither a number "
                    f"nor a known quantity (known: "
                    f"{', '.join(sorted(self.quantity_refs))})",
                )
                return None
            return q.value
        return to_decimal(self.issues, value, r.line_of(key), f"{r.where}.{key}")

    def _check_expect(self, r: MapReader, expect: str, t: ItemType) -> None:
        ns, _, field = expect.partition(".")
        fields = EXPECT_NAMESPACES.get(ns)
        if fields is None or field not in fields:
            allowed = ", ".join(f"{n}.{f}" for n, fs in EXPECT_NAMESPACES.items() for f in fs)
            self.issues.add(
                r.line_of("expect"),
                f"{r.where}.expect '{expect}' is not a known value (allowed: {allowed})",
            )
            return
        want = fields[field]
        compatible = (
            want == t
            or (want == "integer" and t == "number")
            or (want == "number" and t in ("number", "integer"))
        )
        if not compatible:
            self.issues.add(
                r.line_of("expect"),
                f"{r.where}: a {t} item cannot be checked against {expect} (a {want})",
            )

    # -- rules -----------------------------------------------------------------------------------
    def _rules(self, seq: YList, steps: tuple[Step, ...]) -> tuple[Rule, ...]:
        rule_items: dict[str, Item] = {}
        for s in steps:
            if s.evaluates_rules:
                for it in s.items:
                    rule_items.setdefault(it.id, it)
        out: list[Rule] = []
        seen: set[str] = set()
        for i, node in enumerate(seq):
            r = MapReader(self.issues, node, f"rules[{i}]", seq.line_of(i))
            if not r.ok:
                continue
            rid = r.ident("id")
            if rid:
                r.where = f"rule '{rid}'"
                if rid in seen:
                    self.issues.add(r.line_of("id"), f"duplicate rule id '{rid}'")
                    continue
                seen.add(rid)
            action = r.text("action")
            text = r.text("text")
            when_node = r.raw("when", required=True)
            resume_node = r.raw("resume_when")
            resume_confirmed = r.flag("resume_confirmed", default=True)
            source = r.text("source")
            confirmed = r.flag("confirmed", default=True)
            note = r.text("note", required=False, default="") or ""
            r.done()
            self._cite(r.line_of("source"), source, r.where)
            if action is not None and action not in ("hold", "discontinue"):
                self.issues.add(
                    r.line_of("action"),
                    f"{r.where}.action '{action}' is not allowed (allowed: hold, discontinue)",
                )
                continue
            when = (
                self._condition(when_node, r.line_of("when"), f"{r.where}.when", rule_items)
                if when_node is not None
                else None
            )
            resume = (
                self._condition(
                    resume_node, r.line_of("resume_when"), f"{r.where}.resume_when", rule_items
                )
                if resume_node is not None
                else None
            )
            if action == "discontinue" and resume is not None:
                self.issues.add(
                    r.line_of("resume_when"),
                    f"{r.where}: a discontinue rule ends the course and cannot have resume_when",
                )
            if rid and action and text and when and source:
                if not resume_confirmed:
                    note = (note + " " if note else "") + "(resume criterion UNCONFIRMED)"
                out.append(
                    Rule(
                        rid,
                        cast(RuleAction, action),
                        text,
                        when,
                        resume,
                        source,
                        confirmed,
                        note.strip(),
                    )
                )
        return tuple(out)

    def _condition(
        self, node: Any, line: int, where: str, items: dict[str, Item] | None
    ) -> Condition | None:
        """Parse ``{item, op, value}`` or ``{any: [...]}`` / ``{all: [...]}``.

        ``items`` is the set the condition may test (None: any item of the step, checked by the
        caller).
        """
        r = MapReader(self.issues, node, where, line)
        if not r.ok:
            return None
        if r.has("any") or r.has("all"):
            key = "any" if r.has("any") else "all"
            seq = r.seq(key)
            r.done()
            subs: list[Condition] = []
            for i, sub in enumerate(seq or []):
                c = self._condition(
                    sub, seq.line_of(i) if seq else line, f"{where}.{key}[{i}]", items
                )
                if c is None:
                    return None
                subs.append(c)
            if not subs:
                self.issues.add(line, f"{where}.{key} needs at least one condition")
                return None
            return Condition(any_of=tuple(subs)) if key == "any" else Condition(all_of=tuple(subs))
        item_id = r.ident("item")
        op = r.text("op")
        raw = r.raw("value", required=True)
        r.done()
        if op is not None and op not in OPS:
            self.issues.add(
                r.line_of("op"), f"{where}.op '{op}' is not allowed (allowed: {', '.join(OPS)})"
            )
            return None
        if item_id is None or op is None or raw is None:
            return None
        item = None
        if items is not None:
            item = items.get(item_id)
            if item is None:
                self.issues.add(
                    r.line_of("item"),
                    f"{where}.item '{item_id}' is not an item of "
                    "any step that evaluates rules (known: "
                    f"{', '.join(sorted(items))})",
                )
                return None
        value = self._condition_value(r, raw, cast(Op, op), item, where)
        if value is None:
            return None
        return Condition(item=item_id, op=cast(Op, op), value=value)

    def _condition_value(
        self, r: MapReader, raw: Any, op: Op, item: Item | None, where: str
    ) -> Decimal | str | bool | tuple[str, ...] | None:
        line = r.line_of("value")
        if op in ("in", "not_in"):
            if not isinstance(raw, YList) or not raw:
                self.issues.add(line, f"{where}.value must be a non-empty list for op '{op}'")
                return None
            values = tuple(str(v) for v in raw)
            if item is not None and item.type == "choice":
                bad = [v for v in values if v not in item.option_ids()]
                if bad:
                    self.issues.add(
                        line,
                        f"{where}.value {bad} not among item '{item.id}' "
                        f"options ({', '.join(item.option_ids())})",
                    )
                    return None
            elif item is not None:
                self.issues.add(
                    line, f"{where}: op '{op}' needs a choice item; '{item.id}' is {item.type}"
                )
                return None
            return values
        if item is None:
            if isinstance(raw, bool):
                return raw
            return str(raw)
        if item.type in ("number", "integer"):
            return to_decimal(self.issues, raw, line, f"{where}.value")
        if item.type == "boolean":
            if not isinstance(raw, bool) or op not in ("eq", "ne"):
                self.issues.add(
                    line,
                    f"{where}: boolean item '{item.id}' takes op eq/ne with value true or false",
                )
                return None
            return raw
        if item.type == "choice":
            if op not in ("eq", "ne") or str(raw) not in item.option_ids():
                self.issues.add(
                    line,
                    f"{where}: choice item '{item.id}' takes op eq/ne/in/not_in "
                    f"with its options ({', '.join(item.option_ids())})",
                )
                return None
            return str(raw)
        self.issues.add(line, f"{where}: rules cannot test {item.type} item '{item.id}'")
        return None

    # -- graph ---------------------------------------------------------------------------------
    def _graph(self, steps: tuple[Step, ...], initial: str, seq: YList) -> None:
        ids = [s.id for s in steps]
        lines = {s.id: seq.line_of(i) for i, s in enumerate(steps)}
        targets = set(ids) | set(FINAL_STATES)
        for s in steps:
            if s.next not in targets:
                self.issues.add(
                    self.step_nodes[s.id].line_of("next"),
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
                self.issues.add(
                    lines[current],
                    f"step '{current}' is reached again through "
                    "next: the walk loops and never ends",
                )
                return
            seen.append(current)
            current = next(s for s in steps if s.id == current).next
        if current != "completed" and current in targets:
            self.issues.add(
                lines[seen[-1]],
                f"the walk from '{initial}' ends in '{current}'; it must end in 'completed'",
            )
        for s in steps:
            if s.id not in seen:
                self.issues.add(
                    lines[s.id],
                    f"step '{s.id}' is unreachable: the walk from "
                    f"'{initial}' never gets to it through next",
                )
