"""The validated protocol as frozen objects.

Nothing here is built except by the loader, after the whole file has been checked: a Protocol in
hand is always complete and consistent (every reference resolves, every state is reachable and
can reach an end).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from .words import WORD_KEYS, fill_protocol_text

ItemType = Literal["number", "integer", "boolean", "choice", "text", "date", "datetime", "expiry"]
ITEM_TYPES: tuple[str, ...] = (
    "number",
    "integer",
    "boolean",
    "choice",
    "text",
    "date",
    "datetime",
    "expiry",
)
Op = Literal["lt", "le", "gt", "ge", "eq", "ne", "in", "not_in"]
OPS: tuple[str, ...] = ("lt", "le", "gt", "ge", "eq", "ne", "in", "not_in")
RuleAction = Literal["hold", "discontinue"]


@dataclass(frozen=True)
class Source:
    id: str
    title: str
    citation: str
    label: str  # "current", "old" or "none": which US label, if any, the fact comes from
    url: str | None


@dataclass(frozen=True)
class Quantity:
    """A clinical number with its unit and where it comes from."""

    value: Decimal
    unit: str
    source: str
    confirmed: bool
    note: str


@dataclass(frozen=True)
class Role:
    id: str
    title: str


@dataclass(frozen=True)
class Option:
    id: str
    label: str


@dataclass(frozen=True)
class Forbidden:
    """A choice value that must be refused, with why and on whose authority."""

    value: str
    reason: str
    source: str


@dataclass(frozen=True)
class Condition:
    """A declarative test of one entered value: ``item op value``; or any/all of conditions.

    Never an expression string: the loader only accepts these shapes.
    """

    item: str | None = None
    op: Op | None = None
    value: Decimal | str | bool | tuple[str, ...] | None = None
    any_of: tuple[Condition, ...] = ()
    all_of: tuple[Condition, ...] = ()

    def items(self) -> set[str]:
        found = {self.item} if self.item else set()
        for sub in (*self.any_of, *self.all_of):
            found |= sub.items()
        return found


@dataclass(frozen=True)
class Item:
    id: str
    label: str
    type: ItemType
    required: bool
    unit: str | None = None
    min: Decimal | None = None
    max: Decimal | None = None
    options: tuple[Option, ...] = ()
    forbidden: tuple[Forbidden, ...] = ()
    must_be: bool | None = None  # attestations: the box must be ticked
    expect: str | None = None  # "plan.<field>", "patient.<field>", "case.<field>"
    required_if: Condition | None = None
    max_length: int | None = None
    not_future: bool = False
    decimals: int | None = None  # number items checked against an expected value: precision
    help: str = ""
    source: str | None = None  # where the item's requirement comes from (attestations cite one)

    def option_ids(self) -> tuple[str, ...]:
        return tuple(o.id for o in self.options)


@dataclass(frozen=True)
class ScanSpec:
    """A product a step identifies (scanned, or typed in with a reason): its items are
    ``{kind}_lot``, ``{kind}_expiry`` and, as the step has them, ``_gtin``, ``_entry``,
    ``_typed_reason``, ``_scan``. ``ingredient`` and ``amount`` are the words the compounding
    record's ingredient table prints (placeholders: see ``protocol.words``)."""

    kind: str
    ingredient: str
    amount: str


# The items a step that ``checks_bag`` must have: how the bag was identified, and its code.
BAG_ITEMS = ("bag_entry", "bag_scan")


@dataclass(frozen=True)
class NormalGroup:
    """Findings a form may record with one "all normal" tap (issue 12.4): each item's normal
    value, recorded as if entered one by one, so every rule still reads every value. The
    loader refuses a group whose normal values would fire a rule; an abnormal finding is
    entered item by item as before."""

    id: str
    title: str
    normal: tuple[tuple[str, str | bool], ...]  # item id -> value as a form posts it

    def item_ids(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.normal)


