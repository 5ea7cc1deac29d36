"""SQLite online backup and restore; PostgreSQL points to its own tools."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow.archive.restore import restore
from workflow.core.clock import FixedClock
from workflow.core.errors import InputError
from workflow.store import Store, backup, open_store

from .helpers import append_steps, course_for_new_patient, open_case


def test_backup_and_restore_round_trip(store: Store, clock: FixedClock, tmp_path: Path) -> None:
    if store.dialect != "sqlite":
        with pytest.raises(InputError, match="pg_dump"):
            backup(store, tmp_path / "b.sqlite3")
        return
    case = append_steps(store, open_case(store, course_for_new_patient(store)), 3)
    copy = backup(store, tmp_path / "backups" / "bedside-1.sqlite3")
    assert copy.is_file()
    append_steps(store, case, 1)  # written after the backup: not in it

    home = tmp_path / "restored"
    db = restore(copy, home).database
    assert db == home / "bedside.sqlite3"
    with open_store(home=str(home), clock=clock) as restored:
        assert len(restored.load_events(case.id)) == 4
        assert restored.verify_chains().ok
        assert restored.find_patient_by_mrn(restored.get_patient(case.patient_id).mrn) is not None

    with pytest.raises(InputError, match="already holds a database"):
        restore(copy, home)
    with pytest.raises(InputError, match="already exists"):
        backup(store, copy)
    restore(copy, home, replace=True)


def test_restore_refuses_what_is_not_a_bedside_backup(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(InputError, match="not a SQLite database"):
        restore(junk, tmp_path / "home")
    with pytest.raises(InputError, match="does not exist"):
        restore(tmp_path / "missing", tmp_path / "home")
    assert not (tmp_path / "home" / "bedside.sqlite3").exists()
