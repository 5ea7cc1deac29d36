"""The searchable index of archived (signed) records. Entries are added, never changed: the
archive is write-once, and the sha256 key is the PDF's own hash, so a re-added file is refused."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict
from datetime import datetime

from sqlalchemy import Connection, and_, func, insert, or_, select, text
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.sql.elements import ColumnElement, TextClause

from workflow.core.errors import ConflictError, InputError, NotFound

from . import _schema as s
from .indexes import has_text_index
from .models import ArchivedRecord

MAX_PAGE = 500


def add_archived_record(conn: Connection, record: ArchivedRecord) -> None:
    if len(record.sha256) != 64:
        raise InputError("sha256", "must be a SHA-256 hex digest")
    try:
        conn.execute(insert(s.archived_records).values(**asdict(record)))
    except DBIntegrityError:
        # Either this very file (a retry) or another file with the same events (a race another
        # process won); the caller tells them apart with find_archived_record.
        raise ConflictError(f"record {record.sha256} is already archived") from None


def find_archived_record(
    conn: Connection, case_id: str, kind: str, events_sha256: str
) -> ArchivedRecord | None:
    """The record of ``kind`` that embeds exactly these events, if one is archived."""
    t = s.archived_records
    row = conn.execute(
        select(t).where(
            t.c.case_id == case_id, t.c.kind == kind, t.c.events_sha256 == events_sha256
        )
    ).first()
    return None if row is None else ArchivedRecord(**row._mapping)


def cases_missing_record(conn: Connection, states: Collection[str], kind: str) -> list[str]:
    """Ids of cases in ``states`` with no archived record of ``kind``, oldest first.

    One anti-join on the index's ``case_id``: the cost follows the ended cases, not the
    number of archived records times the pages it would take to list them.
    """
    c, a = s.cases, s.archived_records
    has_record = select(a.c.sha256).where(a.c.case_id == c.c.id, a.c.kind == kind).exists()
    query = (
        select(c.c.id)
        .where(c.c.state.in_(list(states)), ~has_record)
        .order_by(c.c.scheduled_at, c.c.id)
    )
    return list(conn.execute(query).scalars())


def count_archived(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(s.archived_records)).scalar_one())


def is_archived(conn: Connection, sha256: str) -> bool:
    t = s.archived_records
    return conn.execute(select(t.c.sha256).where(t.c.sha256 == sha256)).first() is not None


def get_archived_record(conn: Connection, sha256: str) -> ArchivedRecord:
    row = conn.execute(
        select(s.archived_records).where(s.archived_records.c.sha256 == sha256)
    ).first()
    if row is None:
        raise NotFound(f"no archived record {sha256}")
    return ArchivedRecord(**row._mapping)


def search_archive(
    conn: Connection,
    *,
    text: str | None = None,
    mrn: str | None = None,
    case_id: str | None = None,
    signed_from: datetime | None = None,
    signed_to: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
    before: tuple[datetime, str] | None = None,
) -> list[ArchivedRecord]:
    """Records matching every filter, newest first. ``text`` matches a part of the patient's
    name or MRN (case-insensitive); ``signed_to`` is exclusive. ``before`` is the
    ``(signed_at, sha256)`` of the last record of the previous page: keyset paging, which
    costs the same on the thousandth page as on the first (``offset`` re-reads every row it
    skips)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InputError("limit", f"must be between 1 and {MAX_PAGE}")
    if offset < 0:
        raise InputError("offset", "must be 0 or more")
    t = s.archived_records
    query = select(t)
    if text:
        needle = text.strip().lower()
        if needle:
            query = query.where(_text_match(conn, needle))
    if mrn is not None:
        query = query.where(t.c.mrn == mrn)
    if case_id is not None:
        query = query.where(t.c.case_id == case_id)
    if signed_from is not None:
        query = query.where(t.c.signed_at >= signed_from)
    if signed_to is not None:
        query = query.where(t.c.signed_at < signed_to)
    if before is not None:
        at, sha = before
        query = query.where(or_(t.c.signed_at < at, and_(t.c.signed_at == at, t.c.sha256 > sha)))
    query = query.order_by(t.c.signed_at.desc(), t.c.sha256).limit(limit).offset(offset)
    return [ArchivedRecord(**r._mapping) for r in conn.execute(query)]


def _text_match(conn: Connection, needle: str) -> ColumnElement[bool] | TextClause:
    """``needle`` in the name or the MRN. On SQLite the trigram FTS table answers patterns of
    three characters or more (the tokenizer's unit); shorter ones match so many records that
    the newest-first scan finds a page at once. PostgreSQL's trigram GIN indexes serve ILIKE
    directly, so the query is the same with or without them."""
    t = s.archived_records
    if conn.dialect.name == "sqlite" and len(needle) >= 3 and has_text_index(conn):
        phrase = '"' + needle.replace('"', '""') + '"'
        return text(
            "archived_records.rowid IN (SELECT rowid FROM archive_text "
            "WHERE archive_text MATCH :archive_text_phrase)"
        ).bindparams(archive_text_phrase=phrase)
    # '%' and '_' typed by a person are text, never wildcards: escape them (and the escape
    # character itself) so "100%" finds "100%" and not every name starting "100".
    pattern = "%" + _escape_like(needle) + "%"
    return or_(
        t.c.patient_name.ilike(pattern, escape=_LIKE_ESCAPE),
        t.c.mrn.ilike(pattern, escape=_LIKE_ESCAPE),
    )


_LIKE_ESCAPE = "/"


def _escape_like(text: str) -> str:
    return (
        text.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
        .replace("%", _LIKE_ESCAPE + "%")
        .replace("_", _LIKE_ESCAPE + "_")
    )