@dataclass(frozen=True)
class PhotoSpec:
    """A photo a step asks for (issue 16.2: the verifier sees what was done, not only what was
    typed). ``scan`` names one of the step's ``scans`` kinds: a barcode read in the photo is
    compared with that product's scanned or typed identification."""

    id: str
    label: str
    required: bool = False
    scan: str | None = None


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    phase: str
    roles: tuple[str, ...]
    meaning: str
    items: tuple[Item, ...]
    next: str
    instructions: tuple[str, ...] = ()
    verifies: tuple[str, ...] = ()  # steps this one verifies: signer must differ from theirs
    blinded_against: str | None = None  # independent double check: compare with this step
    compare: tuple[str, ...] = ()  # items compared with blinded_against's entries and plan
    evaluates_rules: bool = False
    within_beyond_use: bool = False  # refuse when the bag would pass its beyond-use time
    starts_infusion: bool = False
    stops_infusion: bool = False
    sets_beyond_use: str | None = None  # item id whose time starts the beyond-use clock
    wastable: bool = False  # a prepared bag exists from this step on
    # An independent check: its signer finds each expected value at the source (bag label,
    # wristband) and is never shown it. Both sides of a blinded double check are unprimed
    # whether or not the file says so (``Protocol.unprimed``).
    unprimed: bool = False
    # Products identified on this step by barcode or typed in (``{kind}_lot``, ``_expiry``...).
    scans: tuple[ScanSpec, ...] = ()
    # The bag is identified here by its label's code (``bag_entry``, ``bag_scan``): closed loop.
    checks_bag: bool = False
    # Groups of findings with an "all normal" tap (hold checks, observation).
    normal_groups: tuple[NormalGroup, ...] = ()
    photos: tuple[PhotoSpec, ...] = ()

    def item(self, item_id: str) -> Item | None:
        for it in self.items:
            if it.id == item_id:
                return it
        return None


def common_roles(steps: Sequence[Step]) -> tuple[str, ...]:
    """The roles that may sign every one of ``steps`` (a sitting's signer holds one), in the
    first step's order."""
    return tuple(r for r in steps[0].roles if all(r in s.roles for s in steps)) if steps else ()


@dataclass(frozen=True)
class SideExit:
    """Who may take a case off its walk (resume, discontinue, cancel, waste) and why."""

    id: str
    roles: tuple[str, ...]
    meaning: str
    reasons: tuple[Option, ...]


@dataclass(frozen=True)
class Rule:
    id: str
    action: RuleAction
    text: str
    when: Condition
    resume_when: Condition | None
    source: str
    confirmed: bool
    note: str


@dataclass(frozen=True)
class VolumeBand:
    """D5W volume for doses up to ``max_dose_iu`` (inclusive); None = no upper bound."""

    max_dose_iu: Decimal | None
    diluent_volume_ml: Decimal
    source: str
    confirmed: bool
    note: str


@dataclass(frozen=True)
class Dosing:
    dose_per_kg: Quantity  # IU/kg
    vial_content: Quantity  # IU
    vial_mass: Quantity  # mg
    reconstitution_volume: Quantity  # mL per vial
    reconstitution_diluent: str  # choice id of the only allowed diluent
    reconstituted_concentration: Quantity  # IU/mL
    reconstituted_mass_concentration: Quantity  # mg/mL (for the IU -> mg convention)
    final_diluent: str
    concentration_min: Quantity  # mcg/mL
    concentration_max: Quantity  # mcg/mL
    infusion_duration: Quantity  # min
    beyond_use: Quantity  # h, from preparation to the end of the infusion
    volume_bands: tuple[VolumeBand, ...]
    weight_accepted_min: Quantity  # kg: below or above is refused as implausible
    weight_accepted_max: Quantity
    weight_adult_min: Quantity  # kg: outside is accepted with a warning
    weight_adult_max: Quantity
    weight_max_age: Quantity  # h: older dosing weights are flagged stale
    in_line_filter: bool
    mg_convention: str


@dataclass(frozen=True)
class Schedule:
    min_interval: Quantity  # h
    max_doses_per_cycle: Quantity
    max_doses_per_course: Quantity
    max_cycles_per_course: Quantity
    cycle_days: Quantity  # d
    rest_days: Quantity  # d


