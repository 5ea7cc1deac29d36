"""The case machine: one case is one dose, from the prescriber's order to a signed record.

Built from a validated Protocol with transitions. The state is never stored on its own: it is
rebuilt by replaying the case's events, so the same events always give the same state. Every
live action builds an event and applies it through the same ``apply`` that replay uses; apply
checks everything before it changes anything, so a refused action leaves the case untouched.

Refusals are StepRefused with a stable reason: out of order, wrong role, same person twice, an
item out of bounds, a forbidden value, expired stock, beyond-use time passed, too soon, held,
closed. Never a silent False.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from transitions import Machine, MachineError

from . import events as ev
from .dosing import DosePlan, beyond_use_at, plan_dose
from .errors import IntegrityError, StepRefused
from .events import Event, Signer
from .interop.gs1 import check_scanned_entries, complete_from_scans
from .items import (
    Value,
    display,
    matches_expected,
    parse_value,
    to_stored,
)
from .protocol.model import HELD_STATE, Item, Protocol, Step
from .rules import Firing, evaluate, test
from .schedule import NextDose, check_interval

NEW_STATE = "new"
MISMATCH_SUFFIX = "_mismatch"


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


def _states(protocol: Protocol) -> list[str]:
    states = [NEW_STATE, *protocol.step_ids(), HELD_STATE, *protocol.final_states]
    states += [s.id + MISMATCH_SUFFIX for s in protocol.steps if s.blinded_against]
    return states


def _transitions(protocol: Protocol) -> list[dict[str, Any]]:
    """Every move the machine allows; the destination is chosen by the case and passed in."""
    steps = protocol.steps
    walk = [s.id for s in protocol.ordered_steps_from(protocol.initial)]
    active = [*walk] + [s.id + MISMATCH_SUFFIX for s in steps if s.blinded_against]
    out: list[dict[str, Any]] = [
        {"trigger": "do_open", "source": NEW_STATE, "dest": protocol.initial}
    ]

    def to(trigger: str, sources: list[str], dests: Iterable[str]) -> None:
        for dest in dests:
            out.append(
                {
                    "trigger": trigger,
                    "source": sources,
                    "dest": dest,
                    "conditions": [_dest_is(dest)],
                }
            )

    for s in steps:
        sources = [s.id]
        for other in steps:
            if other.blinded_against and s.id in (other.id, other.blinded_against):
                sources.append(other.id + MISMATCH_SUFFIX)
        later = walk[walk.index(s.id) + 1 :] if s.id in walk else []
        dests = [*later, "completed", HELD_STATE, "discontinued"]
        if s.blinded_against:
            dests.append(s.id + MISMATCH_SUFFIX)
        for other in steps:
            if other.blinded_against == s.id:
                dests.append(other.id + MISMATCH_SUFFIX)
        to("do_sign_" + s.id, sources, dict.fromkeys(dests))
    to("do_assess", active, [HELD_STATE, "discontinued"])
    to("do_assess_held", [HELD_STATE], ["discontinued"])
    to("do_resume", [HELD_STATE], walk)
    # A correction reopens the walk, or finds the double check differing again, or fires a rule.
    mismatches = [s.id + MISMATCH_SUFFIX for s in steps if s.blinded_against]
    to("do_correct", active, [*walk, *mismatches, HELD_STATE, "discontinued"])
    for exit_state in ("discontinued", "cancelled", "wasted"):
        to("do_exit_" + exit_state, [*active, HELD_STATE], [exit_state])
    return out


def _dest_is(dest: str) -> Any:
    def check(event: Any) -> bool:
        return bool(event.kwargs.get("dest") == dest)

    check.__name__ = f"dest_{dest}"
    return check


# One transitions Machine per protocol, shared by every case of it. A machine is a few thousand
# objects (a protocol's ~460 transitions, their conditions and callbacks) tied in reference
# cycles; building one per case load made each web request leave that much cyclic garbage, and
# the collector's full passes over it (about 150 ms each, every few seconds under load) were
# the web bench's whole latency tail. Shared, the machine is built once; cases are never
# registered with it (``Machine.models`` would keep every case alive) but passed to each
# event's ``trigger``, which on a machine without a queue reads the machine and writes only
# the case, so threads may share it.
_MACHINES: OrderedDict[int, tuple[Protocol, Machine]] = OrderedDict()
_MACHINES_LOCK = threading.Lock()
_MACHINES_KEPT = 32  # protocols in use at once: versions pinned by running cases, overlays


def machine_for(protocol: Protocol) -> Machine:
    """The shared machine of ``protocol`` (keyed by the object: equal content is not enough
    to be sure, and holding the protocol keeps its id from being reused)."""
    key = id(protocol)
    with _MACHINES_LOCK:
        found = _MACHINES.get(key)
        if found is not None and found[0] is protocol:
            _MACHINES.move_to_end(key)
            return found[1]
    machine = Machine(
        model=None,
        states=_states(protocol),
        transitions=_transitions(protocol),
        initial=NEW_STATE,
        auto_transitions=False,
        send_event=True,
        ignore_invalid_triggers=False,
        model_attribute="state",
    )
    with _MACHINES_LOCK:
        _MACHINES[key] = (protocol, machine)
        _MACHINES.move_to_end(key)
        while len(_MACHINES) > _MACHINES_KEPT:
            _MACHINES.popitem(last=False)
    return machine


class Case:
    """A dose in progress or done, rebuilt from events. Use ``Case.open`` or ``Case.replay``."""

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

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def replay(cls, protocol: Protocol, case_id: str, events: Iterable[Event]) -> Case:
        case = cls(protocol, case_id)
        for event in events:
            case.apply(event)
        return case

    @classmethod
    def open(
        cls,
        protocol: Protocol,
        case_id: str,
        *,
        patient: PatientRef,
        course_id: str,
        dose: NextDose,
        scheduled_at: datetime,
        actor: Signer,
        at: datetime,
        awaiting_resume: Iterable[str] = (),
        ward: str = "unassigned",
        course_start: Mapping[str, Any] | None = None,
    ) -> tuple[Case, Event]:
        case = cls(protocol, case_id)
        # The course's signed start (attestations, any retreatment override) rides in every
        # dose's chained opening event, so each dose's records show it.
        extra = {"course_start": dict(course_start)} if course_start else {}
        event = Event(
            case_id,
            1,
            ev.CASE_OPENED,
            at,
            actor,
            {
                # With an overlay this also names the protocol file's and the overlay's hashes.
                "protocol": protocol.identity(),
                "patient": patient.to_json(),
                "ward": ward,
                "course_id": course_id,
                "cycle": dose.cycle,
                "dose_in_cycle": dose.dose_in_cycle,
                "dose_in_course": dose.dose_in_course,
                "scheduled_at": ev.format_time(scheduled_at),
                "last_given_at": ev.format_time(dose.last_given_at) if dose.last_given_at else None,
                "awaiting_resume": sorted(set(awaiting_resume)),
                **extra,
            },
        )
        case.apply(event)
        return case, event

    # -- what the case knows -----------------------------------------------------------------
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

    # -- live actions: each builds one event and applies it ----------------------------------
    def sign(
        self,
        step_id: str,
        values: Mapping[str, Any],
        signer: Signer,
        at: datetime,
        *,
        corrects: int | None = None,
    ) -> Event:
        step = self._step(step_id)
        typed, outcome, _dest = self._judge_sign(step, values, signer, at, meaning=step.meaning)
        stored = {k: to_stored(self._item(step, k), v) for k, v in typed.items()}
        if corrects is None:
            previous = self.current.get(step_id)
            if previous is not None and self.state.endswith(MISMATCH_SUFFIX):
                corrects = previous.seq
        event = self._event(
            ev.STEP_SIGNED,
            at,
            signer,
            {"values": stored, "outcome": outcome},
            step=step_id,
            meaning=step.meaning,
            corrects=corrects,
        )
        return self.apply(event)

    def assess(self, values: Mapping[str, Any], signer: Signer, at: datetime) -> Event:
        typed, outcome = self._judge_assessment(values, signer, at)
        items = self._finding_items()
        stored = {k: to_stored(items[k], v) for k, v in typed.items()}
        return self.apply(
            self._event(
                ev.ASSESSMENT,
                at,
                signer,
                {"values": stored, "outcome": outcome},
                meaning="performed",
            )
        )

    def resume(self, signer: Signer, at: datetime, reason: str, note: str = "") -> Event:
        return self.apply(self._exit_event(ev.RESUMED, "resume", signer, at, reason, note))

    def discontinue(self, signer: Signer, at: datetime, reason: str, note: str = "") -> Event:
        return self.apply(
            self._exit_event(ev.DISCONTINUED, "discontinue", signer, at, reason, note)
        )

    def cancel(self, signer: Signer, at: datetime, reason: str, note: str = "") -> Event:
        return self.apply(self._exit_event(ev.CANCELLED, "cancel", signer, at, reason, note))

    def waste(self, signer: Signer, at: datetime, reason: str, note: str = "") -> Event:
        return self.apply(self._exit_event(ev.WASTED, "waste", signer, at, reason, note))

    def correct(
        self, target_seq: int, values: Mapping[str, Any], reason: str, signer: Signer, at: datetime
    ) -> Event:
        """A new signed entry that supersedes ``target_seq``: judged like the step it corrects
        (role, separation of duties, items, rules, acknowledgements, the double check's
        comparison), plus who may correct whose entry."""
        target = self._entry_by_seq(target_seq)
        step = self.protocol.step(target.step)
        changes = dict(values)
        _typed, outcome = self._judge_correction(target, changes, reason, signer, strict=True)
        return self.apply(
            self._event(
                ev.CORRECTION,
                at,
                signer,
                {
                    "target_seq": target_seq,
                    "values": changes,
                    "reason": reason,
                    "outcome": outcome,
                },
                step=step.id,
                meaning=step.meaning,
                corrects=target_seq,
            )
        )

    def record_failed_signature(
        self,
        username: str | None,
        reason: str,
        at: datetime,
        step: str | None = None,
        *,
        user_id: str | None = None,
    ) -> Event:
        """Part 11: failed signing attempts are part of the trail (never the password, and
        never what was typed as a user id unless it names an account: it is often a password
        typed into the wrong field). An ended case takes nothing more (its records are signed):
        the security log keeps those."""
        if self.closed:
            raise StepRefused(
                "case_closed", f"This case is {self.state}; nothing more is written into it"
            )
        return self.apply(
            self._event(
                ev.SIGNATURE_FAILED,
                at,
                None,
                {"username": username, "user_id": user_id, "reason": reason},
                step=step,
            )
        )

    # -- replay --------------------------------------------------------------------------------
    def apply(self, event: Event) -> Event:
        """Check then apply one event. Raises before changing anything."""
        if event.case_id != self.case_id:
            raise IntegrityError(f"event for case {event.case_id} applied to {self.case_id}")
        if event.seq != len(self.events) + 1:
            raise IntegrityError(
                f"case {self.case_id}: event {event.seq} out of order "
                f"(expected {len(self.events) + 1})"
            )
        handler = {
            ev.CASE_OPENED: self._apply_open,
            ev.STEP_SIGNED: self._apply_sign,
            ev.ASSESSMENT: self._apply_assessment,
            ev.RESUMED: self._apply_resume,
            ev.DISCONTINUED: self._apply_exit,
            ev.CANCELLED: self._apply_exit,
            ev.WASTED: self._apply_exit,
            ev.CORRECTION: self._apply_correction,
            ev.SIGNATURE_FAILED: self._apply_failed,
        }.get(event.type)
        if handler is None:
            raise IntegrityError(f"unknown event type {event.type!r}")
        handler(event)
        self.events.append(event)
        return event

    # -- handlers ------------------------------------------------------------------------------
    def _apply_open(self, event: Event) -> None:
        if self.state != NEW_STATE:
            raise StepRefused("out_of_order", "this case is already open")
        data = event.data
        proto = data.get("protocol") or {}
        if proto.get("hash") != self.protocol.content_hash:
            raise IntegrityError(
                f"case {self.case_id} was opened under protocol "
                f"{proto.get('version')} ({str(proto.get('hash'))[:12]}), not "
                f"{self.protocol.version} ({self.protocol.content_hash[:12]}); "
                "replay it with the protocol it started with"
            )
        self.patient = PatientRef.from_json(data["patient"])
        self.course_id = str(data["course_id"])
        self.ward = str(data.get("ward") or "unassigned")  # cases opened before wards existed
        self.cycle = int(data["cycle"])
        self.dose_in_cycle = int(data["dose_in_cycle"])
        self.dose_in_course = int(data["dose_in_course"])
        self.scheduled_at = ev.parse_time(str(data["scheduled_at"]))
        last = data.get("last_given_at")
        self.last_given_at = ev.parse_time(str(last)) if last else None
        self.awaiting_resume = [str(r) for r in data.get("awaiting_resume") or []]
        self.course_start = data.get("course_start")
        self.trigger("do_open", dest=self.protocol.initial)

    def _apply_sign(self, event: Event) -> None:
        step = self._step(str(event.step))
        signer = self._actor(event)
        raw = dict(event.data.get("values") or {})
        typed, outcome, dest = self._judge_sign(
            step, raw, signer, event.at, meaning=event.meaning, replay=True
        )
        outcome = self._recorded_outcome(event, outcome)
        entry = Entry(
            event.seq,
            step.id,
            typed,
            signer,
            event.at,
            str(event.meaning),
            event.corrects,
            outcome=outcome,
        )
        previous = self.current.get(step.id)
        if previous is not None:
            previous.superseded_by = event.seq
        self.history.append(entry)
        firings = [Firing.from_json(f) for f in outcome.get("firings", [])]
        stopping = [f for f in firings if f.action == "discontinue" or not self.given]
        if dest in (HELD_STATE, "discontinued"):
            self.current.pop(step.id, None)
            self._record_holds(event, firings, dest)
        else:
            self.current[step.id] = entry
            if firings and not stopping:
                self._record_findings(event, firings)
            if step.id == self.protocol.resume_step and not firings:
                # Values entered and every resume criterion met: the course's holds are cleared.
                if self.awaiting_resume:
                    self.hold_log.append(
                        {
                            "seq": event.seq,
                            "kind": "cleared",
                            "rules": list(self.awaiting_resume),
                            "at": ev.format_time(event.at),
                        }
                    )
                self.awaiting_resume = []
        self.differences = tuple(outcome.get("differences", []))
        self.difference_items = self._differing_items(step) if self.differences else ()
        for w in outcome.get("warnings", []):
            self.flags.append(Flag(w["code"], w["message"], event.seq))
        if dest == "completed":
            self.end = {"state": "completed", "seq": event.seq, "at": ev.format_time(event.at)}
        self.trigger("do_sign_" + step.id, dest=dest)

    def _apply_assessment(self, event: Event) -> None:
        signer = self._actor(event)
        typed, outcome = self._judge_assessment(
            dict(event.data.get("values") or {}), signer, event.at, replay=True
        )
        outcome = self._recorded_outcome(event, outcome)
        self.assessments.append(
            {
                "seq": event.seq,
                "at": ev.format_time(event.at),
                "by": signer.to_json(),
                "values": {k: to_stored(self._finding_items()[k], v) for k, v in typed.items()},
            }
        )
        firings = [Firing.from_json(f) for f in outcome.get("firings", [])]
        dest = outcome.get("dest")
        if dest in (HELD_STATE, "discontinued"):
            self._record_holds(event, firings, str(dest))
            self.trigger("do_assess_held" if self.state == HELD_STATE else "do_assess", dest=dest)
        elif firings:
            self._record_findings(event, firings)

    def _apply_resume(self, event: Event) -> None:
        signer = self._actor(event)
        self._judge_exit("resume", signer, event)
        if self.state != HELD_STATE:
            raise StepRefused("not_held", "Only a held dose can be resumed")
        self.awaiting_resume = sorted(
            {*self.awaiting_resume, *(f.rule_id for f in self.active_holds)}
        )
        self.hold_log.append(
            {
                "seq": event.seq,
                "kind": "resumed",
                "rules": [f.rule_id for f in self.active_holds],
                "by": signer.to_json(),
                "at": ev.format_time(event.at),
                "reason": event.data.get("reason"),
                "note": event.data.get("note", ""),
            }
        )
        self.active_holds = []
        # Fresh hold checks are always needed after a hold: values from before it are stale.
        resume_step = self.protocol.resume_step
        if resume_step in self.current:
            self.current[resume_step].superseded_by = event.seq
            del self.current[resume_step]
        self.trigger("do_resume", dest=self._first_open())

    def _apply_exit(self, event: Event) -> None:
        name = {ev.DISCONTINUED: "discontinue", ev.CANCELLED: "cancel", ev.WASTED: "waste"}[
            event.type
        ]
        signer = self._actor(event)
        self._judge_exit(name, signer, event)
        if self.closed:
            raise StepRefused("case_closed", f"This case is already {self.state}")
        if name == "cancel" and self.bag_prepared and not self.given:
            raise StepRefused(
                "bag_prepared",
                "A bag was prepared for this dose: record it as "
                "wasted (with the reason) instead of cancelling",
            )
        if name == "waste" and not self.bag_prepared:
            raise StepRefused("no_bag", "Nothing was prepared for this dose: cancel it instead")
        dest = {"discontinue": "discontinued", "cancel": "cancelled", "waste": "wasted"}[name]
        self.end = {
            "state": dest,
            "seq": event.seq,
            "at": ev.format_time(event.at),
            "reason": event.data.get("reason"),
            "note": event.data.get("note", ""),
            "by": signer.to_json(),
        }
        self.trigger("do_exit_" + dest, dest=dest)

    def _apply_correction(self, event: Event) -> None:
        signer = self._actor(event)
        target = self._entry_by_seq(int(event.data.get("target_seq", 0)))
        step = self.protocol.step(target.step)
        changes = dict(event.data.get("values") or {})
        reason = str(event.data.get("reason") or "")
        typed, outcome = self._judge_correction(target, changes, reason, signer, strict=False)
        if "outcome" in event.data:  # corrections recorded before outcomes were kept have none
            outcome = self._recorded_outcome(event, outcome)
        old_plan = self.plan
        entry = Entry(
            event.seq,
            step.id,
            typed,
            signer,
            event.at,
            str(event.meaning),
            target.seq,
            outcome=outcome,
        )
        target.superseded_by = event.seq
        self.history.append(entry)
        changed = ", ".join(
            f"{it.label}: {display(it, target.values.get(k))} -> {display(it, typed.get(k))}"
            for k in changes
            for it in (step.item(k) or _ITEM,)
        )
        self.flags.append(
            Flag("corrected", f"{step.title} corrected ({changed}): {reason.strip()}", event.seq)
        )
        was_current = self.current.get(step.id) is target
        if was_current:
            self.current[step.id] = entry
        new_plan = self.plan
        if old_plan is not None and new_plan is not None and old_plan != new_plan and self.given:
            self.flags.append(
                Flag(
                    "dose_given_from_corrected_value",
                    f"The dose given was prepared from the values before this correction: "
                    f"{display(_ITEM, old_plan.dose_iu)} IU then, "
                    f"{display(_ITEM, new_plan.dose_iu)} "
                    "IU now. Review with the prescriber.",
                    event.seq,
                )
            )
        for w in outcome.get("warnings", []):
            self.flags.append(Flag(w["code"], w["message"], event.seq))
        firings = [Firing.from_json(f) for f in outcome.get("firings", [])]
        differences = list(outcome.get("differences", []))
        # Once the infusion has started nothing is reopened or held: the dose was given, and
        # the flags ask for review instead.
        if self.closed or self.state == HELD_STATE or not was_current or self.given:
            if firings and was_current:
                self._record_findings(event, firings)
            if differences:
                self.flags.append(
                    Flag(
                        "double_check_differs_after_correction",
                        "After this correction the two double checks differ: "
                        + "; ".join(differences),
                        event.seq,
                    )
                )
            return
        if any(f.action == "discontinue" for f in firings) or firings:
            dest = "discontinued" if any(f.action == "discontinue" for f in firings) else HELD_STATE
            self.current.pop(step.id, None)
            self._record_holds(event, firings, dest)
            self.trigger("do_correct", dest=dest)
            return
        # Everything signed after the corrected step was done on the old values: reopen it. The
        # other side of a blinded double check was not (it never saw these values): it stays,
        # and the two are compared again below.
        pair = self._blinded_pair(step)
        paired = {p.id for p in pair} if pair else set()
        walk = [s.id for s in self.walk_steps()]
        later = walk[walk.index(step.id) + 1 :] if step.id in walk else []
        redone = [s for s in later if s in self.current and s not in paired]
        for s in redone:
            self.current[s].superseded_by = event.seq
            del self.current[s]
        if redone:
            self.flags.append(
                Flag(
                    "steps_reopened",
                    "Signed again after the correction: "
                    + ", ".join(self.protocol.step(s).title for s in redone),
                    event.seq,
                )
            )
        if pair is not None and all(p.id in self.current for p in pair):
            self.differences = tuple(differences)
            self.difference_items = self._differing_items(step) if differences else ()
            if differences:
                self.trigger("do_correct", dest=pair[1].id + MISMATCH_SUFFIX)
                return
        self.trigger("do_correct", dest=self._first_open())

    def _apply_failed(self, event: Event) -> None:
        self.failed_attempts += 1

    # -- judging -------------------------------------------------------------------------------
    def _judge_sign(
        self,
        step: Step,
        values: Mapping[str, Any],
        signer: Signer,
        at: datetime,
        *,
        meaning: str | None,
        replay: bool = False,
    ) -> tuple[dict[str, Value], dict[str, Any], str]:
        if step.id not in self.allowed_steps():
            raise self._out_of_order(step)
        self._check_signer(step, signer, meaning)
        # Time limits first: an expired bag or a dose too soon is the news that matters.
        if step.within_beyond_use:
            self._check_beyond_use(at)
        if step.starts_infusion:
            check_interval(self.protocol, self.last_given_at, at)
        typed, warnings, firings = self._judge_values(step, values, signer, at, strict=not replay)
        differences: list[str] = []
        dest: str
        if any(f.action == "discontinue" for f in firings):
            dest = "discontinued"
        elif firings and not self.given:
            dest = HELD_STATE
        else:
            pair = self._blinded_pair(step)
            if pair is not None:
                differences = self._compare_pair(pair, step, typed)
            if differences and pair is not None:
                dest = pair[1].id + MISMATCH_SUFFIX
            else:
                dest = self._first_open(signing=step.id)
        return typed, _outcome(firings, differences, warnings), dest

    def _check_signer(self, step: Step, signer: Signer, meaning: str | None) -> None:
        if signer.role not in step.roles:
            raise StepRefused(
                "role_not_allowed",
                f"'{step.title}' must be signed by "
                f"{' or '.join(step.roles)}; {signer.name} signed as {signer.role}",
            )
        if meaning != step.meaning:
            raise StepRefused(
                "wrong_meaning",
                f"'{step.title}' is signed with the meaning '{step.meaning}', not '{meaning}'",
            )
        self._check_separation(step, signer)

    def _judge_values(
        self,
        step: Step,
        values: Mapping[str, Any],
        signer: Signer,
        at: datetime,
        *,
        strict: bool,
    ) -> tuple[dict[str, Value], list[dict[str, str]], tuple[Firing, ...]]:
        """What a step's values say, the same for a new entry and a correction: the typed
        values (or every problem at once), the warnings, the rules that fire. ``strict`` adds
        the checks introduced after entries may have been stored without them (replay accepts
        what the engine of the day accepted)."""
        needed = self._resume_items(step) if strict else {}
        typed = self._check_items(step, values, at, compare_only=bool(step.compare), needed=needed)
        warnings: list[dict[str, str]] = []
        if step.id == self.protocol.initial:
            warnings = [w.to_json() for w in self._plan_for(typed, at).warnings]
        if step.stops_infusion:
            warnings += self._duration_flags(at)
        firings: tuple[Firing, ...] = ()
        if step.evaluates_rules:
            firings = evaluate(
                self.protocol,
                typed,
                # Resume criteria are judged on the full pre-dose checks only.
                self.awaiting_resume if step.id == self.protocol.resume_step else (),
            )
            if step.id == self.protocol.eligibility.step:
                warnings += self._eligibility_flags(typed, at)
        self._check_acknowledgements(step, typed, warnings, signer)
        return typed, warnings, firings

    def _judge_correction(
        self,
        target: Entry,
        changes: Mapping[str, Any],
        reason: str,
        signer: Signer,
        *,
        strict: bool,
    ) -> tuple[dict[str, Value], dict[str, Any]]:
        step = self.protocol.step(target.step)
        if strict and self.closed:
            raise StepRefused(
                "case_closed",
                f"This case is {self.state} and its records are signed; it takes no correction. "
                "Report the error to the prescriber and the pharmacy.",
            )
        if target.superseded_by is not None:
            raise StepRefused(
                "already_corrected",
                f"Entry {target.seq} was already superseded "
                f"by event {target.superseded_by}; correct the newer entry",
            )
        if not reason.strip():
            raise StepRefused("invalid_item", "Reason: a correction needs a reason", field="reason")
        if signer.role not in step.roles:
            raise StepRefused(
                "role_not_allowed",
                f"A {signer.role} may not correct "
                f"'{step.title}' (allowed: {', '.join(step.roles)})",
            )
        if strict:
            self._check_corrector(step, target, signer)
        if not changes:
            raise StepRefused(
                "invalid_item",
                "values: a correction must change at least one value",
                field="values",
            )
        merged: dict[str, Any] = {
            k: to_stored(self._item(step, k), v) for k, v in target.values.items()
        }
        merged.update(changes)
        # Judge the corrected values as of the original entry's time (expiry, not-future,
        # weight age, infusion length).
        typed, warnings, firings = self._judge_values(
            step, merged, signer, target.at, strict=strict
        )
        differences: list[str] = []
        pair = self._blinded_pair(step)
        if pair is not None and all(p.id in self.current for p in pair):
            differences = self._compare_pair(pair, step, typed)
        return typed, _outcome(firings, differences, warnings)

    def _check_corrector(self, step: Step, target: Entry, signer: Signer) -> None:
        """Who may correct whose entry: separation of duties holds for corrections too, and a
        blinded double check is only ever corrected by the checker who made it."""
        if step.compare and signer.user_id != target.signer.user_id:
            raise StepRefused(
                "same_person" if self._signed_counterpart(step, signer) else "not_your_entry",
                f"Only {target.signer.name} may correct their own '{step.title}' entry; "
                f"{signer.name} may not (an independent double check is never corrected by "
                "anyone else; a difference is resolved by re-entry)",
            )
        self._check_separation(step, signer)

    def _signed_counterpart(self, step: Step, signer: Signer) -> bool:
        pair = self._blinded_pair(step)
        if pair is None:
            return False
        return any(
            p.id != step.id
            and p.id in self.current
            and self.current[p.id].signer.user_id == signer.user_id
            for p in pair
        )

    def _resume_items(self, step: Step) -> dict[str, str]:
        """Items the hold checks need when a held rule must meet its resume criterion: each is
        required, so a blank is named instead of the dose being held again in silence."""
        if step.id != self.protocol.resume_step or not self.awaiting_resume:
            return {}
        out: dict[str, str] = {}
        for rule_id in self.awaiting_resume:
            try:
                rule = self.protocol.rule(rule_id)
            except KeyError:
                continue
            criterion = rule.resume_when or rule.when
            for item_id in sorted(criterion.items()):
                if step.item(item_id) is not None:
                    out.setdefault(item_id, rule.text)
        return out

    def _check_acknowledgements(
        self,
        step: Step,
        typed: Mapping[str, Value],
        warnings: list[dict[str, str]],
        signer: Signer,
    ) -> None:
        raised = {w["code"]: w["message"] for w in warnings}
        for ack in self.protocol.acknowledgements:
            if ack.step != step.id or ack.warning not in raised:
                continue
            item = self._item(step, ack.item)
            why = raised[ack.warning]
            mark = "" if ack.confirmed else " [UNCONFIRMED]"
            if ack.refuse:
                raise StepRefused(
                    ack.warning,
                    f"{why}. This site does not accept it (hard stop) [source: {ack.source}]{mark}",
                )
            roles = " or ".join(self._role_title(r) for r in ack.roles)
            if ack.item not in typed:
                raise StepRefused(
                    "acknowledgement_needed",
                    f"{item.label}: required. {why}; a {roles} signs this step with the "
                    f"reason [source: {ack.source}]{mark}",
                    field=ack.item,
                )
            if signer.role not in ack.roles:
                raise StepRefused(
                    "role_not_allowed",
                    f"{why}: only a {roles} may acknowledge it ({item.label}); "
                    f"{signer.name} signed as {self._role_title(signer.role)}",
                )

    def _role_title(self, role: str) -> str:
        found = self.protocol.roles.get(role)
        return found.title.lower() if found else role

    def _recorded_outcome(self, event: Event, computed: dict[str, Any]) -> dict[str, Any]:
        """Replay re-judges every entry. What must agree with the recorded outcome is the
        decision (rules fired, warnings raised, differences found), not the wording of the
        messages, which may read better in a later version; the recorded words are kept, as
        they were shown and signed."""
        recorded = event.data.get("outcome")
        if recorded is None:
            return computed
        if _decision(recorded) != _decision(computed):
            raise IntegrityError(
                f"case {self.case_id} event {event.seq}: the recorded outcome "
                "differs from what this protocol computes"
            )
        return dict(recorded)

    def _judge_assessment(
        self, values: Mapping[str, Any], signer: Signer, at: datetime, replay: bool = False
    ) -> tuple[dict[str, Value], dict[str, Any]]:
        del replay
        if self.closed or self.state == NEW_STATE:
            raise StepRefused(
                "case_closed",
                f"This case is {self.state}; record findings on the patient's current dose",
            )
        if signer.role not in ("nurse", "prescriber", "pharmacist"):
            raise StepRefused(
                "role_not_allowed", f"A {signer.role} may not record a clinical assessment"
            )
        items = self._finding_items()
        unknown = sorted(set(values) - set(items))
        if unknown:
            raise StepRefused(
                "unknown_item",
                f"{unknown[0]}: not a finding this protocol "
                f"knows (allowed: {', '.join(sorted(items))})",
                field=unknown[0],
            )
        if not values:
            raise StepRefused(
                "invalid_item", "values: an assessment needs at least one finding", field="values"
            )
        typed = {k: parse_value(items[k], v, at) for k, v in values.items()}
        firings = evaluate(self.protocol, typed)
        outcome: dict[str, Any] = {}
        if firings:
            outcome["firings"] = [f.to_json() for f in firings]
            if any(f.action == "discontinue" for f in firings):
                outcome["dest"] = "discontinued"
            elif not self.given and self.state != HELD_STATE:
                outcome["dest"] = HELD_STATE
        return typed, outcome

    def _judge_exit(self, name: str, signer: Signer, event: Event) -> None:
        exit_spec = self.protocol.side_exits[name]
        if signer.role not in exit_spec.roles:
            raise StepRefused(
                "role_not_allowed",
                f"Only {' or '.join(exit_spec.roles)} may "
                f"{name} a dose; {signer.name} is signed in as {signer.role}",
            )
        if event.meaning != exit_spec.meaning:
            raise StepRefused(
                "wrong_meaning", f"{name} is signed with the meaning '{exit_spec.meaning}'"
            )
        reason = event.data.get("reason")
        allowed = [r.id for r in exit_spec.reasons]
        if reason not in allowed:
            raise StepRefused(
                "invalid_item",
                f"reason: '{reason}' is not a reason to {name} (allowed: {', '.join(allowed)})",
                field="reason",
            )
        note = event.data.get("note", "")
        if reason == "other" and not str(note).strip():
            raise StepRefused("invalid_item", "note: 'other' needs a note saying why", field="note")
        if name == "resume" and self.state != HELD_STATE:
            raise StepRefused(
                "not_held", f"Only a held dose can be resumed; this one is {self.state}"
            )

    def _check_items(
        self,
        step: Step,
        values: Mapping[str, Any],
        at: datetime,
        *,
        compare_only: bool,
        needed: Mapping[str, str] | None = None,
    ) -> dict[str, Value]:
        """Typed values, or one refusal that lists every problem at once (each with the item's
        label, the allowed range and the unit)."""
        values = complete_from_scans(self.protocol, step, values, at)
        known = {it.id for it in step.items}
        unknown = sorted(set(values) - known)
        if unknown:
            raise StepRefused(
                "unknown_item",
                f"{unknown[0]}: '{step.title}' has no such item "
                f"(items: {', '.join(sorted(known))})",
                field=unknown[0],
            )
        problems: list[StepRefused] = []
        typed: dict[str, Value] = {}
        for it in step.items:
            raw = values.get(it.id)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                continue
            try:
                typed[it.id] = parse_value(it, raw, at)
            except StepRefused as exc:
                problems.append(exc)
        for it in step.items:
            if it.id in typed or any(p.field == it.id for p in problems):
                continue
            if it.required or (it.required_if is not None and test(it.required_if, typed) is True):
                problems.append(StepRefused("missing_item", f"{it.label}: required", field=it.id))
            elif needed and it.id in needed:
                problems.append(
                    StepRefused(
                        "missing_item",
                        f"{it.label}: required to judge whether this hold may end "
                        f"({needed[it.id]})",
                        field=it.id,
                    )
                )
        for it in step.items:
            if it.expect is None or it.id not in typed:
                continue
            if compare_only and it.id in step.compare:
                continue  # a blinded double check records differences instead of refusing
            expected = self._expected(it.expect)
            if expected is None:
                raise StepRefused(
                    "not_ready", f"{it.label}: {it.expect} is not known yet", field=it.id
                )
            if not matches_expected(it, typed[it.id], expected):
                # At an independent check the expected value is never shown (on any path, the
                # command line included): the signer reads it again at the source.
                shown = (
                    "does not match this patient's record; read it again at the source (the "
                    "wristband, the patient, the bag label) and re-enter it"
                    if self.protocol.unprimed(step)
                    else f"entered {display(it, typed[it.id])}, expected {display(it, expected)}"
                )
                problems.append(StepRefused("does_not_match", f"{it.label}: {shown}", field=it.id))
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise StepRefused(
                problems[0].reason,
                f"'{step.title}' was not signed; {len(problems)} entries need attention: "
                + "; ".join(p.message for p in problems),
                field=problems[0].field,
                details=[p.message for p in problems],
                fields=[str(p.field) for p in problems],
            )
        check_scanned_entries(self.protocol, step, typed, at)
        return typed

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
            return self.protocol.drug
        return None

    def _check_separation(self, step: Step, signer: Signer) -> None:
        for ref in step.verifies:
            entry = self.current.get(ref)
            if entry is not None and entry.signer.user_id == signer.user_id:
                raise StepRefused(
                    "same_person",
                    f"{signer.name} signed '{self.protocol.step(ref).title}'"
                    f" and cannot also sign '{step.title}': it must be someone else",
                )
        # The first checker re-entering during a mismatch must still differ from the second.
        for other in self.protocol.steps:
            if step.id in other.verifies:
                entry = self.current.get(other.id)
                if entry is not None and entry.signer.user_id == signer.user_id:
                    raise StepRefused(
                        "same_person",
                        f"{signer.name} signed '{other.title}' and cannot also sign '{step.title}'",
                    )

    def _check_beyond_use(self, at: datetime) -> None:
        bud = self.beyond_use_at
        if bud is None:
            raise StepRefused("not_ready", "No preparation time is recorded for this bag")
        from datetime import timedelta

        end = at + timedelta(minutes=float(self.protocol.dosing.infusion_duration.value))
        if end > bud:
            raise StepRefused(
                "beyond_use_time_passed",
                "The bag's beyond-use time "
                f"({bud.strftime('%Y-%m-%d %H:%M')} UTC) would pass before the "
                "infusion ends: it cannot be hung. Record it as wasted "
                "(beyond_use_time_passed) and prepare a new bag.",
            )

    def _duration_flags(self, at: datetime) -> list[dict[str, str]]:
        started = self.given_at
        if started is None:
            return []
        minutes = round((at - started).total_seconds() / 60)
        planned = self.protocol.dosing.infusion_duration.value
        if minutes != planned:
            return [
                {
                    "code": "infusion_duration_deviation",
                    "message": f"Infusion ran {minutes} min; the protocol says {planned} min",
                }
            ]
        return []

    def _eligibility_flags(self, typed: Mapping[str, Value], at: datetime) -> list[dict[str, str]]:
        from datetime import timedelta

        elig = self.protocol.eligibility
        limit = timedelta(days=float(elig.max_age.value))
        out: list[dict[str, str]] = []
        for t in elig.tests:
            when = typed.get(t.date_item)
            if isinstance(when, date) and at.date() - when > limit:
                mark = (
                    "" if elig.max_age.confirmed else " (window UNCONFIRMED: set by local policy)"
                )
                out.append(
                    {
                        "code": "eligibility_test_old",
                        "message": f"{t.title} dated {when.isoformat()} is older than "
                        f"{elig.max_age.value} days{mark}",
                    }
                )
        return out

    def _blinded_pair(self, step: Step) -> tuple[Step, Step] | None:
        if step.blinded_against:
            return self.protocol.step(step.blinded_against), step
        for other in self.protocol.steps:
            if other.blinded_against == step.id and other.id in self.current:
                return step, other
        return None

    def _compare_pair(
        self, pair: tuple[Step, Step], signing: Step, typed: Mapping[str, Value]
    ) -> list[str]:
        first, second = pair
        a_vals = (
            typed
            if signing.id == first.id
            else (self.current[first.id].values if first.id in self.current else {})
        )
        b_vals = (
            typed
            if signing.id == second.id
            else (self.current[second.id].values if second.id in self.current else {})
        )
        diffs: list[str] = []
        for item_id in second.compare:
            item = second.item(item_id)
            assert item is not None
            a, b = a_vals.get(item_id), b_vals.get(item_id)
            if self._item_differs(second, item_id, a, b):
                expected = self._expected(item.expect) if item.expect else None
                exp = f", expected {display(item, expected)}" if expected is not None else ""
                diffs.append(
                    f"{item.label}: first checker {display(item, a)}, second checker "
                    f"{display(item, b)}{exp}"
                )
        return diffs

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

    # -- helpers -------------------------------------------------------------------------------
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
            values.get("dose_iu_per_kg"),
            weight_measured_at=measured if isinstance(measured, datetime) else None,
            now=at,
        )

    def _record_holds(self, event: Event, firings: list[Firing], dest: str) -> None:
        stop = (
            [f for f in firings if f.action == "discontinue"] if dest == "discontinued" else firings
        )
        if dest == HELD_STATE:
            self.active_holds = list(firings)
        self.hold_log.append(
            {
                "seq": event.seq,
                "kind": "discontinued" if dest == "discontinued" else "held",
                "at": ev.format_time(event.at),
                "by": event.actor.to_json() if event.actor else None,
                "firings": [f.to_json() for f in stop],
            }
        )
        if dest == "discontinued":
            self.end = {
                "state": "discontinued",
                "seq": event.seq,
                "at": ev.format_time(event.at),
                "reason": "rule",
                "note": "; ".join(f.describe() for f in stop),
                "by": event.actor.to_json() if event.actor else None,
            }

    def _record_findings(self, event: Event, firings: list[Firing]) -> None:
        self.hold_log.append(
            {
                "seq": event.seq,
                "kind": "finding_after_dose",
                "at": ev.format_time(event.at),
                "firings": [f.to_json() for f in firings],
            }
        )
        for f in firings:
            self.flags.append(
                Flag(
                    "finding_after_dose",
                    "After the dose: " + f.describe() + " Review before the next dose.",
                    event.seq,
                )
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

    def _out_of_order(self, step: Step) -> StepRefused:
        if self.state == HELD_STATE:
            rules = "; ".join(f.describe() for f in self.active_holds) or "a finding"
            return StepRefused(
                "case_held",
                f"This dose is held ({rules}). Nothing can be "
                "prepared or started until a prescriber documents a decision.",
            )
        if self.closed:
            return StepRefused(
                "case_closed", f"This case is {self.state}; nothing more can be signed on it"
            )
        allowed = self.allowed_steps()
        if self.state.endswith(MISMATCH_SUFFIX):
            labels = self._difference_labels()
            return StepRefused(
                "double_check_mismatch",
                "The independent double check does not match on: "
                + ", ".join(labels)
                + ". The infusion cannot start until a checker finds the value again from the "
                "label, the wristband and the order, and re-enters it.",
                details=labels,
            )
        return StepRefused(
            "out_of_order",
            f"'{step.title}' cannot be signed now: the case is at "
            f"'{', '.join(allowed) or self.state}'",
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


def refuse_machine_error(exc: MachineError) -> StepRefused:
    return StepRefused("out_of_order", str(exc.value))
