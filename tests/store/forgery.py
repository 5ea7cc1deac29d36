"""A database-level forger, written with Bedside's own hashing (issue 13.1's attack).

Someone with write access to the database (not to the home) edits one stored event and then
recomputes everything the store checks: the edited event's signature bindings, the case's hash
chain from that event on, the whole-log chain from that position on, and the log head. After
this the database is internally consistent: ``Store.verify_chains`` passes. Only evidence kept
outside the database can tell.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, delete, select, update

from workflow.store import _schema as s
from workflow.store._rows import event_from_row, signature_from_row
from workflow.store.chain import GENESIS_HASH, event_hash, link_hash


def forge_event(
    engine: Engine, case_id: str, seq: int, change: Callable[[dict[str, Any]], None]
) -> None:
    """Change the data of the case's event ``seq`` with ``change`` and recompute every hash
    after it."""
    ev, sig = s.events, s.signatures
    with engine.begin() as conn:
        target = conn.execute(select(ev).where(ev.c.case_id == case_id, ev.c.seq == seq)).first()
        assert target is not None, f"no event {seq} in case {case_id}"
        data = json.loads(target.data)
        change(data)
        conn.execute(update(ev).where(ev.c.id == target.id).values(data=json.dumps(data)))
        edited = conn.execute(select(ev).where(ev.c.id == target.id)).one()
        conn.execute(
            update(sig)
            .where(sig.c.event_id == target.id)
            .values(content_hash=event_from_row(edited).content_hash())
        )
        prev = GENESIS_HASH
        rows = conn.execute(select(ev).where(ev.c.case_id == case_id).order_by(ev.c.seq)).all()
        for row in rows:
            sig_rows = conn.execute(
                select(sig).where(sig.c.event_id == row.id).order_by(sig.c.id)
            ).all()
            signatures = [signature_from_row(r, case_id, row.seq) for r in sig_rows]
            hash_ = event_hash(
                prev, event_from_row(row), row.protocol_version, row.protocol_hash, signatures
            )
            conn.execute(update(ev).where(ev.c.id == row.id).values(prev_hash=prev, hash=hash_))
            prev = hash_
        chain = GENESIS_HASH
        for row in conn.execute(select(ev.c.id, ev.c.log_seq, ev.c.hash).order_by(ev.c.log_seq)):
            chain = link_hash(chain, row.log_seq, row.hash)
            conn.execute(update(ev).where(ev.c.id == row.id).values(chain_hash=chain))
        conn.execute(update(s.log_head).where(s.log_head.c.id == 1).values(head_hash=chain))


def delete_index_rows(engine: Engine, case_id: str) -> int:
    """Remove the case's rows from the archive index, as the forger would to hide its records."""
    with engine.begin() as conn:
        t = s.archived_records
        return int(conn.execute(delete(t).where(t.c.case_id == case_id)).rowcount or 0)
