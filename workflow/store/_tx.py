"""Transactions: every store operation is exactly one of these."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from workflow.core.errors import Unavailable
from workflow.timing import phase

# Execution option that marks a connection's next transaction as a writer; the SQLite engine
# (engine.py) turns it into BEGIN IMMEDIATE.
WRITE_OPTION = "bedside_write"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def unavailable_as_error() -> Iterator[None]:
    """A lost connection becomes Unavailable, a message, not a driver traceback (found by the
    crash campaign restarting PostgreSQL under a running command, issue 6)."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        # The driver's first line names the host and the cause, never the password.
        cause = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise Unavailable(
            f"the database stopped answering ({cause}); nothing was half-written: reload and "
            "try again"
        ) from None


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """One write transaction: committed when the block ends, rolled back if it raises."""
    with unavailable_as_error(), engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin() as tx:  # rolled back by the block if the caller raises
            yield conn
            with phase("commit"):  # the fsync (SQLite) or the round trip (PostgreSQL)
                tx.commit()


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """One read transaction: a consistent snapshot for the whole block (SQLite gives one by
    default; PostgreSQL needs REPEATABLE READ, its default snapshot is per statement)."""
    with unavailable_as_error(), engine.connect() as conn:
        if not is_sqlite(engine):
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn
