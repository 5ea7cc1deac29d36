"""`bedside audit verify` with signed checkpoints (issue 13.1), on SQLite and PostgreSQL: it
checks every checkpoint in the home and in exported copies (`--checkpoints DIR`), and
`--checkpoint` signs a new one once everything verifies."""

from __future__ import annotations

import io
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from homes import floor_cost_home
from store.forgery import forge_event

from workflow.cli import main
from workflow.core.clock import FixedClock
from workflow.dev.demo import run_persistent
from workflow.records.pki import create_site_pki
from workflow.service import open_bedside


def _cli(
    home: Path, db: str, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    code = main(["--home", str(home), "--db", db, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_checkpoints_in_the_home_and_in_an_exported_copy(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    home = floor_cost_home(tmp_path / "home")
    create_site_pki(home / "pki", organisation="Checkpoint site")
    clock = FixedClock(datetime(2026, 11, 2, 6, 0, tzinfo=UTC))
    app = open_bedside(home, db_url, clock=clock)
    try:
        (dose,) = run_persistent(app, clock, 1)
        length = len(app.store.load_events(dose.case_id))
    finally:
        app.store.close()

    code, out, _ = _cli(home, db_url, capsys, "audit", "verify", "--checkpoint")
    assert code == 0
    assert f"1 signed checkpoint match the log (the newest covers {length} of {length}" in out
    assert "checkpoint signed:" in out
    code, out, _ = _cli(home, db_url, capsys, "audit", "verify")
    assert code == 0 and "2 signed checkpoints match the log" in out

    # The site copies its checkpoints (and the public key beside them) to write-once storage.
    worm = tmp_path / "worm"
    shutil.copytree(home / "checkpoints", worm)
    # Someone who can reach the database and the home rewrites an event and removes the
    # home's checkpoints: the home alone no longer tells.
    app = open_bedside(home, db_url, clock=clock)
    try:
        forge_event(app.store.engine, dose.case_id, 3, lambda data: data.update(forged=True))
    finally:
        app.store.close()
    shutil.rmtree(home / "checkpoints")
    code, out, _ = _cli(home, db_url, capsys, "audit", "verify")
    assert code == 0 and "no signed checkpoints found" in out
    code, _, err = _cli(home, db_url, capsys, "audit", "verify", "--checkpoints", str(worm))
    assert code == 1
    assert err.count("CHECKPOINT:") == 2 and "the chain was recomputed" in err

    code, _, err = _cli(
        home, db_url, capsys, "audit", "verify", "--checkpoints", str(tmp_path / "nowhere")
    )
    assert code == 2 and "checkpoints" in err and "Traceback" not in err
