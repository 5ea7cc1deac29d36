"""The quick pass of ``audit verify``: proves an intact log intact, 4-5 times faster than the walk.

It makes every check of the full walk (verify.py) on every event: log positions 1..N with no
gap, each event's content against its hash (its canonical JSON rebuilt from the row, its
signature rows included), each event next in its case and linked to the case's previous event,
each signature bound to its event's content, each link of the whole-log chain, the log head
(length and last chain hash) and every case's recorded version. It only ever answers "proven"
(a ChainReport with no problems) or "not proven" (None); on "not proven" the full walk runs and
gives the verdict and the words, so a broken log is reported exactly as before.

Why it is fast: the rows come straight from the database driver as tuples (no SQLAlchemy row
or type processing), only the columns the hashes need, streamed in log order (in chunks of
rows on PostgreSQL, the cursor itself on SQLite), the event time formatted by the database,
the strings an event shares with others joined into one value turned into JSON once (_CONTEXT);
and the log is split into contiguous ranges of log positions checked in ``jobs`` worker
processes, each with its own connection. A range starts from the chain hash stored in the row
before it; the seams are then checked here: each range's starting hash is the previous range's
last one, and each case's first event in a range links to its last event in the ranges before.

The workers read rows at or below the log head this process read in its own transaction.
Those rows never change (the log is append-only; an event and its signatures are written in
one transaction with the head), so every worker sees the same rows whatever it started after.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from typing import Any

from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from .chain import GENESIS_HASH
from .models import ChainReport

# Below this many events per worker, starting the workers costs more than it saves.
MIN_RANGE = 10_000
# At most this many events per range: a range's signature rows are held while it is checked.
MAX_RANGE = 200_000
RANGES_PER_JOB = 3  # a few ranges per worker: a worker slowed by the machine does not hold all
_FETCH = 5_000  # rows per chunk of the PostgreSQL stream

# The event time in SQLite's storage shape (SQLAlchemy's "YYYY-MM-DD HH:MM:SS.ffffff", UTC);
# PostgreSQL writes it so. The loop turns it into format_time's "...T...Z" by slicing; a stored
# time of another length or separator fails the quick check and the full walk judges it.
_SQLITE_TIME = "{c}"
_PG_TIME = "to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"

# The strings an event shares with many others (its type, step, actor, meaning and protocol)
# come joined into one text, its "context": the database hands over one value where it handed
# over eight, and Python turns each context into its JSON fragments once (_Contexts): a quarter
# less Python per event, and on PostgreSQL a third less for psycopg reading the rows (SQLite's
# joining costs it about what its driver saves). Joined by U+001F; a missing value is "!",
# a present one is "=" and the value, so that NULL and "" stay apart; an actor's name and role
# count only with its user id, and then a NULL one is "" (as Event.to_json has it). A text
# holding U+001F splits into too many parts: not proven here (the full walk judges it).
_SEP = "\x1f"
_CONTEXT = (
    "e.type || {sep} || coalesce('=' || e.step, '!') || {sep} || "
    "coalesce('=' || e.actor_user_id, '!') || {sep} || coalesce(e.actor_name, '') || {sep} || "
    "coalesce(e.actor_role, '') || {sep} || coalesce('=' || e.meaning, '!') || {sep} || "
    "e.protocol_hash || {sep} || e.protocol_version"
)
_SIGNER = "s.meaning || {sep} || s.printed_name || {sep} || s.role || {sep} || s.user_id"
_SEP_SQL = {"sqlite": "char(31)", "postgresql": "chr(31)"}

_EVENTS = (
    "SELECT e.log_seq, e.case_id, e.seq, {context}, {at}, e.corrects, e.data, e.prev_hash, "
    "e.hash, e.chain_hash FROM events e "
    "WHERE e.log_seq BETWEEN {p} AND {p} ORDER BY e.log_seq"
)
# Signatures in id order within their event, as the full walk takes them.
_SIGNATURES = (
    "SELECT e.log_seq, s.content_hash, {signer}, {signed_at} "
    "FROM signatures s JOIN events e ON e.id = s.event_id "
    "WHERE e.log_seq BETWEEN {p} AND {p} ORDER BY e.log_seq, s.id"
)
_TIME_LENGTH = len("2026-12-02 15:59:00.000000")
_CHAIN_BEFORE = "SELECT chain_hash FROM events WHERE log_seq = {p}"


@dataclass
class _Range:
    """What a checked range of log positions hands back for the seams: the chain hash it
    started from and its last one, each case's first event in it (seq, prev_hash) and last
    (seq, hash), and the wanted chain hashes in it."""

    start_chain: str
    last_chain: str
    firsts: dict[str, tuple[int, str]] = field(default_factory=dict)
    lasts: dict[str, tuple[int, str]] = field(default_factory=dict)
    chain_at: dict[int, str] = field(default_factory=dict)


def quick_verify(
    conn: Connection, wanted: set[int], jobs: int = 1, url: URL | None = None
) -> ChainReport | None:
    """A report proving the log intact, or None when anything is not proven. ``jobs`` > 1
    checks ranges of the log in that many worker processes, each connecting to ``url``
    (default: ``conn``'s; an in-memory SQLite database is checked here, in one range)."""
    head = conn.exec_driver_sql("SELECT event_count, head_hash FROM log_head WHERE id = 1").first()
    if head is None:
        return None
    length, head_hash = int(head[0]), head[1]
    lowest, highest = conn.exec_driver_sql("SELECT min(log_seq), max(log_seq) FROM events").one()
    if length == 0:
        if lowest is not None or head_hash != GENESIS_HASH:
            return None
    elif lowest != 1 or highest != length:
        return None
    dialect = conn.dialect.name
    bounds = _ranges(length, jobs)
    url = url or conn.engine.url
    ranges: Generator[_Range | None, None, None]
    if jobs > 1 and len(bounds) > 1 and _separate_connections(url):
        ranges = _in_workers(
            url.render_as_string(hide_password=False), dialect, bounds, wanted, jobs
        )
    else:
        raw = conn.connection.driver_connection
        ranges = (_check_range(raw, dialect, first, last, wanted) for first, last in bounds)
    with closing(ranges):  # a range not proven: the ranges not yet started are dropped
        return _stitch(conn, ranges, length, head_hash, wanted)


def _ranges(length: int, jobs: int) -> list[tuple[int, int]]:
    """Contiguous ranges of log positions 1..length, a few per worker, none below MIN_RANGE."""
    if length == 0:
        return []
    spread = min(jobs * RANGES_PER_JOB if jobs > 1 else 1, length // MIN_RANGE)
    n = max(1, spread, -(-length // MAX_RANGE))
    size = -(-length // n)
    return [(first, min(first + size - 1, length)) for first in range(1, length + 1, size)]


def _separate_connections(url: URL) -> bool:
    """Whether a worker process can open the same database (not an in-memory SQLite one)."""
    if url.get_backend_name() != "sqlite":
        return True
    database = url.database or ""
    return database not in ("", ":memory:") and "mode=memory" not in database


def _stitch(
    conn: Connection,
    ranges: Iterable[_Range | None],
    length: int,
    head_hash: str,
    wanted: set[int],
) -> ChainReport | None:
    """Join the ranges at their seams, then the head and every case's version."""
    chain = GENESIS_HASH
    cases: dict[str, tuple[int, str]] = {}
    chain_at = {0: GENESIS_HASH} if 0 in wanted else {}
    for part in ranges:
        if part is None or part.start_chain != chain:
            return None
        for case_id, (seq, prev_hash) in part.firsts.items():
            last_seq, last_hash = cases.get(case_id, (0, GENESIS_HASH))
            if seq != last_seq + 1 or prev_hash != last_hash:
                return None
        cases.update(part.lasts)
        chain_at.update(part.chain_at)
        chain = part.last_chain
    if chain != head_hash:
        return None
    n_cases = 0
    for case_id, version in conn.exec_driver_sql("SELECT id, version FROM cases"):
        n_cases += 1
        if cases.get(case_id, (0, ""))[0] != version:
            return None
    return ChainReport(length, n_cases, head_hash, (), chain_at, length)


def _in_workers(
    url: str, dialect: str, bounds: list[tuple[int, int]], wanted: set[int], jobs: int
) -> Generator[_Range | None, None, None]:
    """Each range checked in a worker process with its own connection, answers in log order."""
    with ProcessPoolExecutor(min(jobs, len(bounds)), mp_context=_start_method()) as pool:
        futures = [
            pool.submit(_check_range_at, url, dialect, first, last, wanted)
            for first, last in bounds
        ]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def _start_method() -> BaseContext:
    """Fork where there is one (the worker starts with everything imported); a worker opens a
    connection of its own and touches nothing of the parent's."""
    if "fork" in get_all_start_methods():
        return get_context("fork")
    return get_context("spawn")


def _check_range_at(
    url: str, dialect: str, first: int, last: int, wanted: set[int]
) -> _Range | None:
    """In a worker: one range over a connection of its own, in one read transaction."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        raw = engine.raw_connection()
        try:
            if dialect == "sqlite":
                raw.driver_connection.isolation_level = None  # type: ignore[union-attr]
                raw.driver_connection.execute("BEGIN")  # type: ignore[union-attr]
            return _check_range(raw.driver_connection, dialect, first, last, wanted)
        finally:
            raw.rollback()
            raw.close()
    finally:
        engine.dispose()


def _check_range(raw: Any, dialect: str, first: int, last: int, wanted: set[int]) -> _Range | None:
    """Every event at log positions first..last over the driver connection ``raw``."""
    try:
        return _read_range(raw, dialect, first, last, wanted)
    except (TypeError, ValueError, AttributeError, UnicodeError):
        return None  # a value of a type or shape no writer stores: the full walk judges it


def range_sql(dialect: str) -> tuple[str, str]:
    """The statements reading a range's events and its signatures (parameters: first, last)."""
    sep = _SEP_SQL[dialect]
    if dialect == "postgresql":
        p, time_sql = "%s", _PG_TIME
    else:
        p, time_sql = "?", _SQLITE_TIME
    events = _EVENTS.format(p=p, at=time_sql.format(c="e.at"), context=_CONTEXT.format(sep=sep))
    signatures = _SIGNATURES.format(
        p=p, signed_at=time_sql.format(c="s.signed_at"), signer=_SIGNER.format(sep=sep)
    )
    return events, signatures


def _read_range(raw: Any, dialect: str, first: int, last: int, wanted: set[int]) -> _Range | None:
    events_sql, signatures_sql = range_sql(dialect)
    cur = raw.cursor()
    try:
        if first == 1:
            start_chain = GENESIS_HASH
        else:
            cur.execute(
                _CHAIN_BEFORE.format(p="%s" if dialect == "postgresql" else "?"), (first - 1,)
            )
            before = cur.fetchone()
            if before is None:
                return None
            start_chain = before[0]
        cur.execute(signatures_sql, (first, last))
        quoted = _Quoted({None: "null"})
        signatures = _signature_texts(cur.fetchall(), _Signers(quoted))
    finally:
        cur.close()
    chunked = dialect == "postgresql" and _chunked_rows()
    if dialect == "postgresql" and not chunked:
        events = raw.cursor(name="bedside_verify")  # server-side: the range is streamed
        events.itersize = _FETCH
    else:
        events = raw.cursor()
    try:
        rows: Iterator[Any]
        if chunked:
            # Streamed in chunks of _FETCH rows (libpq's chunked rows mode) rather than through
            # a server-side cursor: about half the client's CPU for the rows and half the
            # server's (measured; README "Speed").
            rows = events.stream(events_sql, (first, last), size=_FETCH)
        else:
            events.execute(events_sql, (first, last))
            rows = iter(events)
        try:
            return _check_rows(rows, first, last, start_chain, signatures, wanted, quoted)
        finally:
            if chunked:
                # The rows not checked (a range not proven) are read to the end, not dropped:
                # dropping the stream cancels its statement, which aborts the transaction the
                # full walk reads in next.
                deque(rows, maxlen=0)
    finally:
        events.close()


def _chunked_rows() -> bool:
    """Whether psycopg can stream rows in chunks (libpq 17 or later); before, a server-side
    cursor streams them."""
    from psycopg import capabilities  # imported here: SQLite alone never needs the driver

    return capabilities.has_stream_chunked()


class _Quoted(dict[Any, str]):
    """Strings as canonical JSON, each quoted once: most values of the log repeat (case ids,
    steps, people, the protocol). None is JSON null."""

    def __missing__(self, value: str) -> str:
        quoted = self[value] = _quote(value)
        return quoted


def _parts(text: str, n: int) -> list[str]:
    """The ``n`` values joined in ``text`` (a context or signer from the database)."""
    parts = text.split(_SEP)
    if len(parts) != n:
        raise ValueError("a value holding the separator")  # not proven: the full walk judges
    return parts


def _maybe(part: str) -> str | None:
    """A nullable value as joined: "!" for NULL, "=" and the value."""
    if part == "!":
        return None
    if part[:1] != "=":
        raise ValueError("a nullable value not marked")
    return part[1:]


class _Contexts(dict[str, tuple[str, str, str, str]]):
    """An event context (type, step, actor, meaning, protocol joined) -> its JSON fragments:
    the event's text up to its time, from its data to its seq, after its seq, and the record's
    text after the event up to its signatures."""

    def __init__(self, quoted: _Quoted) -> None:
        super().__init__()
        self.quoted = quoted

    def __missing__(self, context: str) -> tuple[str, str, str, str]:
        q = self.quoted
        type_, step, user_id, name, role, meaning, protocol_hash, protocol_version = _parts(
            context, 8
        )
        actor_id = _maybe(user_id)
        if actor_id is None:
            actor = "null"
        else:
            actor = f'{{"name":{q[name]},"role":{q[role]},"user_id":{q[actor_id]}}}'
        fragments = self[context] = (
            f'{{"actor":{actor},"at":"',
            f',"meaning":{q[_maybe(meaning)]},"seq":',
            f',"step":{q[_maybe(step)]},"type":{q[type_]}}}',
            f',"protocol":{{"hash":{q[protocol_hash]},"version":{q[protocol_version]}}},'
            '"signatures":[',
        )
        return fragments


class _Signers(dict[str, tuple[str, str]]):
    """A signer (meaning, printed name, role, user id joined) -> the JSON fragments of its
    signature around the time."""

    def __init__(self, quoted: _Quoted) -> None:
        super().__init__()
        self.quoted = quoted

    def __missing__(self, signer: str) -> tuple[str, str]:
        q = self.quoted
        meaning, printed_name, role, user_id = _parts(signer, 4)
        fragments = self[signer] = (
            f'","meaning":{q[meaning]},"printed_name":{q[printed_name]},"role":{q[role]},'
            '"signed_at":"',
            f'Z","user_id":{q[user_id]}}}',
        )
        return fragments


def _signature_texts(rows: list[Any], signers: _Signers) -> dict[int, tuple[str | None, str]]:
    """Log position -> (the content hash its event's signatures are bound to, their canonical
    JSON list items); the hash is None when its signatures name different contents (not
    proven)."""
    out: dict[int, tuple[str | None, str]] = {}
    for log_seq, content_hash, signer, signed_at in rows:
        if len(signed_at) != _TIME_LENGTH or signed_at[10] != " ":
            raise ValueError("a signature time not in the stored shape")
        before_time, after_time = signers[signer]
        # The content hash goes in unquoted: the event passes only if it equals the hex
        # digest of the event's content, which JSON quoting leaves as it is.
        text = (
            f'{{"content_hash":"{content_hash}{before_time}'
            f"{signed_at[:10]}T{signed_at[11:]}{after_time}"
        )
        before = out.get(log_seq)
        if before is None:
            out[log_seq] = (content_hash, text)
        else:
            bound = before[0] if before[0] == content_hash else None
            out[log_seq] = (bound, f"{before[1]},{text}")
    return out


def _check_rows(
    rows: Iterable[Any],
    first: int,
    last: int,
    chain: str,
    signatures: dict[int, tuple[str | None, str]],
    wanted: set[int],
    quoted: _Quoted,
) -> _Range | None:
    """The loop every event goes through; kept flat (locals, no calls it can avoid): it is
    the whole cost of verifying an intact log."""
    sha256 = hashlib.sha256
    contexts = _Contexts(quoted)
    result = _Range(start_chain=chain, last_chain=chain)
    firsts = result.firsts
    cases: dict[str, tuple[int, str, str]] = {}  # case id -> last seq, its hash, the id as JSON
    expected = first
    unsigned = ("", "")
    get_signatures = signatures.get
    for (
        log_seq,
        case_id,
        seq,
        context,
        at,
        corrects,
        data,
        prev_hash,
        hash_,
        chain_hash,
    ) in rows:
        if log_seq != expected or len(at) != _TIME_LENGTH or at[10] != " ":
            return None
        expected += 1
        case = cases.get(case_id)
        if case is None:
            firsts[case_id] = (seq, prev_hash)
            case_json = quoted[case_id]
        elif seq != case[0] + 1 or prev_hash != case[1]:
            return None
        else:
            case_json = case[2]
        cases[case_id] = (seq, hash_, case_json)
        before_time, before_seq, after_seq, protocol = contexts[context]
        event = (
            f'{before_time}{at[:10]}T{at[11:]}Z","case_id":{case_json},'
            f'"corrects":{"null" if corrects is None else int(corrects)},"data":{data}'
            f"{before_seq}{seq}{after_seq}"
        )
        bound, signed = get_signatures(log_seq, unsigned)
        # The content hash binds signatures only (the record's hash covers the content).
        if signed and bound != sha256(event.encode()).hexdigest():
            return None
        record = f'{prev_hash}{{"event":{event}{protocol}{signed}]}}'
        if sha256(record.encode()).hexdigest() != hash_:
            return None
        if sha256(f'["{chain}",{log_seq},"{hash_}"]'.encode()).hexdigest() != chain_hash:
            return None
        chain = chain_hash
        if log_seq in wanted:
            result.chain_at[log_seq] = chain_hash
    if expected != last + 1:
        return None
    result.last_chain = chain
    result.lasts = {case_id: (seq, hash_) for case_id, (seq, hash_, _) in cases.items()}
    return result


# The hashes are over canonical JSON (sorted keys, no spaces, UTF-8): what
# workflow.core.events.canonical_json gives. Its string encoder (ensure_ascii=False) quotes
# and escapes " \\ and control characters.
_quote = json.encoder.encode_basestring
