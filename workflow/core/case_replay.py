"""Applying events: one ``apply`` for live actions and replay alike. It checks everything
before it changes anything, so a refused event leaves the case untouched.
"""

from __future__ import annotations

from typing import Any

from workflow.core import events as ev
from workflow.core.case_judging import CaseJudging
from workflow.core.case_machine import MISMATCH_SUFFIX, NEW_STATE
from workflow.core.case_state import _ITEM, Entry, Flag, PatientRef
from workflow.core.dosing import DosePlan
from workflow.core.errors import IntegrityError, StepRefused
from workflow.core.events import Event
from workflow.core.gravimetric import check_balance_readings
from workflow.core.items import (
    display,
    to_stored,
)
from workflow.core.order_notice import apply_notice, judge_notice
from workflow.core.protocol.model import HELD_STATE, Step
from workflow.core.rejection import judge_rejection
from workflow.core.rules import Firing


class CaseReplay(CaseJudging):
    """Applies events to the case (the same path for a live action and a replay)."""

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
            ev.STEP_REJECTED: self._apply_reject,
            ev.ORDER_NOTICE: self._apply_notice,
        }.get(event.type)
        if handler is None:
            raise IntegrityError(f"unknown event type {event.type!r}")
        handler(event)
        self.events.append(event)
        return event

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
        readings = event.data.get("balance_readings")
        if readings:  # the balance's replies must still be the weights signed
            check_balance_readings(self.protocol, step, typed, readings)
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

    def _apply_notice(self, event: Event) -> None:
        judge_notice(self, event.data)
        apply_notice(self, event.data, event.at)

    def _apply_reject(self, event: Event) -> None:
        rejected = str(event.data.get("rejected_step"))
        signer = self._actor(event)
        superseded = judge_rejection(self, rejected, str(event.data.get("reason", "")), signer)
        for sid in superseded:
            self.current.pop(sid).superseded_by = event.seq
        self.trigger("do_reject", dest=rejected)

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
        self._flag_corrected_dose(event, old_plan)
        for w in outcome.get("warnings", []):
            self.flags.append(Flag(w["code"], w["message"], event.seq))
        self._move_after_correction(event, step, outcome, was_current)

    def _flag_corrected_dose(self, event: Event, old_plan: DosePlan | None) -> None:
        new_plan = self.plan
        if old_plan is None or new_plan is None or old_plan == new_plan or not self.given:
            return
        self.flags.append(
            Flag(
                "dose_given_from_corrected_value",
                f"The dose given was prepared from the values before this correction: "
                f"{display(_ITEM, old_plan.dose_iu)} IU then, {display(_ITEM, new_plan.dose_iu)} "
                "IU now. Review with the prescriber.",
                event.seq,
            )
        )

    def _move_after_correction(
        self, event: Event, step: Step, outcome: dict[str, Any], was_current: bool
    ) -> None:
        """Where a correction takes the case: held or discontinued by a rule it fires, back to
        the double check when the two checks now differ, or back to the first step whose work
        was done on the old values."""
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
        if firings:
            dest = "discontinued" if any(f.action == "discontinue" for f in firings) else HELD_STATE
            self.current.pop(step.id, None)
            self._record_holds(event, firings, dest)
            self.trigger("do_correct", dest=dest)
            return
        pair = self._blinded_pair(step)
        self._reopen_after(event, step, {p.id for p in pair} if pair else set())
        if pair is not None and all(p.id in self.current for p in pair):
            self.differences = tuple(differences)
            self.difference_items = self._differing_items(step) if differences else ()
            if differences:
                self.trigger("do_correct", dest=pair[1].id + MISMATCH_SUFFIX)
                return
        self.trigger("do_correct", dest=self._first_open())

    def _reopen_after(self, event: Event, step: Step, keep: set[str]) -> None:
        """Everything signed after the corrected step was done on the old values: reopen it.
        The other side of a blinded double check was not (it never saw these values): it is
        kept, and the two are compared again."""
        walk = [s.id for s in self.walk_steps()]
        later = walk[walk.index(step.id) + 1 :] if step.id in walk else []
        redone = [s for s in later if s in self.current and s not in keep]
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

    def _apply_failed(self, event: Event) -> None:
        self.failed_attempts += 1

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
