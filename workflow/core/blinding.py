"""What a viewer must not be shown of a case right now: the one rule for every screen.

Independent means unprimed (bedside-ux.md, principle 2): a person who may sign an independent
check finds each value at its source (the bag label, the wristband, the patient) and is never
shown what the check asks for: not the dose plan, not the identifiers in a header, not the
other checker's entries, and after a mismatch only *which* items differ.

The rule is read off the protocol, never off step ids: the steps the case is at
(``Case.allowed_steps``, two during a double-check mismatch) that are independent checks
(``Step.unprimed``, and both sides of a ``blinded_against`` pair) and that the viewer's roles
may sign. Each such step hides what its items ``expect``. A viewer whose roles cannot sign
those steps (prescriber, auditor, admin, a technician) sees everything, and so does everyone
once the case has moved past them: the hiding follows who asks and the case's state, never a
parameter of the request. The identifiers and the plan are the patient's, not only this
dose's: while the viewer may sign a check of one dose, the same values are hidden on the
patient's other doses too (a finished dose's page shows the same MRN and, usually, the same
weight and plan).

Pure: reads the replayed Case and the protocol model only (no web, no store), so the pages,
the JSON API, the label, FHIR and error answers all ask the same question here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from workflow.core.errors import Blinded
from workflow.core.machine import Case
from workflow.core.protocol.model import Item, Protocol, Step

PLAN = "plan.*"  # a step that asks for any plan number hides the whole plan
BEYOND_USE = "case.beyond_use_at"
# The patient header's identifiers. A step that asks for any of them hides them all: the
# header is one block the eye reads as "this is the right patient and dose", and a check of
# the wristband against a screen showing the MRN, the date of birth or the dose number is a
# check of the screen. The name is not hidden unless a step asks for it: the nurse needs it to
# know whom to go to, and no identification step here compares it.
HEADER = (
    "patient.mrn",
    "patient.date_of_birth",
    "case.cycle",
    "case.dose_in_cycle",
    "case.dose_in_course",
)
# What a bag label's code says besides the case id (workflow/core/gs1.py): the plan's dose,
# volume, infusion time and pump rate (AIs 94-97), the beyond-use time (7003), the cycle and
# dose number (92). Its drug and route (93, 98) are the protocol's, never hidden (below).
BAG_CODE_CARRIES = (PLAN, BEYOND_USE, "case.cycle", "case.dose_in_cycle")
# The protocol's own drug and route are the application's context (one drug per protocol,
# given one way: its name says "IV"): on every screen's title, they cannot be hidden; the
# label is still what the checker reads.
NEVER_HIDDEN_NAMESPACES = ("protocol",)


@dataclass(frozen=True)
class Blinding:
    """What one viewer may not see of one case now. Falsy when nothing is hidden."""

    at_steps: tuple[str, ...] = ()  # independent checks of this case the viewer may sign now
    checks: tuple[str, ...] = ()  # titles of every such check, this dose's or another's
    refs: frozenset[str] = frozenset()  # hidden references: "plan.*", "patient.mrn", ...
    hidden_steps: frozenset[str] = frozenset()  # a blinded pair: entries not shown at all
    withheld_steps: frozenset[str] = frozenset()  # entries shown, every value withheld
    withheld_items: frozenset[tuple[str, str]] = field(default=frozenset())  # (step, item)

    def __bool__(self) -> bool:
        return bool(self.checks)

    def hides(self, ref: str) -> bool:
        """Whether the value an ``expect`` reference names (or a header field) is hidden."""
        namespace = ref.partition(".")[0]
        return ref in self.refs or f"{namespace}.*" in self.refs

    @property
    def plan(self) -> bool:
        return PLAN in self.refs

    @property
    def differences(self) -> bool:
        """Whether the double check's values (both sides', and the expected) are hidden."""
        return bool(self.hidden_steps)

    def hides_entry(self, step_id: str) -> bool:
        return step_id in self.hidden_steps

    def hides_value(self, step: Step, item: Item) -> bool:
        """Whether one signed value may not be shown (the entry itself may be)."""
        return (
            step.id in self.hidden_steps
            or step.id in self.withheld_steps
            or (step.id, item.id) in self.withheld_items
        )

    def hidden(self) -> list[str]:
        """What is hidden, for an answer to say why fields are empty."""
        return sorted(self.refs)


NOTHING = Blinding()


def is_unprimed(protocol: Protocol, step: Step) -> bool:
    """An independent check: marked so, or either side of a blinded double check."""
    return protocol.unprimed(step)


def blinded_pair(protocol: Protocol, step: Step) -> tuple[str, str] | None:
    if step.blinded_against is not None:
        return step.blinded_against, step.id
    for other in protocol.steps:
        if other.blinded_against == step.id:
            return step.id, other.id
    return None


def blinding_for(case: Case, roles: Iterable[str], others: Iterable[Case] = ()) -> Blinding:
    """What a viewer holding ``roles`` must not be shown of ``case`` now. ``others`` are the
    patient's other doses still open: what their checks ask for is hidden here as well."""
    protocol = case.protocol
    held = set(roles)
    at_steps = _checks_at(case, held)
    refs: set[str] = set()
    hidden_steps: set[str] = set()
    titles = [protocol.step(sid).title for sid in at_steps]
    for sid in at_steps:
        step = protocol.step(sid)
        refs |= _asked(step)
        pair = blinded_pair(protocol, step)
        if pair is not None:
            hidden_steps.update(pair)
    patient = case.patient.patient_id if case.patient is not None else None
    for other in others:
        same = other.patient is not None and other.patient.patient_id == patient
        if other.case_id == case.case_id or not same:
            continue
        for sid in _checks_at(other, held):
            step = other.protocol.step(sid)
            refs |= _asked(step)
            titles.append(f"{step.title} (another dose of this patient)")
    if not titles:
        return NOTHING
    if refs & set(HEADER):
        refs.update(HEADER)
    return Blinding(
        at_steps=at_steps,
        checks=tuple(dict.fromkeys(titles)),
        refs=frozenset(refs),
        hidden_steps=frozenset(hidden_steps),
        withheld_steps=frozenset(_sources_of(protocol, refs)),
        withheld_items=frozenset(_items_revealing(protocol, refs)),
    )


def _checks_at(case: Case, roles: set[str]) -> tuple[str, ...]:
    """The independent checks the case is at that these roles may sign."""
    protocol = case.protocol
    return tuple(
        sid
        for sid in case.allowed_steps()
        if is_unprimed(protocol, protocol.step(sid)) and roles & set(protocol.step(sid).roles)
    )


def _asked(step: Step) -> set[str]:
    """The references a check's items expect: what its signer must find at the source."""
    refs: set[str] = set()
    for item in step.items:
        if item.expect is None:
            continue
        namespace = item.expect.partition(".")[0]
        if namespace in NEVER_HIDDEN_NAMESPACES:
            continue
        refs.add(PLAN if namespace == "plan" else item.expect)
    return refs


def _sources_of(protocol: Protocol, refs: set[str]) -> set[str]:
    """Steps whose every value would give a hidden value away: the plan is computed from the
    first step's entry (the order: weight and dose per kilogram)."""
    return {protocol.initial} if PLAN in refs else set()


def _items_revealing(protocol: Protocol, refs: set[str]) -> set[tuple[str, str]]:
    """Earlier entries that carry a hidden value: any item expecting a hidden reference (the
    dilution's final volume is the plan's), the time the beyond-use clock starts from, and a
    scanned bag code (it carries the dose, the volume, the infusion time, the pump rate, the
    beyond-use time and the dose number, as the label prints them)."""
    out: set[tuple[str, str]] = set()
    hide = Blinding(refs=frozenset(refs)).hides
    for step in protocol.steps:
        for item in step.items:
            if item.expect is not None and hide(item.expect):
                out.add((step.id, item.id))
        if step.sets_beyond_use and hide(BEYOND_USE):
            out.add((step.id, step.sets_beyond_use))
        if step.checks_bag and any(hide(ref) for ref in BAG_CODE_CARRIES):
            out.add((step.id, "bag_scan"))
    return out


def difference_labels(case: Case) -> list[str]:
    """The labels of the double check's differing items: which items, never their values."""
    labels: dict[str, str] = {}
    for step in case.protocol.steps:
        for item_id in step.compare:
            item = step.item(item_id)
            labels.setdefault(item_id, item.label if item is not None else item_id)
    return [labels.get(i, i) for i in case.difference_items]


def refuse_while_blinded(blinding: Blinding, what: str) -> None:
    """Raise Blinded when ``what`` (a label reprint, an export) would show this viewer the
    values an independent check they may sign now asks them to find."""
    if not blinding:
        return
    titles = " or ".join(f"'{t}'" for t in blinding.checks)
    raise Blinded(
        f"{what} is not shown to you now: you may sign {titles}, an independent check whose "
        "values you read from the bag label, the wristband and the patient, and this would "
        "show them. It is available once the check is signed, or to a colleague who does "
        "not sign it."
    )