@dataclass(frozen=True)
class EligibilityTest:
    id: str
    title: str
    result_item: str
    date_item: str
    source: str


@dataclass(frozen=True)
class Eligibility:
    step: str
    tests: tuple[EligibilityTest, ...]
    max_age: Quantity  # d before the course starts


@dataclass(frozen=True)
class CourseRule:
    """A rule over a whole course, e.g. "held 3 times: discontinue" (institution overlays).

    Declarative like the dose rules: it counts held doses; no expression is evaluated.
    """

    id: str
    action: RuleAction
    text: str
    held_doses_at_least: int
    source: str
    confirmed: bool
    note: str


@dataclass(frozen=True)
class Acknowledgement:
    """A warning the engine raises that a signature must answer before the step is accepted.

    The step is refused until someone in ``roles`` signs it with the reason in ``item``
    (e.g. an ordered dose other than the label's, an eligibility result older than the window).
    ``refuse`` makes it a hard stop instead: no acknowledgement is accepted (an institution
    overlay may tighten to that; it can never loosen a hard stop).
    """

    id: str
    warning: str  # one of WARNING_CODES
    step: str
    item: str  # a text item of ``step`` that holds the reason
    roles: tuple[str, ...]
    refuse: bool
    source: str
    confirmed: bool
    note: str


@dataclass(frozen=True)
class Retreatment:
    """After which rules a course may never be followed by another (label contraindication).

    A new course for such a patient is refused naming the rule, the date and the dose; when
    ``override_roles`` is not empty, one of them may override it with a signed reason, which
    every later record shows.
    """

    contraindicated_after: tuple[str, ...]  # rule ids
    source: str
    override_roles: tuple[str, ...]


@dataclass(frozen=True)
class CourseStart:
    """What a prescriber attests, and signs, when a course starts (boxed-warning conditions)."""

    roles: tuple[str, ...]
    meaning: str
    items: tuple[Item, ...]  # attestations: boolean items that must be ticked, each sourced
    retreatment: Retreatment | None

    def item(self, item_id: str) -> Item | None:
        return next((it for it in self.items if it.id == item_id), None)


@dataclass(frozen=True)
class Product:
    """A product the institution's formulary accepts for a scanned item (vial, diluent, bag)."""

    gtin: str
    kind: str  # the item prefix it may fill: "vial", "diluent" or "d5w"
    description: str
    source: str
    confirmed: bool


# What a record section may hold besides a step's entries, and which row sets it may add.
SECTION_CONTENTS: tuple[str, ...] = ("plan", "ingredients", "double_check", "exits", "outcome")
SECTION_ROWS: tuple[str, ...] = ("product", "beyond_use", "infusion_times")
RECORD_KINDS: tuple[str, ...] = ("compounding", "administration")


@dataclass(frozen=True)
class RecordSection:
    """One section of a signed record: a step's entries (all, ``only`` some, or all but
    ``skip``), or one of the engine's own contents (the dose plan, the ingredient table, the
    double check's table, the holds and exits, the outcome)."""

    key: str
    title: str
    step: str | None = None
    content: str | None = None
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    signed_by: bool = True
    signer: str = "Signed by"
    lead: tuple[str, ...] = ()  # row sets printed before the step's rows
    add: tuple[str, ...] = ()  # row sets printed after them


@dataclass(frozen=True)
class RecordSpec:
    """Which steps feed one record (its signatures and superseded entries) and its sections.
    ``from_step``: the record exists once that step was signed (None: always)."""

    kind: str
    from_step: str | None
    steps: tuple[str, ...]
    sections: tuple[RecordSection, ...]


@dataclass(frozen=True)
class OverlayRef:
    """The institution overlay a protocol was combined with: named in records and exports."""

    id: str
    name: str
    version: str
    content_hash: str  # sha256 of the overlay file's bytes
    path: str


