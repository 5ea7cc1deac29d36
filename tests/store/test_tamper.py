"""``verify_chains`` finds every kind of tampering and names the first broken event."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, text, update

from workflow.core.clock import FixedClock
from workflow.core.errors import IntegrityError
from workflow.store import CaseRecord, Store
from workflow.store import _schema as s

from .helpers import append_steps, course_for_new_patient, open_case


def _log(store: Store, clock: FixedClock) -> tuple[CaseRecord, CaseRecord]:
    """Two cases, interleaved in the log: A1 B1 A2 B2 A3 B3 A4 B4 (positions 1-8)."""
    course_a, course_b = course_for_new_patient(store), course_for_new_patient(store)
    a, b = open_case(store, course_a), open_case(store, course_b)
    for _ in range(3):
        clock.advance(minutes=1)
        a = append_steps(store, a, 1)
        b = append_steps(store, b, 1)
    assert store.verify_chains().ok
    return a, b


def _event_id(store: Store, case_id: str, seq: int) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT id FROM events WHERE case_id = :c AND seq = :s"),
                {"c": case_id, "s": seq},
            ).scalar_one()
        )


def _delete_event(store: Store, case_id: str, seq: int) -> None:
    event_id = _event_id(store, case_id, seq)
    with store.engine.begin() as conn:
        conn.execute(delete(s.signatures).where(s.signatures.c.event_id == event_id))
        conn.execute(delete(s.events).where(s.events.c.id == event_id))


def test_intact_log_verifies(store: Store, clock: FixedClock) -> None:
    _log(store, clock)
    report = store.verify_chains()
    assert report.ok and report.events_checked == 8 and report.cases_checked == 2


def test_edited_data_is_found(store: Store, clock: FixedClock) -> None:
    a, _ = _log(store, clock)
    with store.engine.begin() as conn:
        conn.execute(
            update(s.events)
            .where(s.events.c.case_id == a.id, s.events.c.seq == 2)
            .values(data='{"n":99}')
        )
    problem = store.verify_chains().first_problem
    assert problem is not None
    assert (problem.case_id, problem.seq, problem.position) == (a.id, 2, 3)
    assert "changed after it was written" in problem.message
    with pytest.raises(IntegrityError, match="event 2"):
        store.load_events(a.id)


def test_edited_signature_is_found(store: Store, clock: FixedClock) -> None:
    a, _ = _log(store, clock)
    with store.engine.begin() as conn:
        conn.execute(
            update(s.signatures)
            .where(s.signatures.c.event_id == _event_id(store, a.id, 3))
            .values(printed_name="Someone Else")
        )
    problem = store.verify_chains().first_problem
    assert problem is not None and (problem.case_id, problem.seq) == (a.id, 3)


def test_recomputed_hash_is_still_found(store: Store, clock: FixedClock) -> None:
    # The editor also rewrites the event's own hash: the next link in both chains breaks.
    a, _ = _log(store, clock)
    with store.engine.begin() as conn:
        conn.execute(
            update(s.events)
            .where(s.events.c.case_id == a.id, s.events.c.seq == 2)
            .values(hash="f" * 64)
        )
    problem = store.verify_chains().first_problem
    assert problem is not None and (problem.case_id, problem.seq) == (a.id, 2)


def test_deleted_middle_event_is_named(store: Store, clock: FixedClock) -> None:
    a, _ = _log(store, clock)
    _delete_event(store, a.id, 2)
    problem = store.verify_chains().first_problem
    assert problem is not None
    assert (problem.case_id, problem.seq, problem.position) == (a.id, 2, 3)
    assert "deleted" in problem.message
    with pytest.raises(IntegrityError, match="event 2 is missing"):
        store.load_events(a.id)


def test_deleted_last_event_of_a_case_is_named(store: Store, clock: FixedClock) -> None:
    a, _ = _log(store, clock)
    _delete_event(store, a.id, 4)  # position 7; case B's event follows it
    problem = store.verify_chains().first_problem
    assert problem is not None
    assert (problem.case_id, problem.seq, problem.position) == (a.id, 4, 7)


def test_deleted_last_event_of_the_log_is_named(store: Store, clock: FixedClock) -> None:
    _, b = _log(store, clock)
    _delete_event(store, b.id, 4)  # position 8, the newest event of all
    problem = store.verify_chains().first_problem
    assert problem is not None
    assert (problem.case_id, problem.seq, problem.position) == (b.id, 4, 8)


def test_tail_deletion_with_version_rewritten_is_still_found(
    store: Store, clock: FixedClock
) -> None:
    # Delete the newest event and make its case agree: the log head still remembers.
    _, b = _log(store, clock)
    _delete_event(store, b.id, 4)
    with store.engine.begin() as conn:
        conn.execute(update(s.cases).where(s.cases.c.id == b.id).values(version=3))
    problem = store.verify_chains().first_problem
    assert problem is not None and problem.position == 8
    assert "missing at the end of the log" in problem.message


def test_deleted_whole_case_is_found(store: Store, clock: FixedClock) -> None:
    a, _ = _log(store, clock)
    with store.engine.begin() as conn:
        ids = [
            r.id
            for r in conn.execute(text("SELECT id FROM events WHERE case_id = :c"), {"c": a.id})
        ]
        conn.execute(delete(s.signatures).where(s.signatures.c.event_id.in_(ids)))
        conn.execute(delete(s.events).where(s.events.c.case_id == a.id))
        conn.execute(delete(s.cases).where(s.cases.c.id == a.id))
    problem = store.verify_chains().first_problem
    assert problem is not None and problem.position == 1
    assert "missing" in problem.message


def test_reordered_events_in_a_case_are_found(store: Store, clock: FixedClock) -> None:
    a, _ = _log(store, clock)
    with store.engine.begin() as conn:
        for old, new in ((2, -2), (3, 2), (-2, 3)):
            conn.execute(
                update(s.events)
                .where(s.events.c.case_id == a.id, s.events.c.seq == old)
                .values(seq=new)
            )
    problem = store.verify_chains().first_problem
    assert problem is not None and problem.position == 3  # where event 2 used to be


def test_reordered_log_positions_are_found(store: Store, clock: FixedClock) -> None:
    a, b = _log(store, clock)
    first, second = _event_id(store, b.id, 2), _event_id(store, a.id, 3)  # positions 4 and 5
    with store.engine.begin() as conn:
        for event_id, pos in ((first, -4), (second, 4), (first, 5)):
            conn.execute(update(s.events).where(s.events.c.id == event_id).values(log_seq=pos))
    problem = store.verify_chains().first_problem
    assert problem is not None and problem.position == 4


def test_problem_reads_well(store: Store, clock: FixedClock) -> None:
    a, _ = _log(store, clock)
    _delete_event(store, a.id, 2)
    text_ = str(store.verify_chains().first_problem)
    assert text_.startswith(f"case {a.id}, event 2, log position 3: was deleted")
