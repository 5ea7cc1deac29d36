"""Writing many finished (or part-walked) cases at once: the path ``bedside dev seed`` uses.

The hashes are the live path's (``log.hash_events`` for each case's chain, ``chain.link_hash``
for the whole log), so a bulk-loaded database passes ``bedside audit verify`` exactly as one
filled dose by dose would. What differs is only how rows reach the database: multi-row inserts
in one transaction per batch instead of one transaction per signed step.

Within a batch the events of all its cases are interleaved by time before they get their log
positions, as they would be on a ward where several doses are in progress at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from workflow.core.errors import InputError
from workflow.core.events import Event

from . import _schema as s
from ._rows import event_columns
from .chain import GENESIS_HASH, link_hash
from .log import HashedEvent, _check_batch, _check_protocol, _lock_head, hash_events
from .models import ArchivedRecord, Course, Patient


@dataclass(frozen=True)
class BulkCase:
    """A case's row values and its whole event log (seq 1, 2, ... in order)."""

    events: Sequence[Event]
    course_id: str
    patient_id: str
    cycle: int
    dose_in_cycle: int
    dose_in_course: int
    scheduled_at: datetime
    state: str
    protocol_version: str
    protocol_hash: str


@dataclass(frozen=True)
class BulkResult:
    """The hash of each case's last event (what its records are bound to)."""

    case_hashes: dict[str, str]
    events_written: int


def bulk_load(
    conn: Connection,
    *,
    patients: Sequence[Patient] = (),
    courses: Sequence[Course] = (),
    cases: Sequence[BulkCase] = (),
    records: Sequence[ArchivedRecord] = (),
) -> BulkResult:
    """Insert new patients, courses, whole cases and archive index rows in ``conn``'s
    transaction, extending the whole-log chain from the current head."""
    if patients:
        conn.execute(insert(s.patients), [asdict(p) for p in patients])
    if courses:
        conn.execute(insert(s.courses), [asdict(c) for c in courses])
    result = BulkResult({}, 0)
    if cases:
        result = _write_cases(conn, cases)
    if records:
        for record in records:
            if len(record.sha256) != 64:
                raise InputError("sha256", "must be a SHA-256 hex digest")
        conn.execute(insert(s.archived_records), [asdict(r) for r in records])
    return result


def _write_cases(conn: Connection, cases: Sequence[BulkCase]) -> BulkResult:
    _lock_head(conn)
    linked: list[tuple[BulkCase, HashedEvent]] = []
    hashes: dict[str, str] = {}
    for case in cases:
        if not case.events:
            raise InputError("events", f"case of course {case.course_id} has no events")
        case_id = case.events[0].case_id
        _check_batch(case_id, 1, case.events, ())
        _check_protocol(case.protocol_version, case.protocol_hash)
        links = hash_events(case.events, case.protocol_version, case.protocol_hash, GENESIS_HASH)
        hashes[case_id] = links[-1].hash
        linked.extend((case, link) for link in links)
    conn.execute(insert(s.cases), [_case_row(c) for c in cases])

    # Log order: by time across the batch's cases; each case's own order is kept (seq).
    linked.sort(key=lambda pair: (pair[1].event.at, pair[1].event.case_id, pair[1].event.seq))
    head = conn.execute(select(s.log_head).where(s.log_head.c.id == 1)).one()
    position, chain = head.event_count, head.head_hash
    rows: list[dict[str, Any]] = []
    for case, link in linked:
        position += 1
        chain = link_hash(chain, position, link.hash)
        rows.append(
            {
                **event_columns(link.event),
                "log_seq": position,
                "protocol_version": case.protocol_version,
                "protocol_hash": case.protocol_hash,
                "prev_hash": link.prev_hash,
                "hash": link.hash,
                "chain_hash": chain,
            }
        )
    ids = conn.execute(
        insert(s.events).returning(s.events.c.id, sort_by_parameter_order=True), rows
    ).scalars()
    signature_rows = [
        {
            "event_id": event_id,
            "user_id": sig.user_id,
            "printed_name": sig.printed_name,
            "role": sig.role,
            "meaning": sig.meaning,
            "signed_at": sig.signed_at,
            "content_hash": sig.content_hash,
        }
        for event_id, (_case, link) in zip(ids, linked, strict=True)
        for sig in link.signatures
    ]
    if signature_rows:
        conn.execute(insert(s.signatures), signature_rows)
    conn.execute(
        update(s.log_head)
        .where(s.log_head.c.id == 1)
        .values(event_count=position, head_hash=chain, updated_at=linked[-1][1].event.at)
    )
    return BulkResult(hashes, len(linked))


def _case_row(case: BulkCase) -> dict[str, Any]:
    first, last = case.events[0], case.events[-1]
    return {
        "id": first.case_id,
        "course_id": case.course_id,
        "patient_id": case.patient_id,
        "cycle": case.cycle,
        "dose_in_cycle": case.dose_in_cycle,
        "dose_in_course": case.dose_in_course,
        "state": case.state,
        "version": len(case.events),
        "scheduled_at": case.scheduled_at,
        "protocol_version": case.protocol_version,
        "protocol_hash": case.protocol_hash,
        "updated_at": last.at,
    }
