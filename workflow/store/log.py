"""The append-only, hash-chained event log: create a case, append to it, load it back.

Every writer takes the ``log_head`` row lock first (``SELECT ... FOR UPDATE`` on PostgreSQL; the
``BEGIN IMMEDIATE`` write lock on SQLite), so log positions are handed out one writer at a time
and the lock order is always head, then case: no deadlocks. Optimistic concurrency is the
conditional ``UPDATE cases SET version = new WHERE id = ? AND version = expected``; the
``UNIQUE(case_id, seq)`` constraint is the backstop if that check is ever bypassed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from workflow.core.errors import ConflictError, InputError, IntegrityError, NotFound
from workflow.core.events import EVENT_TYPES, MEANINGS, Event

from . import _schema as s
from ._rows import case_from_row, event_columns, event_from_row, signature_from_row, signatures_for
from .chain import GENESIS_HASH, event_hash, link_hash
from .models import COURSE_ACTIVE, CaseRecord, Cosignature, StoredSignature
from .proven import ProvenChains

CONFLICT_MESSAGE = "this case changed, reload"

# The statements every load and append run, built once: SQLAlchemy builds and keys a statement
# made per call again each time (about 0.15 ms of CPU for a wide table; a step request ran a
# dozen of them: bench/profile_step.py). Parameters are bound by name at execution.
_VERSION = select(s.cases.c.version).where(s.cases.c.id == bindparam("case_id"))
_EVENTS = (
    select(s.events).where(s.events.c.case_id == bindparam("case_id")).order_by(s.events.c.seq)
)
_SIGNATURES = (
    select(s.signatures)
    .join(s.events, s.events.c.id == s.signatures.c.event_id)
    .where(s.events.c.case_id == bindparam("case_id"))
    .order_by(s.signatures.c.id)
)
# The case row as moved comes back with the update: not read again after the append.
_MOVE_CASE = (
    update(s.cases)
    .where(s.cases.c.id == bindparam("b_case_id"), s.cases.c.version == bindparam("b_expected"))
    .returning(*s.cases.c)
)
_HASH_AT = select(s.events.c.hash).where(
    s.events.c.case_id == bindparam("case_id"), s.events.c.seq == bindparam("seq")
)
# The head row, locked until the transaction ends: read whole where it is locked, so a writer
# does not read it again to find the log's length and last hash (a round trip per append).
_LOCK_HEAD = select(s.log_head).where(s.log_head.c.id == 1).with_for_update()
_INSERT_EVENT = insert(s.events)
_INSERT_SIGNATURE = insert(s.signatures)
_MOVE_HEAD = update(s.log_head).where(s.log_head.c.id == 1)


def create_case(
    conn: Connection,
    opening: Event,
    *,
    course_id: str,
    cycle: int,
    dose_in_cycle: int,
    dose_in_course: int,
    scheduled_at: datetime,
    state: str,
    protocol_version: str,
    protocol_hash: str,
    cosignatures: Sequence[Cosignature] = (),
) -> CaseRecord:
    _check_batch(opening.case_id, 1, [opening], cosignatures)
    _check_protocol(protocol_version, protocol_hash)
    _fits("case_id", opening.case_id, 64)
    _fits("state", state, 100)
    for name, value in (
        ("cycle", cycle),
        ("dose_in_cycle", dose_in_cycle),
        ("dose_in_course", dose_in_course),
    ):
        if value < 1:
            raise InputError(name, "must be 1 or more")
    course = conn.execute(select(s.courses).where(s.courses.c.id == course_id)).first()
    if course is None:
        raise NotFound(f"no course {course_id}")
    if course.status != COURSE_ACTIVE:
        raise InputError("course_id", f"course {course_id} is {course.status}, not active")
    head = _lock_head(conn)
    values = {
        "id": opening.case_id,
        "course_id": course_id,
        "patient_id": course.patient_id,
        "cycle": cycle,
        "dose_in_cycle": dose_in_cycle,
        "dose_in_course": dose_in_course,
        "state": state,
        "version": 1,
        "scheduled_at": scheduled_at,
        "protocol_version": protocol_version,
        "protocol_hash": protocol_hash,
        "updated_at": opening.at,
    }
    try:
        conn.execute(insert(s.cases).values(**values))
    except DBIntegrityError:
        raise ConflictError(f"case {opening.case_id} already exists") from None
    _write_events(
        conn, head, [opening], protocol_version, protocol_hash, GENESIS_HASH, cosignatures
    )
    row = conn.execute(select(s.cases).where(s.cases.c.id == opening.case_id)).one()
    return case_from_row(row)


def append(
    conn: Connection,
    case_id: str,
    expected_version: int,
    events: Sequence[Event],
    *,
    protocol_version: str,
    protocol_hash: str,
    state: str | None = None,
    scheduled_at: datetime | None = None,
    cosignatures: Sequence[Cosignature] = (),
) -> CaseRecord:
    _check_batch(case_id, expected_version + 1, events, cosignatures)
    _check_protocol(protocol_version, protocol_hash)
    head = _lock_head(conn)
    _fits("state", state, 100)
    new_version = expected_version + len(events)
    changes: dict[str, Any] = {"version": new_version, "updated_at": events[-1].at}
    if state is not None:
        changes["state"] = state
    if scheduled_at is not None:
        changes["scheduled_at"] = scheduled_at
    moved = conn.execute(
        _MOVE_CASE, {"b_case_id": case_id, "b_expected": expected_version, **changes}
    ).first()
    if moved is None:
        exists = conn.execute(select(s.cases.c.id).where(s.cases.c.id == case_id)).first()
        if exists is None:
            raise NotFound(f"no case {case_id}")
        raise ConflictError(CONFLICT_MESSAGE)
    prev = conn.execute(_HASH_AT, {"case_id": case_id, "seq": expected_version}).first()
    if prev is None:
        raise IntegrityError(f"case {case_id}: event {expected_version} is missing from the log")
    try:
        _write_events(conn, head, events, protocol_version, protocol_hash, prev.hash, cosignatures)
    except DBIntegrityError:
        # UNIQUE(case_id, seq) fired: another writer got in despite the version check.
        raise ConflictError(CONFLICT_MESSAGE) from None
    return case_from_row(moved)


def load_events(
    conn: Connection,
    case_id: str,
    *,
    verify: bool = True,
    proven: ProvenChains | None = None,
) -> list[Event]:
    """The case's events in order. With ``verify`` (the default) the case's chain is checked
    while loading, so nobody replays a case whose log was altered (IntegrityError). With
    ``proven``, the walk starts after the events whose rows a walk already passed, unchanged
    (workflow/store/proven.py)."""
    case = conn.execute(_VERSION, {"case_id": case_id}).first()
    if case is None:
        raise NotFound(f"no case {case_id}")
    return load_chain(conn, case_id, case.version, verify=verify, proven=proven)[0]


def load_chain(
    conn: Connection,
    case_id: str,
    version: int,
    *,
    verify: bool = True,
    proven: ProvenChains | None = None,
) -> tuple[list[Event], list[str]]:
    """:func:`load_events` for a case whose row (``version``) the caller read in this snapshot,
    and each event's chain hash. With ``verify``, the hash of event n stands for events 1..n
    whole (each row's hash covers its content, signatures and the hash before it), so a
    caller may know two loads' first n events equal by that one hash (service/replayed.py)."""
    rows = conn.execute(_EVENTS, {"case_id": case_id}).all()
    events = [event_from_row(r) for r in rows]
    if verify:
        sig_rows: dict[int, list[Any]] = defaultdict(list)
        for r in _signature_rows(conn, case_id):
            sig_rows[r.event_id].append(r)
        # Everything the walk reads of each event, as plain values.
        read = [(tuple(r), tuple(tuple(x) for x in sig_rows.get(r.id, ()))) for r in rows]
        start = proven.prefix(case_id, read) if proven is not None else 0
        _check_chain(case_id, rows, events, sig_rows, start)
        if len(events) != version:
            raise IntegrityError(
                f"case {case_id}: the case records {version} events, the log holds {len(events)}"
            )
        if proven is not None and start < len(read):
            proven.remember(case_id, read)
    return events, [str(r.hash) for r in rows]


def _check_chain(
    case_id: str,
    rows: Sequence[Any],
    events: Sequence[Event],
    sig_rows: dict[int, list[Any]],
    start: int = 0,
) -> None:
    """Walk the chain from event ``start + 1``; events 1..start are proven already."""
    prev = rows[start - 1].hash if start else GENESIS_HASH
    for n in range(start + 1, len(rows) + 1):
        row, event = rows[n - 1], events[n - 1]
        if row.seq != n:
            raise IntegrityError(f"case {case_id}: event {n} is missing from the log")
        sigs = [signature_from_row(x, case_id, row.seq) for x in sig_rows.get(row.id, ())]
        if row.prev_hash != prev or row.hash != event_hash(
            prev, event, row.protocol_version, row.protocol_hash, sigs
        ):
            raise IntegrityError(
                f"case {case_id}: event {n} was changed after it was written (hash chain broken)"
            )
        prev = row.hash


def case_chain_hash(conn: Connection, case_id: str) -> str:
    """The hash of the case's newest event: what a record signed now is bound to."""
    row = conn.execute(
        select(s.events.c.hash)
        .where(s.events.c.case_id == case_id)
        .order_by(s.events.c.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        raise NotFound(f"no case {case_id}")
    return str(row.hash)


def load_signatures(conn: Connection, case_id: str) -> list[StoredSignature]:
    """Every signature on the case's events, in event order then signing order."""
    rows = conn.execute(
        select(s.signatures, s.events.c.seq)
        .join(s.events, s.events.c.id == s.signatures.c.event_id)
        .where(s.events.c.case_id == case_id)
        .order_by(s.events.c.seq, s.signatures.c.id)
    ).all()
    return [signature_from_row(r, case_id, r.seq) for r in rows]


def _signature_rows(conn: Connection, case_id: str) -> Sequence[Any]:
    return conn.execute(_SIGNATURES, {"case_id": case_id}).all()


def log_head(conn: Connection) -> tuple[int, str]:
    """(length, last chain hash) of the whole log, from its head row."""
    head = conn.execute(select(s.log_head).where(s.log_head.c.id == 1)).one()
    return int(head.event_count), str(head.head_hash)


def _lock_head(conn: Connection) -> Row[Any]:
    """Lock the log's head row (writers queue here) and return it: its length and last hash
    stay as read until this transaction ends."""
    return conn.execute(_LOCK_HEAD).one()


@dataclass(frozen=True)
class HashedEvent:
    """One event with its signature rows and its link in the case's chain."""

    event: Event
    signatures: list[StoredSignature]
    prev_hash: str
    hash: str


def hash_events(
    events: Sequence[Event],
    protocol_version: str,
    protocol_hash: str,
    prev_hash: str,
    cosignatures: Sequence[Cosignature] = (),
) -> list[HashedEvent]:
    """The case-chain links of ``events`` following ``prev_hash``. The one place a stored
    event's hash is computed: live appends and the bulk loader (``bulk.py``) both use it."""
    out: list[HashedEvent] = []
    for event in events:
        sigs = signatures_for(event, cosignatures)
        hash_ = event_hash(prev_hash, event, protocol_version, protocol_hash, sigs)
        out.append(HashedEvent(event, sigs, prev_hash, hash_))
        prev_hash = hash_
    return out


def _write_events(
    conn: Connection,
    head: Row[Any],
    events: Sequence[Event],
    protocol_version: str,
    protocol_hash: str,
    prev_hash: str,
    cosignatures: Sequence[Cosignature],
) -> None:
    position, chain = head.event_count, head.head_hash
    for link in hash_events(events, protocol_version, protocol_hash, prev_hash, cosignatures):
        event, sigs, hash_ = link.event, link.signatures, link.hash
        position += 1
        chain = link_hash(chain, position, hash_)
        result = conn.execute(
            _INSERT_EVENT,
            {
                **event_columns(event),
                "log_seq": position,
                "protocol_version": protocol_version,
                "protocol_hash": protocol_hash,
                "prev_hash": link.prev_hash,
                "hash": hash_,
                "chain_hash": chain,
            },
        )
        event_id = result.inserted_primary_key[0]  # type: ignore[index]
        for sig in sigs:
            conn.execute(
                _INSERT_SIGNATURE,
                {
                    "event_id": event_id,
                    "user_id": sig.user_id,
                    "printed_name": sig.printed_name,
                    "role": sig.role,
                    "meaning": sig.meaning,
                    "signed_at": sig.signed_at,
                    "content_hash": sig.content_hash,
                },
            )
    conn.execute(
        _MOVE_HEAD, {"event_count": position, "head_hash": chain, "updated_at": events[-1].at}
    )


def _check_batch(
    case_id: str, first_seq: int, events: Sequence[Event], cosignatures: Sequence[Cosignature]
) -> None:
    """Refuse a malformed batch before anything is written (these are caller mistakes)."""
    if not events:
        raise InputError("events", "nothing to append")
    if first_seq < 1:
        raise InputError("expected_version", "must be 0 or more")
    for offset, event in enumerate(events):
        if event.case_id != case_id:
            raise InputError(
                "events", f"event {event.seq} belongs to case {event.case_id}, not {case_id}"
            )
        if event.seq != first_seq + offset:
            raise InputError(
                "events",
                f"event numbers must continue the case: expected "
                f"{first_seq + offset}, got {event.seq}",
            )
        if event.type not in EVENT_TYPES:
            raise InputError(
                "events", f"unknown event type {event.type!r}", ", ".join(sorted(EVENT_TYPES))
            )
        if event.meaning is not None:
            if event.meaning not in MEANINGS:
                raise InputError(
                    "meaning",
                    f"unknown signature meaning {event.meaning!r}",
                    ", ".join(sorted(MEANINGS)),
                )
            if event.actor is None:
                raise InputError(
                    "events", f"event {event.seq} has a signature meaning but no signer"
                )
        if event.corrects is not None and not 1 <= event.corrects < event.seq:
            raise InputError("corrects", f"event {event.seq} can only correct an earlier event")
        _fits("step", event.step, 100)
        if event.actor is not None:
            _fits("user_id", event.actor.user_id, 64)
            _fits("name", event.actor.name, 200)
            _fits("role", event.actor.role, 32)
        try:
            event.content_hash()  # refuses naive times and floats in data
        except (TypeError, ValueError) as exc:
            raise InputError("events", f"event {event.seq}: {exc}") from None
    seqs = {e.seq for e in events}
    for co in cosignatures:
        _fits("user_id", co.signer.user_id, 64)
        _fits("name", co.signer.name, 200)
        _fits("role", co.signer.role, 32)
        if co.seq not in seqs:
            raise InputError("cosignatures", f"no event {co.seq} in this batch")
        if co.meaning not in MEANINGS:
            raise InputError(
                "meaning", f"unknown signature meaning {co.meaning!r}", ", ".join(sorted(MEANINGS))
            )


def _fits(field: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise InputError(field, f"is longer than {limit} characters")


def _check_protocol(version: str, hash_: str) -> None:
    _fits("protocol_version", version, 32)
    if len(hash_) != 64:
        raise InputError("protocol_hash", "must be a SHA-256 hex digest")
