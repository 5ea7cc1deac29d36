"""Backup and restore of the SQLite database with SQLite's online backup API.

The backup API copies a consistent snapshot while Bedside keeps running (no need to stop writers,
unlike copying the file, which can catch a half-checkpointed WAL). The copy is written beside the
target and renamed into place, so a crash never leaves a half-written backup under the real name.
PostgreSQL installations back up with the server's own tools.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

from workflow.errors import InputError, IntegrityError

from .engine import DB_FILENAME, home_dir
from .store import Store

PG_BACKUP_HELP = (
    "this Bedside uses PostgreSQL: back it up with pg_dump / pg_restore (or your site's "
    "PostgreSQL backup, e.g. continuous archiving), see "
    "https://www.postgresql.org/docs/current/backup.html"
)


def backup(store: Store, file: str | os.PathLike[str]) -> Path:
    """Write a consistent copy of the store's SQLite database to ``file`` and check it.

    Raises InputError for a PostgreSQL store (see PG_BACKUP_HELP) or an existing ``file``,
    IntegrityError if the copy fails SQLite's integrity check (the copy is then removed).
    """
    if store.dialect != "sqlite":
        raise InputError("database", PG_BACKUP_HELP)
    target = Path(file)
    if target.exists():
        raise InputError("file", f"{target} already exists; choose a new name")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    raw = store.engine.raw_connection()
    try:
        source = raw.driver_connection
        assert isinstance(source, sqlite3.Connection)
        _copy(source, partial)
    finally:
        raw.close()
    _check(partial)
    os.replace(partial, target)
    return target


def restore(
    file: str | os.PathLike[str],
    home: str | os.PathLike[str] | None = None,
    *,
    replace: bool = False,
) -> Path:
    """Put the backup ``file`` in place as ``<home>/bedside.sqlite3``; return that path.

    Bedside must not be running on that home. Refuses to overwrite an existing database unless
    ``replace=True`` (InputError). Raises InputError if ``file`` is missing or not a Bedside
    backup, IntegrityError if it fails SQLite's integrity check.
    """
    source_path = Path(file)
    if not source_path.is_file():
        raise InputError("file", f"{source_path} does not exist")
    target = home_dir(home) / DB_FILENAME
    if target.exists() and not replace:
        raise InputError("home", f"{target} already holds a database; pass replace to overwrite it")
    _check(source_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    with _open(source_path) as source:
        _copy(source, partial)
    os.replace(partial, target)
    # A WAL left by the database we replaced would be replayed into the restored one.
    for suffix in ("-wal", "-shm"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    return target


def sqlite_path(store: Store) -> Path | None:
    """The file behind a SQLite store (None for PostgreSQL or in-memory)."""
    if store.dialect != "sqlite":
        return None
    database = make_url(str(store.engine.url)).database
    return Path(database) if database and database != ":memory:" else None


def _copy(source: sqlite3.Connection, target: Path) -> None:
    dest = sqlite3.connect(target)
    try:
        source.backup(dest)
        # The copy of a WAL database is itself in WAL mode; fold it back into one file so the
        # backup is a single self-contained file.
        dest.execute("PRAGMA journal_mode=DELETE")
        dest.commit()
    finally:
        dest.close()


def _check(path: Path) -> None:
    with _open(path) as conn:
        try:
            result = conn.execute("PRAGMA integrity_check").fetchone()
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as exc:
            raise InputError("file", f"{path} is not a SQLite database ({exc})") from None
    if result is None or result[0] != "ok":
        raise IntegrityError(f"{path} failed SQLite's integrity check: {result}")
    if "schema_migrations" not in tables or "events" not in tables:
        raise InputError("file", f"{path} is not a Bedside database")


class _open:
    """sqlite3 connection as a context manager that closes (sqlite3's own only commits)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