@dataclass(frozen=True)
class WeighedAddition:
    """One addition weighed at a preparation step (issue 16.3): the container's weight before
    and after it (items ``{id}_before_g``, ``{id}_after_g``, how each was taken
    ``{id}_weighed_by``, and ``{id}_typed_reason`` when typed), whose difference divided by
    the liquid's specific gravity is compared with the planned volume ``planned``."""

    id: str
    step: str
    title: str
    planned: str  # an expect reference, e.g. plan.reconstituted_volume_ml
    liquid: str  # a key of Gravimetric.specific_gravity


# The items a weighed addition reads on its step, by suffix.
WEIGHED_ITEMS = ("before_g", "after_g", "weighed_by", "typed_reason")


@dataclass(frozen=True)
class Gravimetric:
    """Gravimetric verification: off unless a site turns it on (overlay ``gravimetric``).
    The specific gravities and the tolerance are in no retrieved source: the protocol's are
    marked unconfirmed until a site's overlay sets its own, and records say which were used."""

    enabled: bool
    tolerance: Quantity  # percent of the planned volume, either way
    specific_gravity: Mapping[str, Quantity]  # liquid -> g/mL
    additions: tuple[WeighedAddition, ...]

    def at(self, step_id: str) -> tuple[WeighedAddition, ...]:
        """The additions weighed at ``step_id`` when the check is on; none when it is off."""
        return tuple(a for a in self.additions if a.step == step_id) if self.enabled else ()


@dataclass(frozen=True)
class Protocol:
    id: str
    name: str
    version: str
    drug: str
    brand: str
    content_hash: str  # sha256 of the file's bytes
    path: str
    sources: dict[str, Source]
    roles: dict[str, Role]
    steps: tuple[Step, ...]
    initial: str
    rules: tuple[Rule, ...]
    dosing: Dosing
    schedule: Schedule
    eligibility: Eligibility
    resume_step: str
    final_states: tuple[str, ...]
    side_exits: dict[str, SideExit]
    # Set only on a protocol combined with an institution overlay (protocol.overlay.apply_overlay):
    # content_hash is then the hash of the combination, base_hash the protocol file's own hash.
    course_rules: tuple[CourseRule, ...] = ()
    formulary: tuple[Product, ...] = ()
    acknowledgements: tuple[Acknowledgement, ...] = ()
    course_start: CourseStart | None = None
    overlay: OverlayRef | None = None
    base_hash: str | None = None
    # Display words for the clinical facts pages, labels and records print, as templates whose
    # numbers are the protocol's own quantities (``say``), and the records' shape.
    words: dict[str, str] = field(default_factory=dict)
    records: tuple[RecordSpec, ...] = ()
    gravimetric: Gravimetric | None = None
    # Consecutive steps one person signs together with one signature (protocol/_sittings.py).
    sittings: tuple[tuple[str, ...], ...] = ()
    # The route's id (e.g. "intravenous"), which the bag label's code carries and a route item
    # may ``expect`` (``protocol.route``); None in protocol texts before 1.7.0.
    route: str | None = None

    def say(self, key: str) -> str:
        """A display word with its numbers filled from this protocol's (possibly tightened)
        quantities: ``{dosing.beyond_use}`` reads 36 under an overlay that set 36. ``key`` is
        one of ``WORD_KEYS`` (a misspelt key is a programming error, never an empty word)."""
        if key not in WORD_KEYS:
            raise KeyError(key)
        return fill_protocol_text(self, self.words.get(key, ""))

    def text(self, template: str, values: dict[str, str] | None = None) -> str:
        """Any protocol template (scan ingredients, amounts) filled like ``say``, with
        ``{words.KEY}`` and the caller's ``values`` (e.g. a step's entries) as well."""
        return fill_protocol_text(self, template, values)

    def record(self, kind: str) -> RecordSpec | None:
        return next((r for r in self.records if r.kind == kind), None)

    def scan_steps(self) -> dict[str, str]:
        """Scanned product kind -> the step whose items it fills, in the protocol's order."""
        return {scan.kind: step.id for step in self.steps for scan in step.scans}

    def identity(self) -> dict[str, object]:
        """What a case_opened event records: the protocol and, if any, its overlay, by hash."""
        out: dict[str, object] = {"id": self.id, "version": self.version, "hash": self.content_hash}
        if self.overlay is not None:
            out["protocol_hash"] = self.file_hash
            out["overlay"] = {
                "id": self.overlay.id,
                "name": self.overlay.name,
                "version": self.overlay.version,
                "hash": self.overlay.content_hash,
            }
        return out

    @property
    def file_hash(self) -> str:
        """SHA-256 of the protocol file itself (without any overlay)."""
        return self.base_hash or self.content_hash

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def step_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.steps)

    def sitting_from(self, step_id: str) -> tuple[str, ...]:
        """The sitting that starts at ``step_id`` (its steps, ``step_id`` first), else ()."""
        return next((s for s in self.sittings if s[0] == step_id), ())

    def unprimed(self, step: Step) -> bool:
        """An independent check: marked so, or either side of a blinded double check. Its
        signer finds every value at the source and is never shown what they must find."""
        return (
            step.unprimed
            or step.blinded_against is not None
            or any(s.blinded_against == step.id for s in self.steps)
        )

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def rule_item_ids(self) -> set[str]:
        found: set[str] = set()
        for r in self.rules:
            found |= r.when.items()
            if r.resume_when:
                found |= r.resume_when.items()
        return found

    def ordered_steps_from(self, step_id: str) -> tuple[Step, ...]:
        """Steps in the order the protocol walks them, starting at ``step_id``."""
        out: list[Step] = []
        current: str | None = step_id
        ids = set(self.step_ids())
        while current in ids:
            step = self.step(current)
            out.append(step)
            current = step.next
        return tuple(out)


