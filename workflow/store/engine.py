"""Where the database is, and engines that keep their promises.

SQLite (the default, one file in the Bedside home) is set up for durability: WAL journal,
``synchronous=FULL`` (a commit that returned survives power loss), foreign keys enforced, and a
busy timeout so a second writer waits instead of failing. Write transactions start with
``BEGIN IMMEDIATE`` so two writers serialise at the start instead of one failing half-way when
it tries to upgrade a read lock. PostgreSQL is reached through psycopg 3.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from workflow.core.clock import Clock
from workflow.core.errors import InputError, Unavailable
from workflow.private_files import create_private_file, make_private_dir, tighten_file

from ._tx import WRITE_OPTION
from .migrations import migrate
from .store import Store

DB_FILENAME = "bedside.sqlite3"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def home_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The Bedside home: the argument, else ``BEDSIDE_HOME``, else the platform's data folder."""
    chosen = explicit or os.environ.get("BEDSIDE_HOME")
    if chosen:
        return Path(chosen).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
        return base / "Bedside"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Bedside"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "bedside"


def database_url(explicit: str | None = None, home: str | os.PathLike[str] | None = None) -> str:
    """The database URL: the argument, else ``BEDSIDE_DATABASE_URL``, else the SQLite file in
    the home. ``postgresql://`` and ``postgres://`` are rewritten to use psycopg 3.
    """
    url = explicit or os.environ.get("BEDSIDE_DATABASE_URL")
    if not url:
        return "sqlite:///" + str(home_dir(home) / DB_FILENAME)
    return normalise_url(url)


def normalise_url(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InputError("database_url", f"not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return url
    raise InputError("database_url", f"unsupported database {backend!r}", "sqlite, postgresql")


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (already normalised), with the SQLite durability settings."""
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True)


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        _private_database_file(Path(database))
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to us (the pysqlite module's own BEGIN is deferred and
        # skipped before some statements); see _on_begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _private_database_file(path: Path) -> None:
    """The database and its -wal/-shm readable by the service account only (issue 13.5): they
    hold password hashes and patients. SQLite gives the -wal and -shm the database file's own
    mode, so creating the file 0600 before SQLite does is enough for all three; files made by an
    older Bedside are narrowed."""
    make_private_dir(path.parent)
    try:
        os.close(create_private_file(path))
    except FileExistsError:
        for suffix in ("", "-wal", "-shm", "-journal"):
            tighten_file(path.with_name(path.name + suffix))


def open_store(
    url: str | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    clock: Clock | None = None,
    upgrade: bool = True,
) -> Store:
    """Open the Bedside database: ``url`` (else ``BEDSIDE_DATABASE_URL``, else
    ``<home>/bedside.sqlite3``), bringing its schema up to date unless ``upgrade=False``.

    Raises InputError (field ``database_url``) for an unsupported or malformed URL or a database
    that cannot be reached, IntegrityError for a database written by a newer Bedside.
    """
    engine = make_engine(database_url(url, home))
    try:
        if upgrade:
            migrate(engine, clock=clock)
        else:
            engine.connect().close()  # fail here, with a clear message, not at first use
    except OperationalError as exc:
        engine.dispose()
        # The driver's message names host and port, never the password.
        raise InputError("database_url", f"cannot open the database: {exc.orig}") from None
    except Unavailable as exc:  # the same, met inside a migration transaction
        engine.dispose()
        raise InputError("database_url", f"cannot open the database: {exc.message}") from None
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, clock)
