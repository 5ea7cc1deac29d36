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

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from workflow.core import events as ev
from workflow.core.case_copy import copied
from workflow.core.case_machine import MISMATCH_SUFFIX, NEW_STATE, machine_for
from workflow.core.case_replay import CaseReplay
from workflow.core.case_state import Entry, Flag, PatientRef
from workflow.core.errors import StepRefused
from workflow.core.events import Event, Signer
from workflow.core.gravimetric import check_balance_readings
from workflow.core.items import (
    to_stored,
)
from workflow.core.photos import PhotoRef, check_acknowledged, check_photos
from workflow.core.protocol.model import Protocol
from workflow.core.rejection import REJECT_MEANING, judge_rejection
from workflow.core.schedule import NextDose


class Case(CaseReplay):
    """A dose in progress or done, rebuilt from events. Use ``Case.open`` or ``Case.replay``.

    Its layers, one job each: ``CaseState`` (what it knows), ``CaseChecks`` (the checks an entry
    must pass), ``CaseJudging`` (judging an action), ``CaseReplay`` (applying events); this
    class holds the live actions, each of which builds one event and applies it.
    """

    @classmethod
    def replay(cls, protocol: Protocol, case_id: str, events: Iterable[Event]) -> Case:
        case = cls(protocol, case_id)
        for event in events:
            case.apply(event)
        return case

    def copy(self, events: Sequence[Event] | None = None) -> Case:
        """This case's state in a new case that shares nothing mutable with it (case_copy.py):
        only the protocol and its machine are shared (no case changes them). ``events``: the
        same events decoded afresh by the caller, taken as the copy's log instead of copies of
        this case's; equal to them, position for position, on the caller's word (the service
        compares their chain hashes)."""
        if events is not None and len(events) != len(self.events):
            raise ValueError(f"{len(events)} events given for a case of {len(self.events)}")
        twin = object.__new__(type(self))
        memo: dict[int, Any] = {}
        for name, value in vars(self).items():
            if name in ("protocol", "_machine"):
                setattr(twin, name, value)
            elif name == "events" and events is not None:
                twin.events = list(events)
            else:
                setattr(twin, name, copied(value, memo))
        return twin

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

    def sign(
        self,
        step_id: str,
        values: Mapping[str, Any],
        signer: Signer,
        at: datetime,
        *,
        corrects: int | None = None,
        photos: Mapping[str, PhotoRef] | None = None,
        acknowledge_barcodes: bool = False,
        balance: Mapping[str, Mapping[str, str]] | None = None,
        sitting: Sequence[str] = (),
    ) -> Event:
        """Sign a step; ``balance``: the balance's replies for weights read from it, by item
        (kept in the event for the record: core/gravimetric.check_balance_readings);
        ``sitting``: the steps signed together with this one by one signature
        (core/sittings.py), kept in the event so the record and the audit trail say so."""
        step = self._step(step_id)
        acknowledged = check_acknowledged(self, step, acknowledge_barcodes)
        typed, outcome, _dest = self._judge_sign(step, values, signer, at, meaning=step.meaning)
        stored = {k: to_stored(self._item(step, k), v) for k, v in typed.items()}
        data: dict[str, Any] = {"values": stored, "outcome": outcome}
        taken = check_photos(step, photos or {}, typed)
        if taken:  # absent, not empty, when none: events from before photos hash the same
            data["photos"] = taken
        if acknowledged:
            data["acknowledged_barcodes"] = acknowledged
        if balance:  # absent when none, like photos
            data["balance_readings"] = check_balance_readings(self.protocol, step, typed, balance)
        if sitting:  # absent when signed alone, like photos
            data["sitting"] = list(sitting)
        if corrects is None:
            previous = self.current.get(step_id)
            if previous is not None and self.state.endswith(MISMATCH_SUFFIX):
                corrects = previous.seq
        event = self._event(
            ev.STEP_SIGNED,
            at,
            signer,
            data,
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

    def order_notice(
        self, action: str, data: Mapping[str, Any], signer: Signer, at: datetime
    ) -> Event:
        """The hospital's order tells the dose a new due time, or that it was discontinued
        after the bag was made (order_notice.py), signed as the order's signer."""
        body = {**dict(data), "action": action}
        order_step = self.protocol.step(self.protocol.initial)
        return self.apply(
            self._event(ev.ORDER_NOTICE, at, signer, body, meaning=order_step.meaning)
        )

    def reject(self, step_id: str, reason: str, signer: Signer, at: datetime) -> Event:
        """The verifier sends ``step_id`` back to be redone, with the reason (rejection.py)."""
        judge_rejection(self, step_id, reason, signer)
        verifier = self.next_step()
        return self.apply(
            self._event(
                ev.STEP_REJECTED,
                at,
                signer,
                {"rejected_step": step_id, "reason": reason.strip()},
                step=verifier.id if verifier else None,
                meaning=REJECT_MEANING,
            )
        )

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


__all__ = ["MISMATCH_SUFFIX", "NEW_STATE", "Case", "Entry", "Flag", "PatientRef", "machine_for"]