# Names an item's ``expect`` may point at. The machine supplies these values; the loader refuses
# any other reference and any item whose type cannot hold the value.
PLAN_FIELDS: dict[str, str] = {
    "weight_kg": "number",
    "dose_iu_per_kg": "number",
    "dose_iu": "number",
    "dose_mg": "number",
    "vials": "integer",
    "reconstitution_volume_ml_per_vial": "number",
    "reconstituted_volume_ml": "number",
    "diluent_volume_ml": "number",
    "final_volume_ml": "number",
    "final_concentration_mcg_per_ml": "number",
    "infusion_minutes": "number",
    "pump_rate_ml_per_h": "number",
}
PATIENT_FIELDS: dict[str, str] = {"mrn": "text", "date_of_birth": "date", "name": "text"}
CASE_FIELDS: dict[str, str] = {
    "cycle": "integer",
    "dose_in_cycle": "integer",
    "dose_in_course": "integer",
    "beyond_use_at": "datetime",
}
# ``route`` is the protocol head's route id (``protocol.route``), a choice item's option id.
PROTOCOL_FIELDS: dict[str, str] = {"drug": "text", "route": "choice"}
EXPECT_NAMESPACES: dict[str, dict[str, str]] = {
    "plan": PLAN_FIELDS,
    "patient": PATIENT_FIELDS,
    "case": CASE_FIELDS,
    "protocol": PROTOCOL_FIELDS,
}
SIDE_EXITS: tuple[str, ...] = ("resume", "discontinue", "cancel", "waste")
# The warnings the engine raises, and where: an acknowledgement names one of these and a step
# where it can arise ("initial": the order step; "eligibility": the eligibility step; "stop":
# a step that stops the infusion).
WARNING_CODES: dict[str, str] = {
    "concentration_below_window": "initial",
    "concentration_above_window": "initial",
    "dose_not_label_dose": "initial",
    "weight_outside_adult_range": "initial",
    "weight_stale": "initial",
    "eligibility_test_old": "eligibility",
    "infusion_duration_deviation": "stop",
}
# The side exits the engine implements; a protocol lists them so its graph can be checked.
FINAL_STATES: tuple[str, ...] = ("completed", "discontinued", "cancelled", "wasted")
HELD_STATE = "held"
