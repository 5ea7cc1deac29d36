"""The quick pass reads an event's shared strings (type, step, actor, meaning, protocol) and a
signer's (meaning, printed name, role, user id) joined by U+001F, a NULL one marked apart from
"" (store/verify_quick.py). On SQLite and PostgreSQL: a value holding the separator is not
proven, NULL and "" are told apart, and each such tamper is reported as the full walk reports
it, for ``jobs`` 1 and 2; a log rewritten consistently with such values is still found intact
(by the full walk, after the quick pass proves nothing)."""

from __future__ import annotations

from collections import defaultdict

import pytest
from sqlalchemy import select, update

from tests.store.test_verify_parallel import _edit, _proven, _reports_agree, seeded
from workflow.store import Store
from workflow.store import _schema as s
from workflow.store._rows import event_from_row, signature_from_row
from workflow.store.chain import GENESIS_HASH, event_hash, link_hash

__all__ = ["seeded"]  # the fixture, shared with test_verify_parallel

SEP = "\x1f"


def _middle(store: Store, column: str, null: bool) -> int:
    """The log position of an event near the middle whose ``column`` is NULL (or not)."""
    ev = s.events
    test = ev.c[column].is_(None) if null else ev.c[column].is_not(None)
    with store.engine.connect() as conn:
        positions = conn.execute(select(ev.c.log_seq).where(test).order_by(ev.c.log_seq)).all()
    assert positions, f"the seeded log has no event with {column} {'NULL' if null else 'set'}"
    return int(positions[len(positions) // 2][0])


def _changed_at(store: Store, position: int) -> None:
    problem = _reports_agree(store).first_problem
    assert problem is not None and problem.position == position
    assert "changed after it was written" in problem.message


@pytest.mark.parametrize(
    "column", ["type", "step", "actor_user_id", "actor_name", "actor_role", "protocol_version"]
)
def test_a_value_holding_the_separator_is_found(seeded: Store, column: str) -> None:
    position = _middle(seeded, column, null=False)
    with seeded.engine.connect() as conn:
        old = conn.execute(
            select(s.events.c[column]).where(s.events.c.log_seq == position)
        ).scalar_one()
    # The value split in two: read naively, the parts would shift into the next fields.
    undo = _edit(seeded, position, column, old[:1] + SEP + old[1:])
    _changed_at(seeded, position)
    undo()
    assert _proven(seeded, 2) is not None


@pytest.mark.parametrize(
    ("column", "null", "value"),
    [
        ("step", False, None),  # a step taken away
        ("meaning", True, ""),  # no meaning becomes an empty one
        ("meaning", False, None),
        ("actor_user_id", False, None),  # the actor taken away: "actor": null
    ],
)
def test_null_and_empty_are_told_apart(
    seeded: Store, column: str, null: bool, value: str | None
) -> None:
    position = _middle(seeded, column, null=null)
    undo = _edit(seeded, position, column, value)
    _changed_at(seeded, position)
    undo()
    assert _proven(seeded, 2) is not None


def test_a_signer_holding_the_separator_is_found(seeded: Store) -> None:
    sig = s.signatures
    with seeded.engine.connect() as conn:
        sig_id, event_id, name = conn.execute(
            select(sig.c.id, sig.c.event_id, sig.c.printed_name).order_by(sig.c.id)
        ).all()[3]
        position = conn.execute(
            select(s.events.c.log_seq).where(s.events.c.id == event_id)
        ).scalar_one()
    with seeded.engine.begin() as conn:
        conn.execute(update(sig).where(sig.c.id == sig_id).values(printed_name=f"A{SEP}{name}"))
    problem = _reports_agree(seeded).first_problem
    assert problem is not None and problem.position == position


def _rewrite_log(store: Store) -> None:
    """Recompute every signature's content hash, every event's hash and link, and the head:
    the log as the writer would have written it with the values now stored."""
    ev, sig = s.events, s.signatures
    with store.engine.begin() as conn:
        last: dict[str, str] = defaultdict(lambda: GENESIS_HASH)
        chain = GENESIS_HASH
        for row in conn.execute(select(ev).order_by(ev.c.log_seq)).all():
            event = event_from_row(row)
            conn.execute(
                update(sig)
                .where(sig.c.event_id == row.id)
                .values(content_hash=event.content_hash())
            )
            sig_rows = conn.execute(select(sig).where(sig.c.event_id == row.id).order_by(sig.c.id))
            signatures = [signature_from_row(r, row.case_id, row.seq) for r in sig_rows]
            prev = last[row.case_id]
            hash_ = event_hash(prev, event, row.protocol_version, row.protocol_hash, signatures)
            chain = link_hash(chain, row.log_seq, hash_)
            conn.execute(
                update(ev)
                .where(ev.c.id == row.id)
                .values(prev_hash=prev, hash=hash_, chain_hash=chain)
            )
            last[row.case_id] = hash_
        conn.execute(update(s.log_head).where(s.log_head.c.id == 1).values(head_hash=chain))


def test_a_log_written_with_such_values_is_intact(seeded: Store) -> None:
    """Values the quick pass cannot read joined (a separator, a quote, a backslash, non-ASCII)
    in a log written consistently: not proven quickly, then found intact by the full walk."""
    name_at = _middle(seeded, "actor_name", null=False)
    _edit(seeded, name_at, "actor_name", f'Zoë "Z" {SEP} back\\slash')
    sig = s.signatures
    with seeded.engine.begin() as conn:
        first_sig = conn.execute(select(sig.c.id).order_by(sig.c.id)).scalars().first()
        conn.execute(update(sig).where(sig.c.id == first_sig).values(role=f"nurse{SEP}"))
    _rewrite_log(seeded)
    assert _proven(seeded, 1) is None and _proven(seeded, 2) is None
    full = seeded.verify_chains({7}, quick=False)
    assert full.ok and full.events_checked > 40
    assert seeded.verify_chains({7}, jobs=2) == full
    assert seeded.verify_chains({7}, jobs=1) == full
