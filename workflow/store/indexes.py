"""Indexes that keep the worklists and archive search fast on a hospital-sized database
(migration ``0006_scale_indexes``), and the text-search index each database can offer.

Why raw DDL and not ``Index`` objects on the tables in ``_schema``: an ``Index`` bound to a
table's columns becomes part of that table, so migration 0001 (which creates the tables from
``_schema``) would create it too and this migration would collide with it on a new database.

Text search ("part of a name or MRN") is a substring match, which no B-tree can serve:

* PostgreSQL: trigram GIN indexes (``pg_trgm``) on ``patient_name`` and ``mrn``; ``ILIKE
  '%text%'`` then reads only the rows that share the pattern's trigrams. Creating the extension
  needs a privileged role; where that is refused the migration still succeeds and search falls
  back to scanning (``bedside`` says so in the README's deployment section: ask the DBA for
  ``CREATE EXTENSION pg_trgm``, then rerun ``create_text_index``).
* SQLite: an FTS5 table with the trigram tokenizer (``archive_text``), filled by a trigger on
  every insert into ``archived_records`` (the index is write-once, so no update or delete
  trigger is needed) and back-filled here for rows written before this migration.
"""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from ._tx import is_sqlite

# Shared by both databases. Worklist and pharmacy queue: ``state IN (...) ORDER BY
# scheduled_at, id`` reads only the queued states' entries, never the finished cases'.
_COMMON = (
    "CREATE INDEX IF NOT EXISTS ix_cases_queue ON cases (state, scheduled_at, id)",
    # Superseded by ix_cases_queue (same leading columns).
    "DROP INDEX IF EXISTS ix_cases_worklist",
    # Archive newest first with the query's tie-break (a case's two records share signed_at),
    # in the query's own directions so no sort step remains; also serves keyset paging.
    "CREATE INDEX IF NOT EXISTS ix_archived_signed ON archived_records (signed_at DESC, sha256)",
    # Superseded by ix_archived_signed (same leading column).
    "DROP INDEX IF EXISTS ix_archived_records_signed_at",
    # One patient's records newest first, without sorting that patient's whole history.
    "CREATE INDEX IF NOT EXISTS ix_archived_mrn_signed "
    "ON archived_records (mrn, signed_at DESC, sha256)",
    "DROP INDEX IF EXISTS ix_archived_records_mrn",  # superseded (same leading column)
    # Cases of one course in dose order (course_cases replays a course on every new dose).
    "CREATE INDEX IF NOT EXISTS ix_cases_course_dose ON cases (course_id, dose_in_course)",
)

SQLITE_TEXT_TABLE = "archive_text"

_SQLITE_TEXT = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS archive_text "
    "USING fts5(patient_name, mrn, tokenize='trigram')",
    """CREATE TRIGGER IF NOT EXISTS archived_records_text AFTER INSERT ON archived_records
    BEGIN
        INSERT INTO archive_text(rowid, patient_name, mrn)
        VALUES (new.rowid, new.patient_name, new.mrn);
    END""",
    "INSERT INTO archive_text(rowid, patient_name, mrn) "
    "SELECT rowid, patient_name, mrn FROM archived_records",
)

_PG_TEXT = (
    "CREATE INDEX IF NOT EXISTS ix_archived_name_trgm ON archived_records "
    'USING gin (patient_name "{schema}".gin_trgm_ops)',
    "CREATE INDEX IF NOT EXISTS ix_archived_mrn_trgm ON archived_records "
    'USING gin (mrn "{schema}".gin_trgm_ops)',
)


def scale_indexes(conn: Connection) -> None:
    """Migration 0006: the shared indexes, then the text index this database supports."""
    for ddl in _COMMON:
        conn.execute(text(ddl))
    create_text_index(conn)


def create_text_index(conn: Connection) -> bool:
    """Create the substring-search index; False when PostgreSQL refuses ``pg_trgm``."""
    if is_sqlite(conn.engine):
        for ddl in _SQLITE_TEXT:
            conn.execute(text(ddl))
        return True
    # A savepoint: a refused CREATE EXTENSION must not abort the migration's transaction.
    # In ``public`` when there is one: an extension lives in one schema per database, and one
    # created in a schema that is later dropped would take every trigram index with it.
    for ddl in (
        "CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    ):
        savepoint = conn.begin_nested()
        try:
            conn.execute(text(ddl))
        except DBAPIError:  # no right to create it, or not installed: try the next form
            savepoint.rollback()
            continue
        savepoint.commit()
        break
    schema = conn.execute(
        text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pg_trgm'"
        )
    ).scalar()
    if schema is None:
        return False
    for ddl in _PG_TEXT:
        conn.execute(text(ddl.format(schema=schema)))
    return True


def has_text_index(conn: Connection) -> bool:
    """Whether search can use the substring index (decides the query's shape on SQLite)."""
    if is_sqlite(conn.engine):
        found = conn.execute(
            text("SELECT 1 FROM sqlite_master WHERE name = :n"), {"n": SQLITE_TEXT_TABLE}
        ).first()
        return found is not None
    found = conn.execute(
        text(
            "SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() "
            "AND indexname = 'ix_archived_name_trgm'"
        )
    ).first()
    return found is not None
