"""Restoring a SQLite backup (issue 13.3, 13.4, 13.5): the home lock, the exact schema, the
chain and archive checks before the swap, the replaced database kept, its WAL never deleted.

Restore is SQLite's (PostgreSQL uses pg_restore), so these run on a real SQLite file only; the
refusal of `bedside restore` on a PostgreSQL URL is in tests/reliability/test_security_cli.py.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from store.helpers import append_steps, course_for_new_patient, open_case

from workflow.archive.restore import restore
from workflow.core.clock import FixedClock
from workflow.core.errors import IntegrityError
from workflow.store import ArchivedRecord, backup, make_engine, migrate, open_store
from workflow.store.home_lock import HomeInUse, lock_home
from workflow.store.migrations import MIGRATIONS
from workflow.store.schema_check import check_schema

# The example: a backup that forgets refused sign-ins and unlocks everyone.
FORGET_REFUSALS = """
CREATE TRIGGER forget_refusals AFTER INSERT ON auth_events WHEN new.outcome = 'refused'
BEGIN
    DELETE FROM auth_events WHERE id = new.id;
    UPDATE users SET failed_attempts = 0, locked_until = NULL;
END
"""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def site(tmp_path: Path, clock: FixedClock) -> tuple[Path, Path]:
    """A home with a database of 4 events in one case, and a backup of it with 3."""
    home = tmp_path / "home"
    with open_store(home=str(home), clock=clock) as store:
        case = append_steps(store, open_case(store, course_for_new_patient(store)), 2)
        copy = backup(store, tmp_path / "backups" / "b.sqlite3")
        append_steps(store, case, 1)
    return home, copy


def _edit(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    try:
        for sql in statements:
            conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("statements", "named"),
    [
        ((FORGET_REFUSALS,), "extra trigger 'forget_refusals' on 'auth_events'"),
        (("CREATE VIEW everyone AS SELECT username, password_hash FROM users",), "extra view"),
        (("CREATE INDEX ix_sneaky ON users (failed_attempts)",), "extra index 'ix_sneaky'"),
        (("DROP INDEX ix_auth_events_at",), "missing index 'ix_auth_events_at'"),
        (
            # Same name, same columns, but a conflict clause that silently drops every refusal
            # after the first: the table itself differs from the migrations' one.
            (
                "ALTER TABLE auth_events RENAME TO old_auth",
                "CREATE TABLE auth_events (id INTEGER PRIMARY KEY, at DATETIME NOT NULL, "
                "username VARCHAR(64) NOT NULL, user_id VARCHAR(64), action VARCHAR(32) NOT "
                "NULL, outcome VARCHAR(8) NOT NULL, reason VARCHAR(32) NOT NULL, by_user_id "
                "VARCHAR(64), UNIQUE (outcome) ON CONFLICT IGNORE)",
                "DROP TABLE old_auth",
                "CREATE INDEX ix_auth_events_username_at ON auth_events (username, at)",
                "CREATE INDEX ix_auth_events_at ON auth_events (at)",
            ),
            "table 'auth_events' differs",
        ),
    ],
    ids=["trigger", "view", "index", "dropped-index", "table"],
)
def test_a_backup_carrying_objects_of_its_own_is_refused_and_nothing_changes(
    site: tuple[Path, Path], statements: tuple[str, ...], named: str
) -> None:
    home, copy = site
    _edit(copy, *statements)
    live = home / "bedside.sqlite3"
    before = _digest(live)
    with pytest.raises(IntegrityError, match="not the one Bedside's migrations make") as refused:
        restore(copy, home, replace=True)
    assert named in refused.value.message
    assert _digest(live) == before
    assert sorted(p.name for p in home.iterdir()) == ["bedside.lock", "bedside.sqlite3"]


def test_a_database_upgraded_in_place_or_from_an_older_bedside_passes(
    tmp_path: Path, clock: FixedClock
) -> None:
    """The schema check does not refuse Bedside's own history: an archive index made before
    0007 (its column added by ALTER TABLE), or a backup from before the newest migrations (it is
    checked against the migrations it records, then brought up to date)."""
    upgraded = tmp_path / "upgraded.sqlite3"
    engine = make_engine(f"sqlite:///{upgraded}")
    try:
        migrate(engine, target="0006_scale_indexes", clock=clock)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE archived_records DROP COLUMN events_sha256"))
            conn.execute(text("ALTER TABLE courses DROP COLUMN start_record"))  # before 0008
        migrate(engine, clock=clock)
    finally:
        engine.dispose()
    assert check_schema(upgraded).ok, check_schema(upgraded).differences

    older = tmp_path / "older.sqlite3"
    engine = make_engine(f"sqlite:///{older}")
    try:
        migrate(engine, target="0005_protocols", clock=clock)
    finally:
        engine.dispose()
    assert check_schema(older).ok
    home = tmp_path / "home"
    done = restore(older, home)
    assert done.replaced is None
    assert check_schema(done.database).ok  # migrated to the current schema before going live
    with closing(sqlite3.connect(done.database)) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert names[-1] == MIGRATIONS[-1].name


def test_a_backup_whose_event_log_does_not_verify_is_refused(site: tuple[Path, Path]) -> None:
    home, copy = site
    _edit(copy, "UPDATE events SET data = replace(data, '\"n\"', '\"m\"') WHERE seq = 2")
    live = home / "bedside.sqlite3"
    before = _digest(live)
    with pytest.raises(IntegrityError, match="event log does not verify"):
        restore(copy, home, replace=True)
    assert _digest(live) == before


def test_a_backup_whose_archive_index_does_not_verify_is_refused(
    tmp_path: Path, clock: FixedClock
) -> None:
    home = tmp_path / "home"
    with open_store(home=str(home), clock=clock) as store:
        append_steps(store, open_case(store, course_for_new_patient(store)), 1)
        at = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
        store.add_archived_record(
            ArchivedRecord(
                sha256="a" * 64, case_id="case-1", kind="administration", patient_name="DOE, J",
                mrn="MRN-1", dose_label="cycle 1 dose 1", cycle=1, signed_at=at, lots="L1",
                signers="A", state="completed", path="archive/aa/" + "a" * 64 + ".pdf",
                created_at=at, events_sha256="e" * 64,
            )
        )  # fmt: skip
        copy = backup(store, tmp_path / "b.sqlite3")
    (home / "bedside.sqlite3").rename(tmp_path / "lost.sqlite3")  # a disaster: the live one lost
    with pytest.raises(IntegrityError, match="archive"):
        restore(copy, home)
    assert not (home / "bedside.sqlite3").exists()
    # A WAL the lost database left behind would be replayed into the restored one: refused,
    # and kept (never deleted).
    (home / "bedside.sqlite3-wal").write_bytes(b"frames of the lost database")
    with pytest.raises(IntegrityError, match="left from a database that is gone"):
        restore(copy, home)
    assert (home / "bedside.sqlite3-wal").read_bytes() == b"frames of the lost database"


def test_replace_keeps_the_replaced_database_with_what_its_wal_held(
    site: tuple[Path, Path],
) -> None:
    """A process killed with a committed transaction still in the live WAL: the old restore
    deleted that WAL (and kept no copy). Now SQLite folds it in and the copy keeps it."""
    home, copy = site
    live = home / "bedside.sqlite3"
    child = textwrap.dedent(
        f"""
        import os, signal, sqlite3
        conn = sqlite3.connect({str(live)!r}, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(
            "INSERT INTO patients VALUES ('p-wal', 'MRN-WAL', 'Wal', 'Only', '1970-01-01', "
            "'2026-11-02 06:00:00.000000', 'u-admin')"
        )
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    subprocess.run([sys.executable, "-c", child], check=False)
    wal = home / "bedside.sqlite3-wal"
    assert wal.stat().st_size > 0  # the committed row lives only in the WAL now

    done = restore(copy, home, replace=True, clock=FixedClock(datetime(2026, 11, 3, tzinfo=UTC)))
    assert done.database == live
    assert done.replaced == home / "bedside.sqlite3.replaced-20261103T000000Z"
    assert stat.S_IMODE(done.replaced.stat().st_mode) == 0o600
    assert stat.S_IMODE(live.stat().st_mode) == 0o600
    with closing(sqlite3.connect(done.replaced)) as kept:
        assert kept.execute("SELECT mrn FROM patients WHERE id = 'p-wal'").fetchone() == (
            "MRN-WAL",
        )
        assert kept.execute("SELECT count(*) FROM events").fetchone() == (4,)
    with closing(sqlite3.connect(live)) as restored:
        assert restored.execute("SELECT count(*) FROM events").fetchone() == (3,)
    assert done.events == 3
    # A second restore in the same second keeps the first copy too.
    again = restore(copy, home, replace=True, clock=FixedClock(datetime(2026, 11, 3, tzinfo=UTC)))
    assert again.replaced is not None and again.replaced != done.replaced
    assert done.replaced.exists()


def test_a_live_database_another_program_has_open_is_never_replaced(
    site: tuple[Path, Path],
) -> None:
    """No Bedside process holds the home, but another program (sqlite3, a backup agent) has the
    database open in WAL mode: the restore is refused, and its WAL is left where it is."""
    home, copy = site
    live = home / "bedside.sqlite3"
    other = sqlite3.connect(live)
    try:
        other.execute("PRAGMA journal_mode=WAL")
        other.execute("SELECT count(*) FROM events").fetchone()
        before = _digest(live)
        with pytest.raises(IntegrityError, match="in use by another program"):
            restore(copy, home, replace=True)
        assert (home / "bedside.sqlite3-wal").exists()
        assert _digest(live) == before
        assert not list(home.glob("bedside.sqlite3.re*"))
    finally:
        other.close()


def test_restore_is_refused_while_another_process_holds_the_home(
    site: tuple[Path, Path],
) -> None:
    home, copy = site
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from workflow.store.home_lock import lock_home; "
            f"lock_home(Path({str(home)!r})); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = _digest(home / "bedside.sqlite3")
        with pytest.raises(HomeInUse, match="another Bedside process holds the home"):
            restore(copy, home, replace=True)
        assert _digest(home / "bedside.sqlite3") == before
        with lock_home(home):  # shared holders never exclude each other
            pass
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
    assert restore(copy, home, replace=True).replaced is not None  # free again


def test_database_backups_and_home_are_private(tmp_path: Path, clock: FixedClock) -> None:
    """Issue 13.5: the home 0700, the database, its -wal/-shm and every backup 0600, and a
    database an older Bedside left readable is narrowed when opened."""
    home = tmp_path / "home"
    with open_store(home=str(home), clock=clock) as store:
        append_steps(store, open_case(store, course_for_new_patient(store)), 1)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for name in ("bedside.sqlite3", "bedside.sqlite3-wal", "bedside.sqlite3-shm"):
            assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
        copy = backup(store, tmp_path / "backups" / "b.sqlite3")
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    os.chmod(home / "bedside.sqlite3", 0o644)
    with open_store(home=str(home), clock=clock):
        assert stat.S_IMODE((home / "bedside.sqlite3").stat().st_mode) == 0o600
