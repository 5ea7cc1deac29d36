"""The checks one entry must pass: who signs, the items and their ranges, separation of duties,
acknowledgements, the beyond-use time, the double check's comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from workflow.core.bag_check import check_bag_entry, complete_from_bag
from workflow.core.case_state import CaseState, Entry
from workflow.core.errors import StepRefused, raise_all
from workflow.core.events import Signer
from workflow.core.gravimetric import check_weighings
from workflow.core.gs1 import check_scanned_entries, complete_from_scans
from workflow.core.items import (
    Value,
    display,
    matches_expected,
    parse_entries,
)
from workflow.core.protocol.model import Step
from workflow.core.rules import test


class CaseChecks(CaseState):
    """Checks shared by new entries and corrections; each raises StepRefused or returns."""

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
        values = complete_from_bag(self, step, values, at)
        typed, problems = parse_entries(
            step.items, values, at, unknown_what=f"'{step.title}' has no such item"
        )
        problems += self._missing(step, typed, {str(p.field) for p in problems}, needed or {})
        problems += self._unexpected(step, typed, compare_only)
        raise_all(problems, f"'{step.title}' was not signed")
        check_scanned_entries(self.protocol, step, typed, at)
        check_bag_entry(self, step, typed, at)
        check_weighings(self.protocol, step, typed, self._expected)
        return typed

    def _missing(
        self, step: Step, typed: Mapping[str, Value], faulty: set[str], needed: Mapping[str, str]
    ) -> list[StepRefused]:
        out: list[StepRefused] = []
        for it in step.items:
            if it.id in typed or it.id in faulty:
                continue
            if it.required or (it.required_if is not None and test(it.required_if, typed) is True):
                out.append(StepRefused("missing_item", f"{it.label}: required", field=it.id))
            elif it.id in needed:
                out.append(
                    StepRefused(
                        "missing_item",
                        f"{it.label}: required to judge whether this hold may end "
                        f"({needed[it.id]})",
                        field=it.id,
                    )
                )
        return out

    def _unexpected(
        self, step: Step, typed: Mapping[str, Value], compare_only: bool
    ) -> list[StepRefused]:
        """Entries that disagree with what the plan, the patient or the case says."""
        out: list[StepRefused] = []
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
                out.append(StepRefused("does_not_match", f"{it.label}: {shown}", field=it.id))
        return out

    def duty_conflicts(self, step: Step, user_id: str) -> list[Step]:
        """The steps ``user_id`` signed that keep them from signing ``step`` (separation of
        duties: the steps it verifies, and the steps that verify it). Pages ask it to tell a
        preparer before they fill a form they may not sign; signing is refused on it."""
        out = []
        for ref in step.verifies:
            entry = self.current.get(ref)
            if entry is not None and entry.signer.user_id == user_id:
                out.append(self.protocol.step(ref))
        # The first checker re-entering during a mismatch must still differ from the second.
        for other in self.protocol.steps:
            if step.id in other.verifies:
                entry = self.current.get(other.id)
                if entry is not None and entry.signer.user_id == user_id:
                    out.append(other)
        return out

    def _check_separation(self, step: Step, signer: Signer) -> None:
        conflicts = self.duty_conflicts(step, signer.user_id)
        if conflicts:
            first = conflicts[0]
            tail = ": it must be someone else" if first.id in step.verifies else ""
            raise StepRefused(
                "same_person",
                f"{signer.name} signed '{first.title}' and cannot also sign '{step.title}'{tail}",
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

    def duration_deviation(self, at: datetime) -> str | None:
        """Why stopping the infusion at ``at`` is early or late (its minutes, rounded, differ
        from the protocol's duration), or None when it is on time or not running. The warning,
        the acknowledgement it needs and the page's timer all ask this one rule."""
        started = self.given_at
        if started is None:
            return None
        minutes = round((at - started).total_seconds() / 60)
        planned = self.protocol.dosing.infusion_duration.value
        if minutes != planned:
            return f"Infusion ran {minutes} min; the protocol says {planned} min"
        return None

    def _duration_flags(self, at: datetime) -> list[dict[str, str]]:
        why = self.duration_deviation(at)
        return [{"code": "infusion_duration_deviation", "message": why}] if why else []

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
