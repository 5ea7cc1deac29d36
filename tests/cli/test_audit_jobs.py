"""`bedside audit verify --jobs N` on SQLite and PostgreSQL: one process and two worker
processes print the same, on an intact log and on a tampered one; a count out of range is
refused with exit 2 naming the field."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from homes import floor_cost_home
from sqlalchemy import update

from workflow.cli import main
from workflow.core.clock import FixedClock
from workflow.dev.seed import seed
from workflow.identity import Identity
from workflow.records.pki import create_site_pki
from workflow.service import open_bedside
from workflow.store import _schema as s
from workflow.store import verify_quick


def _cli(
    home: Path, db: str, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    code = main(["--home", str(home), "--db", db, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_jobs_one_and_two_agree(
    tmp_path: Path,
    db_url: str,
    clock: FixedClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    home = floor_cost_home(tmp_path / "home")
    create_site_pki(home / "pki", organisation="Jobs site")
    app = open_bedside(home, db_url, clock=clock, archive=False)
    try:
        identity = Identity(
            app.store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        )
        seed(app.store, app.protocol, patients=1, doses=2, identity=identity, signed_sample=0)
        length, _ = app.store.log_head()
    finally:
        app.store.close()
    monkeypatch.setattr(verify_quick, "MIN_RANGE", length // 4)  # --jobs 2: four ranges

    one = _cli(home, db_url, capsys, "audit", "verify", "--jobs", "1")
    two = _cli(home, db_url, capsys, "audit", "verify", "--jobs", "2")
    assert one == two
    assert one[0] == 0 and f"ok: {length} events in 2 cases, chains intact" in one[1]

    app = open_bedside(home, db_url, clock=clock, archive=False)
    try:
        with app.store.engine.begin() as conn:
            conn.execute(update(s.events).where(s.events.c.log_seq == 5).values(data="{}"))
    finally:
        app.store.close()
    one = _cli(home, db_url, capsys, "audit", "verify", "--jobs", "1")
    two = _cli(home, db_url, capsys, "audit", "verify", "--jobs", "2")
    assert one == two
    assert one[0] == 1 and "log position 5: its stored content does not match its hash" in one[2]


@pytest.mark.parametrize("jobs", ["0", "65"])
def test_jobs_out_of_range_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], jobs: str
) -> None:
    home = tmp_path / "home"
    code = main(["--home", str(home), "audit", "verify", "--jobs", jobs])
    _, err = capsys.readouterr()
    assert code == 2
    assert "jobs" in err and "1 to 64" in err and not home.exists()
