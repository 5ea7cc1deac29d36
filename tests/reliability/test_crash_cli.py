"""SIGKILL campaigns through the command line, on SQLite and PostgreSQL (issue 6.1, issue 3)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from homes import floor_cost_home

from workflow.store import open_store

from .conftest import Scale, report
from .harness import Campaign, Child, bedside, bedside_argv, make_home


def run_campaign(
    name: str, home: Path, db: str | None, scale: Scale, kills: int, restart_at: int = -1
) -> Campaign:
    """``kills`` SIGKILL rounds; with ``restart_at`` >= 0 the database server is restarted
    under a running child once, after that many kills."""
    campaign = Campaign(home, db, scale.seed)
    make_home(home, db)
    started = time.monotonic()
    max_rounds = kills * 3  # a round whose child finished before its kill point kills nothing
    while campaign.figures.kills < kills and campaign.figures.runs < max_rounds:
        if time.monotonic() - started > scale.budget_s:
            campaign.figures.notes.append("stopped at the time budget")
            break
        if campaign.figures.kills == restart_at and campaign.figures.restarts == 0:
            campaign.restart_database_round()
        else:
            campaign.round()
        campaign.check()
    campaign.finish()
    campaign.figures.seconds = time.monotonic() - started
    report(campaign.figures.line(name, scale.seed))
    assert campaign.figures.kills >= min(kills, 1)
    return campaign


def test_sigkill_campaign_sqlite(tmp_path: Path, scale: Scale) -> None:
    campaign = run_campaign("crash campaign (SQLite, CLI)", tmp_path / "home", None, scale,
                            scale.cli_kills)  # fmt: skip
    if scale.full:
        assert campaign.figures.kills >= 50


def test_killed_demo_verifies_and_continues(tmp_path: Path) -> None:
    """Issue 3: SIGKILL a running `bedside demo --doses 6`; the audit passes and the demo goes
    on (before the fix the killed dose stayed open and every later demo was refused)."""
    home = floor_cost_home(tmp_path / "home")
    first = bedside(home, None, "demo", "--doses", "1")
    assert first.returncode == 0, first.stderr
    child = Child(bedside_argv(home, None, "demo", "--doses", "6"))
    # Kill inside the second dose's walk: poll the store until it has appended some of it.
    url = f"sqlite:///{home / 'bedside.sqlite3'}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.proc.poll() is None:
        with open_store(url, upgrade=False) as store:
            records = store.list_cases()  # soonest scheduled first: the newest dose is last
        if len(records) >= 2 and records[-1].version >= 3:
            break
        time.sleep(0.05)
    outcome = child.kill()
    assert outcome.killed, "the demo finished before it could be killed"
    assert bedside(home, None, "audit", "verify").returncode == 0
    again = bedside(home, None, "demo", "--doses", "2")
    assert again.returncode == 0, again.stderr
    assert bedside(home, None, "audit", "verify").returncode == 0
    checked = bedside(home, None, "archive", "verify")
    assert checked.returncode == 0, checked.stdout
    with open_store(url, upgrade=False) as store:
        states = [r.state for r in store.list_cases()]
    assert states.count("completed") == len(states) >= 3


def test_audit_verify_fails_after_any_stored_event_is_edited(tmp_path: Path) -> None:
    """Issue 3: editing any stored event (its data, its time or its step) makes the chains
    fail; `bedside audit verify` exits 1 naming the first break."""
    home = floor_cost_home(tmp_path / "home")
    assert bedside(home, None, "demo", "--doses", "1").returncode == 0
    db = home / "bedside.sqlite3"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, data FROM events ORDER BY id").fetchall()
    assert len(rows) >= 15
    edits = 0
    for n, (event_id, data) in enumerate(rows):
        other = tmp_path / f"home-{event_id}"
        other.mkdir()
        copy = other / "bedside.sqlite3"
        copy.write_bytes(db.read_bytes())
        changed = json.loads(data)
        changed["edited"] = True
        with sqlite3.connect(copy) as conn:
            conn.execute("UPDATE events SET data = ? WHERE id = ?", (json.dumps(changed), event_id))
        edits += 1
        with open_store(f"sqlite:///{copy}", upgrade=False) as store:
            assert not store.verify_chains().ok, event_id
        if n in (0, len(rows) - 1):  # the command itself, at both ends of the log
            done = bedside(other, None, "audit", "verify")
            assert done.returncode == 1, (event_id, done.stdout)
            assert "BROKEN" in done.stderr
    assert edits == len(rows)


@pytest.mark.postgres
def test_sigkill_campaign_postgresql(rel_database: str, tmp_path: Path, scale: Scale) -> None:
    # A server restart cuts off everyone using this PostgreSQL (other suites on the machine):
    # it runs in `make soak`, or when BEDSIDE_PG_RESTART=1 asks for it.
    restart = scale.full or os.environ.get("BEDSIDE_PG_RESTART") == "1"
    campaign = run_campaign("crash campaign (PostgreSQL, CLI)", tmp_path / "home", rel_database,
                            scale, scale.pg_kills, restart_at=1 if restart else -1)  # fmt: skip
    if restart:
        assert campaign.figures.restarts == 1
    if scale.full:
        assert campaign.figures.kills >= 50
