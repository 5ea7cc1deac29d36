"""Where the database is, and the SQLite durability settings actually in force."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow.core.errors import InputError
from workflow.store import Store, database_url, home_dir, open_store


def test_home_and_url_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BEDSIDE_DATABASE_URL", raising=False)
    monkeypatch.setenv("BEDSIDE_HOME", str(tmp_path / "env-home"))
    assert home_dir() == tmp_path / "env-home"
    assert home_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    assert database_url() == f"sqlite:///{tmp_path / 'env-home' / 'bedside.sqlite3'}"
    monkeypatch.setenv("BEDSIDE_DATABASE_URL", "postgres://u@db.example/bedside")
    assert database_url() == "postgresql+psycopg://u@db.example/bedside"
    assert database_url("postgresql://u:p@h:5433/x") == "postgresql+psycopg://u:p@h:5433/x"
    with pytest.raises(InputError) as err:
        database_url("mysql://u@h/x")
    assert err.value.field == "database_url"
    with pytest.raises(InputError):
        database_url("::not a url::")


def test_sqlite_is_opened_durably(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BEDSIDE_DATABASE_URL", raising=False)
    with open_store(home=str(tmp_path / "h")) as store:
        assert (tmp_path / "h" / "bedside.sqlite3").is_file()
        with store.engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "busy_timeout": 30000,
    }


def test_store_reports_its_dialect(store: Store) -> None:
    assert store.dialect in ("sqlite", "postgresql")


def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(InputError) as err:
        open_store("postgresql://nobody:secret-pw@127.0.0.1:1/none")
    assert err.value.field == "database_url"
    assert "cannot open the database" in err.value.message
    assert "secret-pw" not in err.value.message
