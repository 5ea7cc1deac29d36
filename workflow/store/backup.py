"""Backup and restore of the SQLite database with SQLite's online backup API.

The backup API copies a consistent snapshot while Bedside keeps running (no need to stop writers,
unlike copying the file, which can catch a half-checkpointed WAL). The copy is written beside the
target (0600 from its creation) and renamed into place, so a crash never leaves a half-written
backup under the real name. PostgreSQL installations back up with the server's own tools.

Restoring is in :mod:`workflow.archive.restore`, which adds the checks that need the archive;
the steps here are the database's part: a candidate checked for integrity and for exactly
Bedside's schema, then put in place with the replaced database kept beside it.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from workflow.core.clock import Clock, SystemClock
from workflow.core.errors import InputError, IntegrityError
from workflow.private_files import create_private_file, fsync_dir, tighten_file

from .engine import DB_FILENAME
from .schema_check import check_schema
from .store import Store

PG_BACKUP_HELP = (
    "this Bedside uses PostgreSQL: back it up with pg_dump / pg_restore (or your site's "
    "PostgreSQL backup, e.g. continuous archiving), see "
    "https://www.postgresql.org/docs/current/backup.html"
)


PG_RESTORE_HELP = (
    "PostgreSQL is restored with pg_restore --clean --dbname DB FILE, then `bedside audit "
    "verify` and `bedside archive verify`"
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
    _remove_stale(partial)
    raw = store.engine.raw_connection()
    try:
        source = raw.driver_connection
        assert isinstance(source, sqlite3.Connection)
        _copy(source, partial)
    finally:
        raw.close()
    _check(partial)
    os.replace(partial, target)
    fsync_dir(target.parent)
    return target


@dataclass(frozen=True)
class Candidate:
    """A backup copied into the home beside the live database, not yet in place."""

    path: Path  # <home>/bedside.sqlite3.restoring, 0600
    target: Path  # <home>/bedside.sqlite3


def stage_candidate(file: str | os.PathLike[str], home: Path, *, replace: bool) -> Candidate:
    """Check ``file`` is a sound SQLite database whose schema is exactly Bedside's, and copy it
    into ``home`` under a name nothing opens. The caller holds the home lock exclusively.

    Raises InputError if ``file`` is missing or not a Bedside backup, or the home already holds
    a database and ``replace`` is false; IntegrityError if it fails SQLite's integrity check or
    its schema differs from the one the migrations make (each difference named).
    """
    source_path = Path(file)
    if not source_path.is_file():
        raise InputError("file", f"{source_path} does not exist")
    target = home / DB_FILENAME
    if target.exists() and not replace:
        raise InputError(
            "home",
            f"{target} already holds a database; pass --replace to replace it (it is kept "
            "beside it)",
        )
    if not target.exists():
        for suffix in ("-wal", "-journal"):
            orphan = target.with_name(target.name + suffix)
            if orphan.exists():
                # SQLite would replay it into the restored database: pages of another file.
                raise IntegrityError(
                    f"{orphan} is left from a database that is gone; move it out of the home "
                    "first (it is never deleted here: it may hold that database's committed "
                    "transactions)"
                )
    _check(source_path)
    _check_schema(source_path)
    partial = target.with_name(target.name + ".restoring")
    _remove_stale(partial)  # a restore cut off earlier; we hold the home alone
    with _open(source_path) as source:
        _copy(source, partial)
    # The copy again: what we will put in place is what was checked, not the file as it is now.
    _check_schema(partial)
    return Candidate(partial, target)


def put_in_place(candidate: Candidate, clock: Clock | None = None) -> Path | None:
    """Make the checked candidate the live database; return where the replaced one was kept.

    The live database is first settled (its write-ahead log, with any transaction a crashed
    process committed, folded into the file by SQLite itself) and kept beside it under a
    timestamped name, 0600. A write-ahead log is never deleted: if one is still there after
    settling, another program has the database open and the restore is refused (IntegrityError)
    with nothing changed.
    """
    target = candidate.target
    kept: Path | None = None
    if target.exists():
        _settle(target)
        kept = _keep_aside(target, (clock or SystemClock()).now())
    os.replace(candidate.path, target)
    fsync_dir(target.parent)
    return kept


def discard(candidate: Candidate) -> None:
    _remove_stale(candidate.path)


def _check_schema(path: Path) -> None:
    try:
        report = check_schema(path)
    except IntegrityError as exc:
        raise IntegrityError(f"{path} is refused: {exc.message}") from None
    if not report.ok:
        raise IntegrityError(
            f"{path} is refused: its schema is not the one Bedside's migrations make ("
            + "; ".join(report.differences)
            + ")"
        )


def _settle(target: Path) -> None:
    # A few seconds for a reader that is just finishing (a backup tool, say); we hold the home
    # lock, so no Bedside process is among them.
    conn = sqlite3.connect(target, timeout=5)
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()
    except sqlite3.OperationalError as exc:
        raise IntegrityError(
            f"{target} is in use by another program ({exc}); nothing was changed"
        ) from None
    finally:
        conn.close()
    if (busy and busy[0]) or not mode or str(mode[0]).lower() != "delete":
        raise IntegrityError(f"{target} is in use by another program; nothing was changed")
    for suffix in ("-wal", "-shm", "-journal"):
        left = target.with_name(target.name + suffix)
        if left.exists():
            raise IntegrityError(
                f"{left} is still there after the database was checkpointed: another program "
                "has it open. Nothing was changed (it is never deleted: it may hold committed "
                "transactions)"
            )


def _keep_aside(target: Path, now: datetime) -> Path:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1000):
        kept = target.with_name(f"{target.name}.replaced-{stamp}" + (f"-{n}" if n else ""))
        try:
            # A second name for the same file: the live name never points at nothing.
            os.link(target, kept)
        except FileExistsError:
            continue
        tighten_file(kept)
        return kept
    raise IntegrityError(f"cannot find a free name to keep {target} beside it")


def _remove_stale(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def sqlite_path(store: Store) -> Path | None:
    """The file behind a SQLite store (None for PostgreSQL or in-memory)."""
    if store.dialect != "sqlite":
        return None
    database = make_url(str(store.engine.url)).database
    return Path(database) if database and database != ":memory:" else None


def _copy(source: sqlite3.Connection, target: Path) -> None:
    # Created 0600 before SQLite writes a byte: a backup holds password hashes and patients.
    os.close(create_private_file(target))
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
