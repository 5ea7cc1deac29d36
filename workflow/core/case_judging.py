"""Judging an action before it becomes an event, and again when an event is replayed: the
typed values, the rules that fire, the warnings, where the case goes next.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from workflow.core.case_checks import CaseChecks
from workflow.core.case_machine import MISMATCH_SUFFIX, NEW_STATE
from workflow.core.case_state import Entry, _decision, _outcome
from workflow.core.errors import IntegrityError, StepRefused
from workflow.core.events import Event, Signer
from workflow.core.items import (
    Value,
    parse_value,
    to_stored,
)
from workflow.core.order_notice import refuse_if_discontinued
from workflow.core.protocol.model import HELD_STATE, Step
from workflow.core.rules import Firing, evaluate
from workflow.core.schedule import check_interval


class CaseJudging(CaseChecks):
    """Judges signatures, corrections, assessments and side exits (pure: changes nothing)."""

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
        refuse_if_discontinued(self)  # a bag whose order was stopped is wasted, never given
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
            roles = " or ".join(self._role_title(r) for r in exit_spec.roles)
            raise StepRefused(
                "role_not_allowed",
                f"Only a {roles} may {name} a dose; {signer.name} is signed in as "
                f"{self._role_title(signer.role)}",
            )
        if event.meaning != exit_spec.meaning:
            raise StepRefused(
                "wrong_meaning", f"{name} is signed with the meaning '{exit_spec.meaning}'"
            )
        reason = event.data.get("reason")
        allowed = [r.id for r in exit_spec.reasons]
        if not reason:
            # Nothing is pre-selected on any screen: the person must choose, and say which.
            labels = "; ".join(r.label for r in exit_spec.reasons)
            raise StepRefused(
                "invalid_item", f"reason: choose a reason to {name} ({labels})", field="reason"
            )
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
