"""The quick pass of ``verify_chains`` (store/verify_quick.py), on SQLite and PostgreSQL: it
proves an intact seeded log in one process and in worker processes checking ranges of it, and
proves nothing once any range, or the seam between two ranges, was tampered with; the report
is then the full walk's, the same for ``jobs`` 1 and 2 and the old path (``quick=False``).

The ranges are made small (``MIN_RANGE``) so that a log of a few dozen events is split."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, text, update

from workflow.core.protocol import Protocol
from workflow.dev.seed import seed
from workflow.identity import Identity
from workflow.store import Store, verify_quick
from workflow.store import _schema as s
from workflow.store._rows import event_from_row, signature_from_row
from workflow.store.chain import GENESIS_HASH, event_hash, link_hash
from workflow.store.models import ChainReport

JOBS = 2


@pytest.fixture
def seeded(store: Store, protocol: Protocol, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A seeded log (signed steps, two patients' doses interleaved), split into six ranges."""
    identity = Identity(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    seed(store, protocol, patients=2, doses=4, identity=identity, signed_sample=0)
    length, _ = store.log_head()
    monkeypatch.setattr(verify_quick, "MIN_RANGE", length // (JOBS * 3))
    assert len(_bounds(store)) == JOBS * 3
    return store


def _bounds(store: Store) -> list[tuple[int, int]]:
    return verify_quick._ranges(store.log_head()[0], JOBS)


def _proven(store: Store, jobs: int) -> ChainReport | None:
    with store.engine.connect() as conn:
        return verify_quick.quick_verify(conn, {0, 7}, jobs)


def _reports_agree(store: Store, one: bool = True) -> ChainReport:
    """The quick pass proves nothing; jobs 2, jobs 1 (unless not ``one``) and the full walk
    alone say the same."""
    assert _proven(store, JOBS) is None
    full = store.verify_chains({7}, quick=False)
    assert store.verify_chains({7}, jobs=JOBS) == full
    if one:
        assert _proven(store, 1) is None
        assert store.verify_chains({7}, jobs=1) == full
    assert not full.ok
    return full


def test_intact_log_is_proven_by_one_and_by_two_processes(seeded: Store) -> None:
    full = seeded.verify_chains({0, 7}, quick=False)
    assert full.ok and full.events_checked > 40 and full.cases_checked == 4
    one, two = _proven(seeded, 1), _proven(seeded, JOBS)
    assert one == full and two == full  # counts, head, every case, chain_at positions
    assert full.chain_at[0] == GENESIS_HASH and len(full.chain_at[7]) == 64
    assert seeded.verify_chains(jobs=JOBS).ok


def _edit(store: Store, position: int, column: str, value: object) -> Callable[[], None]:
    """Overwrite one column of the event at ``position``; returns the undo."""
    ev = s.events
    with store.engine.begin() as conn:
        old = conn.execute(select(ev.c[column]).where(ev.c.log_seq == position)).scalar_one()
        conn.execute(update(ev).where(ev.c.log_seq == position).values({column: value}))

    def undo() -> None:
        with store.engine.begin() as conn:
            conn.execute(update(ev).where(ev.c.log_seq == position).values({column: old}))

    return undo


def test_tampering_in_every_range_and_at_every_seam_is_found(seeded: Store) -> None:
    for first, last in _bounds(seeded):
        # A range's first and last events sit on its seams; one in the middle.
        for position in (first, (first + last) // 2, last):
            undo = _edit(seeded, position, "data", '{"tampered":true}')
            problem = _reports_agree(seeded, one=position not in (first, last)).first_problem
            assert problem is not None and problem.position == position
            assert "changed after it was written" in problem.message
            undo()
        undo = _edit(seeded, first, "chain_hash", "0" * 64)
        problem = _reports_agree(seeded, one=False).first_problem
        assert problem is not None and problem.position in (first, first + 1)
        undo()
    assert _proven(seeded, JOBS) is not None


def test_edited_signature_in_every_range_is_found(seeded: Store) -> None:
    with seeded.engine.connect() as conn:
        signed = conn.execute(
            text(
                "SELECT e.log_seq, s.id FROM signatures s JOIN events e ON e.id = s.event_id "
                "ORDER BY e.log_seq"
            )
        ).all()
    for first, last in _bounds(seeded):
        position, sig_id = next((p, i) for p, i in signed if first <= p <= last)
        with seeded.engine.begin() as conn:
            old = conn.execute(
                select(s.signatures.c.printed_name).where(s.signatures.c.id == sig_id)
            ).scalar_one()
            conn.execute(
                update(s.signatures)
                .where(s.signatures.c.id == sig_id)
                .values(printed_name="Someone Else")
            )
        problem = _reports_agree(seeded).first_problem
        assert problem is not None and problem.position == position
        with seeded.engine.begin() as conn:
            conn.execute(
                update(s.signatures).where(s.signatures.c.id == sig_id).values(printed_name=old)
            )
    assert _proven(seeded, JOBS) is not None


def _forge_one(store: Store, position: int) -> tuple[str, int]:
    """Rewrite the event at ``position`` and recompute its own hash, the whole-log chain and the
    head, but not the case's later events: only the link from the case's next event breaks."""
    ev, sig = s.events, s.signatures
    with store.engine.begin() as conn:
        row = conn.execute(select(ev).where(ev.c.log_seq == position)).one()
        conn.execute(update(ev).where(ev.c.id == row.id).values(data='{"forged":true}'))
        row = conn.execute(select(ev).where(ev.c.id == row.id)).one()
        conn.execute(
            update(sig)
            .where(sig.c.event_id == row.id)
            .values(content_hash=event_from_row(row).content_hash())
        )
        sig_rows = conn.execute(select(sig).where(sig.c.event_id == row.id).order_by(sig.c.id))
        signatures = [signature_from_row(r, row.case_id, row.seq) for r in sig_rows]
        hash_ = event_hash(
            row.prev_hash, event_from_row(row), row.protocol_version, row.protocol_hash, signatures
        )
        conn.execute(update(ev).where(ev.c.id == row.id).values(hash=hash_))
        chain = GENESIS_HASH
        for r in conn.execute(select(ev.c.id, ev.c.log_seq, ev.c.hash).order_by(ev.c.log_seq)):
            chain = link_hash(chain, r.log_seq, r.hash)
            conn.execute(update(ev).where(ev.c.id == r.id).values(chain_hash=chain))
        conn.execute(update(s.log_head).where(s.log_head.c.id == 1).values(head_hash=chain))
        return str(row.case_id), int(row.seq)


def test_a_case_broken_across_a_range_seam_is_found(seeded: Store) -> None:
    """The case's next event is in the next range: only the stitching of the ranges (each
    case's first event in a range against its last before) can see the broken link."""
    bounds = _bounds(seeded)
    with seeded.engine.connect() as conn:
        rows = conn.execute(select(s.events.c.log_seq, s.events.c.case_id)).all()
    case_of = {int(p): c for p, c in rows}
    range_of = {p: i for i, (first, last) in enumerate(bounds) for p in range(first, last + 1)}
    position = next(
        p
        for p in sorted(case_of)
        if (n := _next_in_case(case_of, p)) is not None and range_of[n] != range_of[p]
    )
    case_id, seq = _forge_one(seeded, position)
    full = _reports_agree(seeded)
    problem = full.first_problem
    assert problem is not None
    assert (problem.case_id, problem.seq) == (case_id, seq + 1)
    assert "does not link to the previous event of its case" in problem.message


def _next_in_case(case_of: dict[int, str], position: int) -> int | None:
    return next(
        (p for p in sorted(case_of) if p > position and case_of[p] == case_of[position]), None
    )


def test_a_gap_or_a_short_head_is_not_proven(seeded: Store) -> None:
    length, _ = seeded.log_head()
    with seeded.engine.begin() as conn:
        conn.execute(update(s.log_head).values(event_count=length - 1))
    assert _reports_agree(seeded).first_problem is not None
