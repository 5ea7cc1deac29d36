"""A load walks a case's chain only from the first event whose rows were not already proven
(workflow/store/proven.py): every change to the rows (a new event, an edited or removed row,
an edited signature, a changed version) is still found, on a case loaded before the change."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, text, update

from workflow.core.clock import FixedClock
from workflow.core.errors import ConflictError, IntegrityError
from workflow.store import CaseRecord, Store
from workflow.store import _schema as s
from workflow.store.proven import ProvenChains

from .helpers import (
    PROTOCOL_HASH,
    PROTOCOL_VERSION,
    append_steps,
    course_for_new_patient,
    open_case,
)
from .helpers import step as step_event


def _loaded_case(store: Store, clock: FixedClock, steps: int = 3) -> CaseRecord:
    """A case of 1 + ``steps`` events, loaded once (so its rows are proven)."""
    case = open_case(store, course_for_new_patient(store))
    clock.advance(minutes=1)
    case = append_steps(store, case, steps)
    assert len(store.load_events(case.id)) == 1 + steps
    assert len(store.proven) == 1
    return case


def _event_id(store: Store, case_id: str, seq: int) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT id FROM events WHERE case_id = :c AND seq = :s"),
                {"c": case_id, "s": seq},
            ).scalar_one()
        )


def test_a_new_event_is_loaded_and_walked(store: Store, clock: FixedClock) -> None:
    case = _loaded_case(store, clock)
    append_steps(store, case, 1)
    events = store.load_events(case.id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    # The same events a store that proved nothing yet loads (a full walk).
    assert Store(store.engine, store.clock).load_events(case.id) == events


def test_an_event_another_server_wrote_is_seen(store: Store, clock: FixedClock) -> None:
    """Another process appends (its own Store on the same database): this store's proven rows
    are a prefix, the new event is walked, and a signature on the old version conflicts."""
    case = _loaded_case(store, clock)
    other = Store(store.engine, store.clock)
    moved = append_steps(other, case, 1)
    loaded = store.load_case(case.id)
    assert loaded[0].version == moved.version == 5 and len(loaded[1]) == 5
    with pytest.raises(ConflictError):
        store.append(
            case.id,
            case.version,  # stale: 4
            [step_event(case.id, 5, clock.now())],
            protocol_version=PROTOCOL_VERSION,
            protocol_hash=PROTOCOL_HASH,
        )


def test_an_edited_proven_event_is_found(store: Store, clock: FixedClock) -> None:
    case = _loaded_case(store, clock)
    with store.engine.begin() as conn:
        conn.execute(
            update(s.events)
            .where(s.events.c.case_id == case.id, s.events.c.seq == 2)
            .values(data='{"n":99}')
        )
    with pytest.raises(IntegrityError, match="event 2 was changed"):
        store.load_events(case.id)
    with pytest.raises(IntegrityError, match="event 2 was changed"):
        store.load_case(case.id)


def test_an_edited_signature_of_a_proven_event_is_found(store: Store, clock: FixedClock) -> None:
    case = _loaded_case(store, clock)
    with store.engine.begin() as conn:
        conn.execute(
            update(s.signatures)
            .where(s.signatures.c.event_id == _event_id(store, case.id, 3))
            .values(printed_name="Someone Else")
        )
    with pytest.raises(IntegrityError, match="event 3 was changed"):
        store.load_events(case.id)


def test_a_removed_proven_event_is_found(store: Store, clock: FixedClock) -> None:
    case = _loaded_case(store, clock)
    event_id = _event_id(store, case.id, 2)
    with store.engine.begin() as conn:
        conn.execute(delete(s.signatures).where(s.signatures.c.event_id == event_id))
        conn.execute(delete(s.events).where(s.events.c.id == event_id))
        conn.execute(update(s.cases).where(s.cases.c.id == case.id).values(version=3))
    with pytest.raises(IntegrityError, match="event 2 is missing"):
        store.load_events(case.id)


def test_a_changed_version_is_found(store: Store, clock: FixedClock) -> None:
    """The rows of every event unchanged, the case's version edited (stale or ahead)."""
    case = _loaded_case(store, clock)
    for version in (case.version - 1, case.version + 1):
        with store.engine.begin() as conn:
            conn.execute(update(s.cases).where(s.cases.c.id == case.id).values(version=version))
        with pytest.raises(IntegrityError, match=f"records {version} events, the log holds 4"):
            store.load_events(case.id)


def test_an_edit_undone_loads_again(store: Store, clock: FixedClock) -> None:
    """Refused while edited; once the row is as it was, it loads (the walk is what decides)."""
    case = _loaded_case(store, clock)
    with store.engine.connect() as conn:
        original = conn.execute(
            text("SELECT data FROM events WHERE case_id = :c AND seq = 3"), {"c": case.id}
        ).scalar_one()
    for data in ('{"n":99}', original):
        with store.engine.begin() as conn:
            conn.execute(
                update(s.events)
                .where(s.events.c.case_id == case.id, s.events.c.seq == 3)
                .values(data=data)
            )
        if data == original:
            assert len(store.load_events(case.id)) == 4
        else:
            with pytest.raises(IntegrityError, match="event 3"):
                store.load_events(case.id)


def test_proven_rows_are_matched_position_by_position_and_bounded() -> None:
    proven = ProvenChains(size=2)
    proven.remember("a", ["r1", "r2", "r3"])
    assert proven.prefix("a", ["r1", "r2", "r3", "r4"]) == 3  # a new event: walk the 4th
    assert proven.prefix("a", ["r1", "rX", "r3"]) == 1  # an edited 2nd: walk from it
    assert proven.prefix("a", ["r2", "r3"]) == 0  # a removed 1st: every position differs
    assert proven.prefix("b", ["r1"]) == 0  # never proven
    proven.remember("b", ["r1"])
    proven.prefix("a", ["r1"])  # "a" used last: "b" is the oldest
    proven.remember("c", ["r1"])
    assert len(proven) == 2
    assert proven.prefix("b", ["r1"]) == 0 and proven.prefix("a", ["r1"]) == 1
