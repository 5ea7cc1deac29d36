"""Is this SQLite file's schema exactly the one Bedside's migrations make?

A backup is a whole database, schema included, so it can carry objects of its own: a trigger
that resets failed-login counts and deletes refused sign-in events, a view that shadows a
table, a table whose conflict clause silently drops rows. Opened by Bedside, such a file runs
them with Bedside's authority (issue 13.4). So a restore accepts only a database whose
``sqlite_master`` (type, name, table and SQL of every table, index, trigger and view) is exactly
what running the migrations on an empty database gives, built here for the same migrations the
candidate records, and reports each difference by name.

A database upgraded in place has the same text: SQLite writes a column added by ``ALTER TABLE``
(migration 0007) before the table's constraints, where a fresh build puts it (checked by
``tests/store/test_restore.py``); whitespace is folded before comparing.
"""

from __future__ import annotations

import re
import sqlite3
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from workflow.core.errors import IntegrityError

from .migrations import MIGRATIONS, migrate

# (type, name, table, normalised SQL); SQL is None for SQLite's own automatic indexes.
SchemaObject = tuple[str, str, str, str | None]

# Statistics tables ``ANALYZE`` makes (``bedside dev seed`` runs it): SQLite's own, fixed text.
_OPTIONAL = frozenset(
    {
        ("table", "sqlite_stat1", "sqlite_stat1", "CREATE TABLE sqlite_stat1(tbl,idx,stat)"),
        (
            "table",
            "sqlite_stat4",
            "sqlite_stat4",
            "CREATE TABLE sqlite_stat4(tbl,idx,neq,nlt,ndlt,sample)",
        ),
    }
)


@dataclass(frozen=True)
class SchemaReport:
    differences: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.differences


def normalise_sql(sql: str | None) -> str | None:
    """Whitespace folded and dropped around punctuation; everything else kept as written."""
    if sql is None:
        return None
    text = re.sub(r"\s+", " ", sql.strip())
    return re.sub(r" ?([(),;]) ?", r"\1", text)


def schema_of(conn: sqlite3.Connection) -> frozenset[SchemaObject]:
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return frozenset((r[0], r[1], r[2], normalise_sql(r[3])) for r in rows)


def applied_in(conn: sqlite3.Connection) -> list[str]:
    """The candidate's recorded migrations; IntegrityError unless a prefix of ours, in order."""
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    except sqlite3.DatabaseError as exc:
        raise IntegrityError(f"not a Bedside database (no migration record: {exc})") from None
    known = [m.name for m in MIGRATIONS]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise IntegrityError(
            "written by a newer Bedside (unknown migrations: " + ", ".join(unknown) + ")"
        )
    if not names or names != known[: len(names)]:
        raise IntegrityError(
            "its migration record (" + ", ".join(names or ["none"]) + ") is not one Bedside's "
            "migrations leave (" + ", ".join(known) + ", applied in order)"
        )
    return names


def check_schema(path: Path) -> SchemaReport:
    """Compare the SQLite file at ``path`` with the references for its migrations."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        applied = applied_in(conn)
        found = schema_of(conn)
    finally:
        conn.close()
    return SchemaReport(_differences(found, reference_schema(applied[-1])))


def _differences(
    found: frozenset[SchemaObject], reference: frozenset[SchemaObject]
) -> tuple[str, ...]:
    by_name = {(o[0], o[1]): o for o in reference}
    out: list[str] = []
    for obj in sorted(found - reference - _OPTIONAL, key=lambda o: (o[0], o[1])):
        kind, name, table, _sql = obj
        expected = by_name.get((kind, name))
        if expected is None:
            out.append(f"extra {kind} {name!r} on {table!r}")
        else:
            out.append(f"{kind} {name!r} differs from the one the migrations make")
    found_names = {(o[0], o[1]) for o in found}
    for kind, name in sorted(set(by_name) - found_names):
        out.append(f"missing {kind} {name!r}")
    return tuple(out)


@lru_cache(maxsize=16)
def reference_schema(last_migration: str) -> frozenset[SchemaObject]:
    """What the migrations up to ``last_migration`` make on an empty SQLite database."""
    # Imported here: engine imports the store package, which imports this module's neighbours.
    from .engine import make_engine

    with tempfile.TemporaryDirectory(prefix="bedside-schema-") as tmp:
        path = Path(tmp) / "reference.sqlite3"
        engine = make_engine(f"sqlite:///{path}")
        try:
            migrate(engine, target=last_migration)
        finally:
            engine.dispose()
        conn = sqlite3.connect(path)
        try:
            return schema_of(conn)
        finally:
            conn.close()
