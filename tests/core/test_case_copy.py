"""Case.copy (core/case_copy.py): the state a cache of replayed cases hands to each request,
equal to the original and sharing nothing mutable with it, so either may go on alone."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from workflow.core.clock import FixedClock
from workflow.core.events import Event
from workflow.core.machine import Case
from workflow.core.protocol import Protocol
from workflow.dev.walk import values_for

from .helpers import PRESCRIBER, TECH, open_case, sign, walk_all, walk_until

SHARED_BY_DESIGN = ("protocol", "_machine")
IMMUTABLE = (str, int, float, bool, type(None), bytes)


def _state(case: Case) -> dict[str, Any]:
    return {k: v for k, v in vars(case).items() if k not in SHARED_BY_DESIGN}


def _mutables(value: Any, seen: dict[int, Any]) -> dict[int, Any]:
    """Every object reachable from ``value`` that could be changed in place (by id)."""
    if isinstance(value, IMMUTABLE) or id(value) in seen:
        return seen
    frozen = is_dataclass(value) and type(value).__dataclass_params__.frozen  # type: ignore[attr-defined]
    # Times, dates and Decimals are immutable; a frozen dataclass's fields are walked below.
    if not (frozen or isinstance(value, tuple | datetime | date | Decimal)):
        seen[id(value)] = value
    if isinstance(value, dict):
        for k, v in value.items():
            _mutables(k, seen)
            _mutables(v, seen)
    elif isinstance(value, list | tuple | set):
        for v in value:
            _mutables(v, seen)
    elif is_dataclass(value):
        for f in fields(value):
            _mutables(getattr(value, f.name), seen)
    return seen


def _mutables_of(case: Case) -> dict[int, Any]:
    seen: dict[int, Any] = {}
    for value in _state(case).values():
        _mutables(value, seen)
    return seen


def _held_and_completed(protocol: Protocol, clock: FixedClock) -> Case:
    """Holds, resumes, firings with their values, a cleared hold and a whole walk: most of
    what a case keeps."""
    case = open_case(protocol, clock)
    walk_until(case, "hold_checks", clock)
    sign(case, "hold_checks", clock, spo2_pct="88")
    clock.advance(hours=8)
    case.resume(PRESCRIBER, clock.now(), "criteria_met")
    sign(case, "hold_checks", clock, spo2_pct="95")
    walk_all(case, clock)
    assert [h["kind"] for h in case.hold_log] == ["held", "resumed", "cleared"]
    return case


def test_a_copy_equals_the_case_and_shares_nothing_mutable(
    protocol: Protocol, clock: FixedClock
) -> None:
    case = _held_and_completed(protocol, clock)
    twin = case.copy()
    assert _state(twin) == _state(case)
    assert twin.protocol is case.protocol and twin._machine is case._machine
    ours, theirs = _mutables_of(case), _mutables_of(twin)
    assert len(ours) > 50  # the walk found the case's records
    assert not set(ours) & set(theirs)
    # An entry is in the history and current at once: one object in the copy too.
    for step, entry in twin.current.items():
        assert any(e is entry for e in twin.history), step


def test_a_copy_takes_the_callers_events(protocol: Protocol, clock: FixedClock) -> None:
    case = _held_and_completed(protocol, clock)
    decoded = [Event.from_json(e.to_json()) for e in case.events]
    twin = case.copy(decoded)
    assert all(a is b for a, b in zip(twin.events, decoded, strict=True))
    assert _state(twin) == _state(case)
    with pytest.raises(ValueError, match="events given"):
        case.copy(decoded[:-1])


def test_a_copy_and_its_original_go_on_alone(protocol: Protocol, clock: FixedClock) -> None:
    case = open_case(protocol, clock)
    walk_until(case, "reconstitution", clock)
    before = case.copy()
    twin = case.copy()
    clock.advance(minutes=5)
    values = values_for(case, "reconstitution", clock.now())
    twin.sign("reconstitution", values, TECH, clock.now())
    assert twin.state == "dilution" and twin.version == case.version + 1
    assert _state(case) == _state(before)  # the original did not move
    case.sign("reconstitution", values, TECH, clock.now())
    assert _state(case) == _state(twin)


def test_a_value_of_unknown_kind_is_refused_not_shared(
    protocol: Protocol, clock: FixedClock
) -> None:
    case = open_case(protocol, clock)
    case.hold_log.append({"odd": {1, 2}})
    with pytest.raises(TypeError, match="set"):
        case.copy()
