"""The event log: round trip, signatures, refusals of malformed batches, case queries."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from workflow.core.clock import FixedClock
from workflow.core.errors import ConflictError, InputError, NotFound
from workflow.core.events import ASSESSMENT, Event, Signer
from workflow.store import Cosignature, Store

from .helpers import (
    NURSE,
    PHARMACIST,
    PROTOCOL_HASH,
    PROTOCOL_VERSION,
    append_steps,
    course_for_new_patient,
    open_case,
    step,
)


def test_append_and_load_round_trip(store: Store, clock: FixedClock) -> None:
    course = course_for_new_patient(store)
    case = open_case(store, course)
    at = clock.advance(minutes=5)
    batch = [
        step(case.id, 2, at, weight_kg=Decimal("70.50"), when=at, flags=[True, "x"]),
        Event(case.id, 3, ASSESSMENT, at, None, {"sbp": 120}),
    ]
    after = store.append(
        case.id,
        1,
        batch,
        protocol_version=PROTOCOL_VERSION,
        protocol_hash=PROTOCOL_HASH,
        state="prepared",
    )
    assert (after.version, after.state, after.updated_at) == (3, "prepared", at)

    loaded = store.load_events(case.id)
    assert [e.seq for e in loaded] == [1, 2, 3]
    # Same content hash as the events given: signatures made before storing still bind.
    assert [e.content_hash() for e in loaded[1:]] == [e.content_hash() for e in batch]
    assert loaded[1].data["weight_kg"] == "70.5"
    assert loaded[1].actor == NURSE
    assert loaded[2].actor is None
    assert store.verify_chains().ok


def test_signed_events_become_signature_rows(store: Store, clock: FixedClock) -> None:
    case = open_case(store, course_for_new_patient(store))
    at = clock.advance(minutes=1)
    checked = step(case.id, 2, at)
    co = Cosignature(2, PHARMACIST, "verified", clock.advance(seconds=30))
    store.append(
        case.id,
        1,
        [checked],
        protocol_version=PROTOCOL_VERSION,
        protocol_hash=PROTOCOL_HASH,
        cosignatures=[co],
    )
    sigs = store.load_signatures(case.id)
    assert [(s.seq, s.user_id, s.printed_name, s.role, s.meaning) for s in sigs] == [
        (2, NURSE.user_id, NURSE.name, "nurse", "performed"),
        (2, PHARMACIST.user_id, PHARMACIST.name, "pharmacist", "verified"),
    ]
    assert {s.content_hash for s in sigs} == {checked.content_hash()}
    assert sigs[1].signed_at == co.signed_at


def test_stale_version_is_refused_and_nothing_written(store: Store, clock: FixedClock) -> None:
    case = append_steps(store, open_case(store, course_for_new_patient(store)), 2)
    with pytest.raises(ConflictError, match="this case changed, reload"):
        store.append(
            case.id,
            2,
            [step(case.id, 3, clock.now())],
            protocol_version=PROTOCOL_VERSION,
            protocol_hash=PROTOCOL_HASH,
        )
    assert len(store.load_events(case.id)) == 3
    assert store.get_case(case.id).version == 3


def test_unique_seq_is_the_backstop(store: Store, clock: FixedClock) -> None:
    # Simulate a writer that got past the version check (here: the version column was
    # rolled back by hand): UNIQUE(case_id, seq) still refuses, and nothing is written.
    from sqlalchemy import update

    from workflow.store import _schema as s

    case = append_steps(store, open_case(store, course_for_new_patient(store)), 2)
    with store.engine.begin() as conn:
        conn.execute(update(s.cases).where(s.cases.c.id == case.id).values(version=2))
    with pytest.raises(ConflictError):
        store.append(
            case.id,
            2,
            [step(case.id, 3, clock.now(), other=True)],
            protocol_version=PROTOCOL_VERSION,
            protocol_hash=PROTOCOL_HASH,
        )
    assert store.get_case(case.id).version == 2
    assert "other" not in store.load_events(case.id, verify=False)[2].data


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seq": 5}, "events"),
        ({"case_id": "other"}, "events"),
        ({"type": "made_up"}, "events"),
        ({"meaning": "liked"}, "meaning"),
        ({"data": {"x": 1.5}}, "events"),
        ({"corrects": 2}, "corrects"),
        ({"step": "x" * 101}, "step"),
        ({"actor": Signer("u" * 65, "N", "nurse")}, "user_id"),
    ],
)
def test_malformed_batches_are_refused(
    store: Store, clock: FixedClock, change: dict[str, object], field: str
) -> None:
    case = open_case(store, course_for_new_patient(store))
    fields: dict[str, object] = {
        "case_id": case.id,
        "seq": 2,
        "type": "step_signed",
        "at": clock.now(),
        "actor": NURSE,
        "data": {},
        "meaning": "performed",
    }
    fields.update(change)
    with pytest.raises(InputError) as err:
        store.append(
            case.id,
            1,
            [Event(**fields)],  # type: ignore[arg-type]
            protocol_version=PROTOCOL_VERSION,
            protocol_hash=PROTOCOL_HASH,
        )
    assert err.value.field == field
    assert store.get_case(case.id).version == 1


def test_empty_batch_and_unknown_case(store: Store, clock: FixedClock) -> None:
    case = open_case(store, course_for_new_patient(store))
    with pytest.raises(InputError):
        store.append(case.id, 1, [], protocol_version="1", protocol_hash=PROTOCOL_HASH)
    with pytest.raises(NotFound):
        store.append(
            "nope",
            1,
            [step("nope", 2, clock.now())],
            protocol_version="1",
            protocol_hash=PROTOCOL_HASH,
        )
    with pytest.raises(NotFound):
        store.load_events("nope")


def test_create_case_twice_is_a_conflict(store: Store, clock: FixedClock) -> None:
    course = course_for_new_patient(store)
    case = open_case(store, course)
    opening = Event(case.id, 1, "case_opened", clock.now(), NURSE, {})
    with pytest.raises(ConflictError):
        store.create_case(
            opening,
            course_id=course.id,
            cycle=1,
            dose_in_cycle=2,
            dose_in_course=2,
            scheduled_at=clock.now(),
            state="ordered",
            protocol_version="1",
            protocol_hash=PROTOCOL_HASH,
        )
    assert store.verify_chains().ok


def test_worklist_and_case_lists(store: Store, clock: FixedClock) -> None:
    course = course_for_new_patient(store)
    other = course_for_new_patient(store)
    late = open_case(store, course, dose=1, scheduled_at=clock.now() + timedelta(hours=9))
    soon = open_case(store, course, dose=2, scheduled_at=clock.now() + timedelta(hours=1))
    done = open_case(store, other, dose=1, state="completed")
    assert [c.id for c in store.worklist(["ordered"])] == [soon.id, late.id]
    assert [c.id for c in store.worklist(["ordered"], limit=1, offset=1)] == [late.id]
    assert [c.id for c in store.worklist(["completed", "ordered"], limit=1)] == [done.id]
    assert {c.id for c in store.list_cases(course_id=course.id)} == {soon.id, late.id}
    assert [c.id for c in store.list_cases(patient_id=other.patient_id)] == [done.id]
    assert store.list_cases(states=["held"]) == []
    with pytest.raises(InputError):
        store.worklist(["ordered"], limit=0)


def test_case_needs_an_active_course(store: Store) -> None:
    course = course_for_new_patient(store)
    store.set_course_status(course.id, "completed")
    with pytest.raises(InputError, match="completed"):
        open_case(store, course)


def test_signer_from_events_module_round_trips(store: Store, clock: FixedClock) -> None:
    odd = Signer("u-x", "Zoë Ünïcode-O'Brien", "nurse")
    case = open_case(store, course_for_new_patient(store))
    event = Event(
        case.id,
        2,
        "step_signed",
        clock.now(),
        odd,
        {"note": "naïve ✓"},
        step="s",
        meaning="performed",
    )
    store.append(case.id, 1, [event], protocol_version="1", protocol_hash=PROTOCOL_HASH)
    assert store.load_events(case.id)[1] == event
