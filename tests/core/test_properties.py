"""Property tests: random sequences of actions never reach an infusion without every earlier
step signed by an allowed role and checked by someone else, never exceed the schedule's limits,
and always replay to the same state."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from workflow.core.clock import FixedClock
from workflow.core.errors import StepRefused
from workflow.core.machine import Case
from workflow.core.protocol import load_protocol
from workflow.core.schedule import CourseStatus, GivenDose, next_dose
from workflow.dev.demo import signer_for
from workflow.dev.walk import values_for
from workflow.resources import default_protocol_path

from .helpers import NURSE_A, NURSE_B, PHARMACIST, PHARMACIST_2, PRESCRIBER, TECH, open_case

PROTOCOL = load_protocol(default_protocol_path())
PEOPLE = [PRESCRIBER, PHARMACIST, PHARMACIST_2, TECH, NURSE_A, NURSE_B]
STEPS = list(PROTOCOL.step_ids())
# Values that break one item in a plausible way.
SPOILERS = {
    "spo2_pct": "88",
    "lethargy": "moderate",
    "vt_sustained_beats": "6",
    "diluent": "sodium_chloride_0_9",
    "pump_rate_ml_per_h": "200",
    "vial_expiry": "2001-01-01",
    "d5w_bag_volume_ml": "100",
    "occult_blood": "positive",
    "stress_test_result": "abnormal",
    "sbp_mmhg": "-3",
    "no_in_line_filter": False,
}


class CaseMachine(RuleBasedStateMachine):
    @initialize(weight=st.sampled_from(["39", "68", "70", "118", "27"]))
    def start(self, weight: str) -> None:
        self.clock = FixedClock(datetime(2026, 11, 2, 6, 0, tzinfo=UTC))
        self.case = open_case(PROTOCOL, self.clock, weight=weight)

    @rule(
        step=st.sampled_from(STEPS),
        who=st.sampled_from(PEOPLE),
        spoil=st.sampled_from([None, *SPOILERS]),
        minutes=st.integers(0, 90),
    )
    def sign(self, step: str, who: object, spoil: str | None, minutes: int) -> None:
        self.clock.advance(minutes=minutes)
        values = values_for(self.case, step, self.clock.now())
        if spoil is not None and spoil in {i.id for i in PROTOCOL.step(step).items}:
            values[spoil] = SPOILERS[spoil]
        self._try(self.case.sign, step, values, who, self.clock.now())

    @rule(count=st.integers(1, 14), minutes=st.integers(1, 20))
    def sign_next_correctly(self, count: int, minutes: int) -> None:
        """What a careful team does; keeps the walk moving so deep states are explored."""
        for _ in range(count):
            step = self.case.next_step()
            if step is None:
                return
            self.clock.advance(minutes=minutes)
            values = values_for(self.case, step.id, self.clock.now())
            self._try(self.case.sign, step.id, values, signer_for(step.id), self.clock.now())
            if self.case.given:
                event("infusion reached")

    @rule(
        who=st.sampled_from(PEOPLE),
        beats=st.sampled_from(["0", "3", "5"]),
        spo2=st.sampled_from(["85", "97"]),
    )
    def assess(self, who: object, beats: str, spo2: str) -> None:
        self._try(
            self.case.assess, {"vt_sustained_beats": beats, "spo2_pct": spo2}, who, self.clock.now()
        )

    @rule(who=st.sampled_from(PEOPLE))
    def resume(self, who: object) -> None:
        self._try(self.case.resume, who, self.clock.now(), "criteria_met")

    @rule(who=st.sampled_from(PEOPLE), kind=st.sampled_from(["cancel", "waste"]))
    def leave(self, who: object, kind: str) -> None:
        reason = "order_error" if kind == "cancel" else "preparation_error"
        self._try(getattr(self.case, kind), who, self.clock.now(), reason)

    @rule(weight=st.sampled_from(["72", "15", "68.5"]))
    def correct_weight(self, weight: str) -> None:
        order = self.case.current.get("order")
        if order is not None:
            self._try(
                self.case.correct,
                order.seq,
                {"dosing_weight_kg": weight},
                "recheck",
                PRESCRIBER,
                self.clock.now(),
            )

    @rule(hours=st.integers(1, 60))
    def wait(self, hours: int) -> None:
        self.clock.advance(hours=hours)

    def _try(self, fn: object, *args: object) -> None:
        before = (self.case.state, self.case.version, len(self.case.history))
        try:
            fn(*args)  # type: ignore[operator]
        except StepRefused:
            # A refusal changes nothing.
            assert (self.case.state, self.case.version, len(self.case.history)) == before

    @invariant()
    def infusion_only_after_every_earlier_step(self) -> None:
        case = self.case
        start = next((s for s in case.walk_steps() if s.starts_infusion), None)
        assert start is not None
        if start.id not in case.current:
            return
        walk = [s.id for s in case.walk_steps()]
        for step_id in walk[: walk.index(start.id)]:
            entry = case.current.get(step_id)
            assert entry is not None, f"{step_id} unsigned at infusion"
            step = PROTOCOL.step(step_id)
            assert entry.signer.role in step.roles
            assert entry.seq < case.current[start.id].seq or entry.step == step_id
            for ref in step.verifies:
                assert case.current[ref].signer.user_id != entry.signer.user_id
        assert not case.differences

    @invariant()
    def replay_gives_the_same_state(self) -> None:
        again = Case.replay(PROTOCOL, self.case.case_id, self.case.events)
        assert again.state == self.case.state
        assert sorted(again.current) == sorted(self.case.current)


TestCaseMachine = CaseMachine.TestCase
TestCaseMachine.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@settings(max_examples=150, deadline=None)
@given(gaps=st.lists(st.floats(min_value=0.5, max_value=30.0), min_size=1, max_size=60))
def test_schedule_never_exceeds_its_limits(gaps: list[float]) -> None:
    """Ask for doses at random gaps (hours); give each one the schedule accepts."""
    s = PROTOCOL.schedule
    at = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    given: list[GivenDose] = []
    for gap in gaps:
        at += timedelta(hours=gap)
        try:
            dose = next_dose(PROTOCOL, CourseStatus(tuple(given)), at)
        except StepRefused:
            continue
        given.append(GivenDose(dose.cycle, at))
    assert len(given) <= s.max_doses_per_course.value
    for cycle in {g.cycle for g in given}:
        in_cycle = [g for g in given if g.cycle == cycle]
        assert len(in_cycle) <= s.max_doses_per_cycle.value
        span = in_cycle[-1].given_at.date() - in_cycle[0].given_at.date()
        assert span.days + 1 <= s.cycle_days.value
    assert max((g.cycle for g in given), default=1) <= s.max_cycles_per_course.value
    for a, b in itertools.pairwise(given):
        assert b.given_at - a.given_at >= timedelta(hours=8)
        if b.cycle != a.cycle:
            assert (b.given_at.date() - a.given_at.date()).days > s.rest_days.value
