"""Named schema migrations, applied in order, each once, each in its own transaction.

``migrate(engine)`` is safe to call at every start: it applies only what is missing and records
each name in ``schema_migrations``. A database that has a migration this program does not know
was written by a newer Bedside; it is refused rather than used half-understood.

Rules for adding a migration: append to ``MIGRATIONS`` (never reorder or rename), make it work on
SQLite and PostgreSQL, and never change what an applied migration does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, inspect, select, text

from workflow.core.clock import Clock, SystemClock
from workflow.core.errors import InputError, IntegrityError
from workflow.core.events import sha256_hex

from . import _schema as s
from ._tx import is_sqlite, write_tx
from .chain import GENESIS_HASH
from .indexes import scale_indexes


@dataclass(frozen=True)
class Migration:
    name: str
    apply: Callable[[Connection], None]


def _create(*tables: str) -> Callable[[Connection], None]:
    def apply(conn: Connection) -> None:
        for name in tables:
            s.metadata.tables[name].create(conn)

    return apply


def _core(conn: Connection) -> None:
    _create("patients", "courses", "cases", "events", "log_head", "signatures")(conn)
    conn.execute(insert(s.log_head).values(id=1, event_count=0, head_hash=GENESIS_HASH))


def _archive_record_key(conn: Connection) -> None:
    """0007: one archived record per case, kind and embedded events.

    The archive's own check ("is this already archived?") and its write are two steps, so two
    processes finishing the same case (a server that ends it while another starts and catches up
    pending cases) could both sign, and signing times make their PDFs differ: two records for
    the same events. The unique index makes the database the referee. Rows from before this
    migration keep NULL, which a unique index does not compare, so they never collide.
    """
    columns = {c["name"] for c in inspect(conn).get_columns("archived_records")}
    if "events_sha256" not in columns:  # a database made from the current schema has it
        conn.execute(text("ALTER TABLE archived_records ADD COLUMN events_sha256 VARCHAR(64)"))
    conn.execute(
        text(
            "CREATE UNIQUE INDEX IF NOT EXISTS ux_archived_case_kind_events "
            "ON archived_records (case_id, kind, events_sha256)"
        )
    )


def _course_start(conn: Connection) -> None:
    """0008: a course keeps its signed start record (the boxed warning's attestations and any
    retreatment override), which every case opened on it copies into its chained events."""
    columns = {c["name"] for c in inspect(conn).get_columns("courses")}
    if "start_record" not in columns:  # a database made from the current schema has it
        conn.execute(text("ALTER TABLE courses ADD COLUMN start_record TEXT"))


MIGRATIONS: Sequence[Migration] = (
    Migration("0001_core", _core),
    Migration("0002_identity", _create("users", "auth_events")),
    Migration("0003_archive_index", _create("archived_records")),
    Migration("0004_web_sessions", _create("web_sessions")),
    Migration("0005_protocols", _create("protocols")),
    Migration("0006_scale_indexes", scale_indexes),
    Migration("0007_archive_record_key", _archive_record_key),
    Migration("0008_course_start", _course_start),
    Migration("0009_formulary", _create("formulary_products", "formulary_events")),
    Migration("0010_interface", _create("interface_log", "order_cases")),
    Migration("0011_orders16_pending_orders", _create("pending_orders")),
)


def applied_migrations(engine: Engine) -> list[str]:
    """Names recorded in ``schema_migrations``, in the order they were applied."""
    if not inspect(engine).has_table("schema_migrations"):
        return []
    with engine.connect() as conn:
        rows = conn.execute(select(s.schema_migrations.c.name).order_by(s.schema_migrations.c.name))
        return [r.name for r in rows]


def migrate(engine: Engine, target: str | None = None, clock: Clock | None = None) -> list[str]:
    """Apply every missing migration up to and including ``target`` (default: all).

    Returns the names applied now (empty when the database was already current). Raises
    IntegrityError if the database holds migrations this program does not know.
    """
    names = [m.name for m in MIGRATIONS]
    if target is not None and target not in names:
        raise InputError("target", f"unknown migration {target!r}", ", ".join(names))
    clock = clock or SystemClock()
    with write_tx(engine) as conn:
        _lock(conn)
        s.schema_migrations.create(conn, checkfirst=True)
    done_now: list[str] = []
    for migration in MIGRATIONS:
        with write_tx(engine) as conn:
            # Lock, then re-read: two processes starting together must not both apply it.
            _lock(conn)
            applied = {r.name for r in conn.execute(select(s.schema_migrations.c.name))}
            unknown = applied - set(names)
            if unknown:
                raise IntegrityError(
                    "this database was written by a newer Bedside (unknown migrations: "
                    + ", ".join(sorted(unknown))
                    + "); upgrade Bedside before opening it"
                )
            if migration.name not in applied:
                migration.apply(conn)
                conn.execute(
                    insert(s.schema_migrations).values(name=migration.name, applied_at=clock.now())
                )
                done_now.append(migration.name)
        if migration.name == target:
            break
    return done_now


def _lock(conn: Connection) -> None:
    # SQLite: BEGIN IMMEDIATE already holds the write lock. PostgreSQL: a transaction-scoped
    # advisory lock (DDL alone would not stop two migrators from racing on "already applied?").
    if not is_sqlite(conn.engine):
        key = int(sha256_hex(b"bedside-migrations")[:15], 16)
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
