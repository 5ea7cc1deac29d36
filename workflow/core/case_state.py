"""What a case knows: its entries, holds, flags and state, and the derived facts (the plan, the
beyond-use time, the steps open now). The base of the case machine's layers:
``CaseState`` <- ``CaseChecks`` <- ``CaseJudging`` <- ``CaseReplay`` <- ``Case``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from transitions import MachineError

from workflow.core.case_machine import MISMATCH_SUFFIX, NEW_STATE, machine_for
from workflow.core.dosing import ORDERED_DOSE_ITEM, DosePlan, beyond_use_at, plan_dose
from workflow.core.errors import IntegrityError, StepRefused
from workflow.core.events import Event, Signer
from workflow.core.items import (
    Value,
    matches_expected,
)
from workflow.core.protocol.model import HELD_STATE, Item, Protocol, Step
from workflow.core.rules import Firing


@dataclass(frozen=True)
class PatientRef:
    patient_id: str
    mrn: str
    name: str
    date_of_birth: date

    def to_json(self) -> dict[str, str]:
        return {
            "patient_id": self.patient_id,
            "mrn": self.mrn,
            "name": self.name,
            "date_of_birth": self.date_of_birth.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PatientRef:
        return cls(
            str(data["patient_id"]),
            str(data["mrn"]),
            str(data["name"]),
            date.fromisoformat(str(data["date_of_birth"])),
        )


@dataclass
class Entry:
    """One signed entry of a step. Superseded entries stay: nothing is ever deleted."""

    seq: int
    step: str
    values: dict[str, Value]
    signer: Signer
    at: datetime
    meaning: str
    corrects: int | None = None
    superseded_by: int | None = None
    outcome: dict[str, Any] = field(default_factory=dict)


@dataclass
class Flag:
    """Something the record must show: a warning, a deviation, a correction after use."""

    code: str
    message: str
    seq: int

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "seq": self.seq}


class CaseState:
    """The state a case's events build, and what follows from it (no judging, no events)."""

    def __init__(self, protocol: Protocol, case_id: str) -> None:
        self.protocol = protocol
        self.case_id = case_id
        self.events: list[Event] = []
        self.history: list[Entry] = []
        self.current: dict[str, Entry] = {}
        self.flags: list[Flag] = []
        self.active_holds: list[Firing] = []
        self.hold_log: list[dict[str, Any]] = []  # every hold, resume and finding, in order
        self.awaiting_resume: list[str] = []
        self.assessments: list[dict[str, Any]] = []
        self.patient: PatientRef | None = None
        self.course_id = ""
        self.ward = "unassigned"
        self.course_start: Mapping[str, Any] | None = None  # the course's signed start record
        self.cycle = 0
        self.dose_in_cycle = 0
        self.dose_in_course = 0
        self.scheduled_at: datetime | None = None
        self.last_given_at: datetime | None = None
        self.end: dict[str, Any] | None = None
        # Set when the hospital discontinued the order after the bag was made (order_notice.py):
        # every step is then refused; the bag is wasted.
        self.order_stop: dict[str, Any] | None = None
        self.differences: tuple[str, ...] = ()
        # Which compared items differ (ids), for screens that may name them but must not show
        # either checker's value before the re-entry.
        self.difference_items: tuple[str, ...] = ()
        self.failed_attempts = 0
        self.state = NEW_STATE
        self._machine = machine_for(protocol)

    def trigger(self, name: str, **kwargs: Any) -> bool:
        """Fire one of the machine's events on this case (transitions' ``Event.trigger``, as
        the method transitions binds onto a registered model would). A move the state does
        not allow raises MachineError."""
        event = self._machine.events.get(name)
        if event is None:
            raise MachineError(f"this protocol's machine has no event {name!r}")
        return bool(event.trigger(self, **kwargs))

    @property
    def version(self) -> int:
        return len(self.events)

    @property
    def closed(self) -> bool:
        return self.state in self.protocol.final_states

    @property
    def on_hold(self) -> bool:
        return self.state == HELD_STATE

    @property
    def given(self) -> bool:
        """An infusion that started counts as given, whatever is corrected later."""
        return self.given_at is not None

    @property
    def given_at(self) -> datetime | None:
        # From the whole history, not only current entries: nothing undoes a started infusion.
        for e in self.history:
            if self.protocol.step(e.step).starts_infusion:
                return e.at
        return None

    @property
    def stopped_at(self) -> datetime | None:
        for e in self.history:
            if self.protocol.step(e.step).stops_infusion:
                return e.at
        return None

    @property
    def bag_prepared(self) -> bool:
        return any(self.protocol.step(e.step).sets_beyond_use for e in self.history)

    @property
    def plan(self) -> DosePlan | None:
        """The dose plan from the current (possibly corrected) order."""
        order = self._order_entry()
        if order is None:
            return None
        return self._plan_from(order)

    @property
    def beyond_use_at(self) -> datetime | None:
        for e in self.current.values():
            step = self.protocol.step(e.step)
            if step.sets_beyond_use:
                prepared = e.values.get(step.sets_beyond_use)
                if isinstance(prepared, datetime):
                    return beyond_use_at(self.protocol, prepared)
        return None

    def next_step(self) -> Step | None:
        if self.state in self.protocol.step_ids():
            return self.protocol.step(self.state)
        return None

    def allowed_steps(self) -> tuple[str, ...]:
        """Steps that may be signed now (two during a double-check mismatch)."""
        if self.state.endswith(MISMATCH_SUFFIX):
            second = self.protocol.step(self.state[: -len(MISMATCH_SUFFIX)])
            return (str(second.blinded_against), second.id)
        if self.state in self.protocol.step_ids():
            return (self.state,)
        return ()

    def blinded_values(self, step_id: str) -> dict[str, Value]:
        """What a form may prefill for this step: never the entries it is blinded against."""
        step = self.protocol.step(step_id)
        entry = self.current.get(step_id)
        if step.blinded_against or any(s.blinded_against == step_id for s in self.protocol.steps):
            return {}
        return dict(entry.values) if entry else {}

    def walk_steps(self) -> tuple[Step, ...]:
        return self.protocol.ordered_steps_from(self.protocol.initial)

    def step_number(self, step_id: str) -> tuple[int, int]:
        ids = [s.id for s in self.walk_steps()]
        return ids.index(step_id) + 1, len(ids)

    def expected(self, ref: str) -> Value | None:
        """The value an item's ``expect`` reference names (``plan.final_volume_ml``...), or
        None when the case does not know it yet. Whether a viewer may see it is
        workflow.core.blinding's question, not this one's."""
        return self._expected(ref)

    def _expected(self, ref: str) -> Value | None:
        ns, _, name = ref.partition(".")
        if ns == "plan":
            plan = self.plan
            return plan.value(name) if plan is not None else None
        if ns == "patient" and self.patient is not None:
            if name == "date_of_birth":
                return self.patient.date_of_birth
            return self.patient.mrn if name == "mrn" else self.patient.name
        if ns == "case":
            if name == "beyond_use_at":
                return self.beyond_use_at
            from decimal import Decimal

            return Decimal(
                {
                    "cycle": self.cycle,
                    "dose_in_cycle": self.dose_in_cycle,
                    "dose_in_course": self.dose_in_course,
                }[name]
            )
        if ns == "protocol":
            # protocol.drug, protocol.route (None on a protocol text that names no route)
            return self.protocol.route if name == "route" else self.protocol.drug
        return None

    def _blinded_pair(self, step: Step) -> tuple[Step, Step] | None:
        if step.blinded_against:
            return self.protocol.step(step.blinded_against), step
        for other in self.protocol.steps:
            if other.blinded_against == step.id and other.id in self.current:
                return step, other
        return None

    def _difference_labels(self) -> list[str]:
        """The differing items by label (never their values: the checkers must not be primed)."""
        if not self.state.endswith(MISMATCH_SUFFIX):
            return []
        second = self.protocol.step(self.state[: -len(MISMATCH_SUFFIX)])
        return [(second.item(i) or _ITEM).label for i in self.difference_items]

    def _differing_items(self, step: Step) -> tuple[str, ...]:
        """Ids of the compared items whose two entries differ (or miss the expected value)."""
        pair = self._blinded_pair(step)
        if pair is None:
            return ()
        first, second = pair
        a_vals = self.current[first.id].values if first.id in self.current else {}
        b_vals = self.current[second.id].values if second.id in self.current else {}
        return tuple(
            item_id
            for item_id in second.compare
            if self._item_differs(second, item_id, a_vals.get(item_id), b_vals.get(item_id))
        )

    def _item_differs(self, step: Step, item_id: str, a: Value | None, b: Value | None) -> bool:
        item = step.item(item_id)
        assert item is not None
        expected = self._expected(item.expect) if item.expect else None
        ok_a = a is not None and (expected is None or matches_expected(item, a, expected))
        ok_b = b is not None and (expected is None or matches_expected(item, b, expected))
        same = (
            a is not None
            and b is not None
            and (matches_expected(item, a, b) or matches_expected(item, b, a))
        )
        return not (ok_a and ok_b and same)

    def _finding_items(self) -> dict[str, Item]:
        """Items an assessment may record: those of every step that evaluates rules."""
        items: dict[str, Item] = {}
        for s in self.protocol.steps:
            if s.evaluates_rules:
                for it in s.items:
                    items.setdefault(it.id, it)
        return items

    @staticmethod
    def _item(step: Step, item_id: str) -> Item:
        item = step.item(item_id)
        if item is None:
            raise StepRefused(
                "unknown_item", f"{item_id}: '{step.title}' has no such item", field=item_id
            )
        return item

    def _first_open(self, signing: str | None = None) -> str:
        for s in self.walk_steps():
            if s.id == signing:
                continue
            if s.id not in self.current:
                return s.id
        return "completed"

    def _order_entry(self) -> Entry | None:
        return self.current.get(self.protocol.initial) or next(
            (
                e
                for e in reversed(self.history)
                if e.step == self.protocol.initial and e.superseded_by is None
            ),
            None,
        )

    def _plan_from(self, order: Entry) -> DosePlan:
        return self._plan_for(order.values, order.at)

    def _plan_for(self, values: Mapping[str, Value], at: datetime) -> DosePlan:
        measured = values.get("weight_measured_at")
        return plan_dose(
            self.protocol,
            values.get("dosing_weight_kg"),
            values.get(ORDERED_DOSE_ITEM),
            weight_measured_at=measured if isinstance(measured, datetime) else None,
            now=at,
        )

    def _step(self, step_id: str) -> Step:
        try:
            return self.protocol.step(step_id)
        except KeyError:
            raise StepRefused(
                "unknown_step",
                f"'{step_id}' is not a step of this protocol "
                f"(steps: {', '.join(self.protocol.step_ids())})",
            ) from None

    def _actor(self, event: Event) -> Signer:
        if event.actor is None:
            raise IntegrityError(f"case {self.case_id} event {event.seq} has no signer")
        return event.actor

    def _entry_by_seq(self, seq: int) -> Entry:
        for e in self.history:
            if e.seq == seq:
                return e
        raise StepRefused(
            "invalid_item",
            f"target_seq: event {seq} is not a signed step of this case",
            field="target_seq",
        )

    def _event(
        self,
        type_: str,
        at: datetime,
        actor: Signer | None,
        data: Mapping[str, Any],
        *,
        step: str | None = None,
        meaning: str | None = None,
        corrects: int | None = None,
    ) -> Event:
        return Event(
            self.case_id,
            len(self.events) + 1,
            type_,
            at,
            actor,
            dict(data),
            step,
            meaning,
            corrects,
        )

    def _exit_event(
        self, type_: str, name: str, signer: Signer, at: datetime, reason: str, note: str
    ) -> Event:
        spec = self.protocol.side_exits[name]
        return self._event(
            type_, at, signer, {"reason": reason, "note": note}, meaning=spec.meaning
        )

    def _role_title(self, role: str) -> str:
        found = self.protocol.roles.get(role)
        return found.title.lower() if found else role


_ITEM = Item(id="value", label="value", type="text", required=False)


def _outcome(
    firings: Iterable[Firing], differences: list[str], warnings: list[dict[str, str]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fired = [f.to_json() for f in firings]
    if fired:
        out["firings"] = fired
    if differences:
        out["differences"] = differences
    if warnings:
        out["warnings"] = warnings
    return out


def _decision(outcome: Mapping[str, Any]) -> tuple[Any, ...]:
    """What an outcome decided, without its wording: see ``Case._recorded_outcome``."""
    return (
        sorted(
            (str(f.get("rule_id")), str(f.get("action")), str(f.get("reason")))
            for f in outcome.get("firings") or []
        ),
        sorted(str(w.get("code")) for w in outcome.get("warnings") or []),
        len(outcome.get("differences") or []),
    )
