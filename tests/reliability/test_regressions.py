"""Regression tests for the defects the campaigns found, each reproduced deterministically."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from homes import floor_cost_home
from sqlalchemy import create_engine, text
from store.forgery import delete_index_rows, forge_event

from workflow.core.clock import FixedClock
from workflow.core.errors import ProtocolError, Unavailable
from workflow.core.protocol import parse_protocol
from workflow.dev.demo import run_persistent
from workflow.identity import Credentials
from workflow.records.pki import create_site_pki
from workflow.resources import default_protocol_path
from workflow.service import CaseView, open_bedside
from workflow.store import open_store
from workflow.store._tx import read_tx, write_tx
from workflow.web import WebSettings, create_app

from .harness import PASSWORD, PEOPLE, SIGNER, STEP_IDS, bedside
from .web_harness import Server, entries


def test_case_ended_without_its_records_is_reported_and_caught_up(tmp_path: Path) -> None:
    """A crash between a case's closing event and its archive write left an ended case with no
    record, silently: `archive verify` passed. Now it names the case (exit 1), and `archive
    catch-up` (also run at the start of `bedside run` and `bedside demo`) archives it."""
    home = floor_cost_home(tmp_path / "home")
    create_site_pki(home / "pki", organisation="Regression site")
    clock = FixedClock(datetime(2026, 11, 2, 6, 0, tzinfo=UTC))
    # The same state a SIGKILL after the last append leaves: the case ended, nothing archived.
    app = open_bedside(home, clock=clock, archive=False)
    try:
        (dose,) = run_persistent(app, clock, 1)
    finally:
        app.store.close()
    assert dose.state == "completed" and dose.records == ()

    before = bedside(home, None, "archive", "verify")
    assert before.returncode == 1
    assert f"MISSING case {dose.case_id}" in before.stdout

    caught = bedside(home, None, "archive", "catch-up")
    assert caught.returncode == 0, caught.stderr
    assert dose.case_id in caught.stdout
    after = bedside(home, None, "archive", "verify")
    assert after.returncode == 0, after.stdout
    assert "checked 2 records: 2 ok" in after.stdout
    again = bedside(home, None, "archive", "catch-up")  # idempotent: nothing left to do
    assert "archived the records of 0 ended case(s)" in again.stdout


@pytest.mark.postgres
def test_lost_database_connection_is_unavailable_not_a_traceback(rel_database: str) -> None:
    """PostgreSQL restarted under a running command printed a driver traceback. A connection
    lost inside a transaction is now Unavailable (a BedsideError with a message)."""
    store = open_store(rel_database)
    admin = create_engine(rel_database, isolation_level="AUTOCOMMIT")
    try:
        for tx in (read_tx, write_tx):

            def cut_off(tx: Any = tx) -> None:
                with tx(store.engine) as conn:
                    pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
                    with admin.connect() as other:
                        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                    conn.execute(text("SELECT 1"))

            with pytest.raises(Unavailable, match="stopped answering") as err:
                cut_off()
            assert err.value.exit_code == 1
            assert "postgres@" not in err.value.message
        assert store.verify_chains().ok  # the pool recovers by itself on the next use
    finally:
        admin.dispose()
        store.close()


@pytest.mark.parametrize(
    ("key_line", "expected"),
    [
        ("  step: eligibility\n", "eligibility.step is empty"),
        ("  max_age: {", "eligibility.max_age is empty"),
        ("  drug: ", "protocol.drug is empty"),
    ],
)
def test_empty_required_value_is_a_protocol_issue_with_its_line(
    key_line: str, expected: str
) -> None:
    """Fuzzing found `key:` with no value ended in a ProtocolError listing no problem (an
    empty message, no line). Now the key's own line says what is missing."""
    lines = default_protocol_path().read_text(encoding="utf-8").splitlines(keepends=True)
    n = next(i for i, line in enumerate(lines) if line.startswith(key_line))
    lines[n] = lines[n].split(":", 1)[0] + ":\n"
    with pytest.raises(ProtocolError) as err:
        parse_protocol("".join(lines).encode(), "p.yaml")
    assert any(i.line == n + 1 and expected in i.message for i in err.value.issues), str(err.value)


def test_serve_archives_a_case_a_killed_server_left_without_records(tmp_path: Path) -> None:
    """The web crash campaign killed `bedside serve` between a dose's closing step and its
    archive write: the case ended with no records, and a restarted server never archived them
    (only `bedside run` and `bedside demo` caught up). `bedside serve` now catches up first."""
    home = floor_cost_home(tmp_path / "home")
    create_site_pki(home / "pki", organisation="Regression site")
    clock = FixedClock(datetime(2026, 11, 2, 6, 0, tzinfo=UTC))
    app = open_bedside(home, clock=clock, archive=False)  # the state the kill leaves
    try:
        (dose,) = run_persistent(app, clock, 1)
    finally:
        app.store.close()
    assert dose.state == "completed" and dose.records == ()
    assert bedside(home, None, "archive", "verify").returncode == 1

    server = Server(home, None, tmp_path / "serve.log")  # returns once it answers
    server.stop()
    assert "archived the records of 1 ended case(s)" in (tmp_path / "serve.log").read_text()
    after = bedside(home, None, "archive", "verify")
    assert after.returncode == 0, after.stdout
    assert "checked 2 records: 2 ok" in after.stdout


def test_a_signature_is_answered_with_the_version_it_made(tmp_path: Path) -> None:
    """The web soak found a 200 to a step POST whose body showed a later version: another
    tablet's step, written between this one's append and the answer being built, so the client
    could not tell which version its own signature made. The answer now describes the
    signature's own result (the other step is stored all the same)."""
    app = open_bedside(tmp_path / "home", archive=False)
    try:
        for username, (name, role) in PEOPLE.items():
            app.identity.add_user(username, name, [role], PASSWORD, by="test")
        patient = app.store.add_patient(
            mrn="MRN-REG-0001", family_name="Race", given_name="Answer",
            date_of_birth="1968-05-17", created_by="test",
        )  # fmt: skip
        p = app.protocol
        course = app.store.start_course(
            patient.id, protocol_id=p.id, protocol_version=p.version, protocol_hash=p.content_hash
        )
        view = app.open_case(course.id, app.clock.now(), Credentials("dr.rel", PASSWORD))
        case_id = view.case.case_id
        for step in STEP_IDS[: STEP_IDS.index("reconstitution")]:
            proof = Credentials(SIGNER[step], PASSWORD)
            view = app.sign_step(case_id, view.version, step, entries(view.case, step), proof)
        real_sign = app.sign_step

        def then_another_tablet(
            case_id: str,
            version: int,
            step_id: str,
            values: dict[str, Any],
            proof: Any,
            *more: Any,
            **options: Any,
        ) -> CaseView:
            mine = real_sign(case_id, version, step_id, values, proof, *more, **options)
            # A second technician's tablet lands the next step before this answer is built.
            dilution = entries(mine.case, "dilution")
            real_sign(case_id, mine.version, "dilution", dilution, Credentials("t.rel", PASSWORD))
            return mine

        app.sign_step = then_another_tablet  # type: ignore[method-assign]
        client = TestClient(create_app(app, WebSettings()))
        signed_in = client.post("/api/session", json={"username": "t.rel", "password": PASSWORD})
        client.headers["X-CSRF-Token"] = signed_in.json()["csrf_token"]
        body = {
            "expected_version": view.version,
            "values": entries(view.case, "reconstitution"),
            "password": PASSWORD,
        }
        r = client.post(f"/api/cases/{case_id}/steps/reconstitution", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["version"] == view.version + 1
        assert r.json()["next_step"]["id"] == "dilution"
        assert app.store.get_case(case_id).version == view.version + 2
    finally:
        app.store.close()


def test_a_forged_and_rehashed_event_is_caught_by_both_verifies_and_refused_by_catch_up(
    tmp_path: Path, db_url: str
) -> None:
    """Issue 13.1, written as the attack: someone with write access to the database edits a
    vial lot, recomputes every SHA-256 with Bedside's own hashing, deletes the case's archive
    index rows and runs `archive catch-up`. Before the fix both verifies passed, and catch-up
    signed new records for the forged events with the site's key while the original signed
    PDFs lay in `archive/` unindexed. Now catch-up refuses (nothing signed), `audit verify`
    fails on the signed checkpoint the archiving left outside the database, and `archive
    verify` names the original records and how their signed events differ."""
    home = floor_cost_home(tmp_path / "home")
    create_site_pki(home / "pki", organisation="Regression site")
    clock = FixedClock(datetime(2026, 11, 2, 6, 0, tzinfo=UTC))
    app = open_bedside(home, db_url, clock=clock)
    try:
        (dose,) = run_persistent(app, clock, 1)
        assert dose.state == "completed" and len(dose.records) == 2
        engine = app.store.engine
        archive_files = sorted((home / "archive").glob("??/*.pdf"))
        checkpoints = sorted((home / "checkpoints").glob("*.json"))
        assert len(archive_files) == 2 and len(checkpoints) == 1
        assert bedside(home, db_url, "audit", "verify").returncode == 0
        assert bedside(home, db_url, "archive", "verify").returncode == 0

        def relabel(data: dict[str, Any]) -> None:
            assert data["values"]["vial_lot"]
            data["values"]["vial_lot"] = "FORGED-LOT-1"

        events = app.store.load_events(dose.case_id)
        seq = next(e.seq for e in events if e.step == "reconstitution")
        forge_event(engine, dose.case_id, seq, relabel)
        # The forgery is consistent as far as the database can tell.
        assert app.store.verify_chains().ok
    finally:
        app.store.close()

    # With the index rows still there, the signed records already contradict the database.
    verify_archive = bedside(home, db_url, "archive", "verify")
    assert verify_archive.returncode == 1
    assert verify_archive.stdout.count("FAILED") == 2
    assert f"event {seq} (reconstitution) differs in data.values.vial_lot" in verify_archive.stdout

    store = open_store(db_url)
    try:
        assert delete_index_rows(store.engine, dose.case_id) == 2
    finally:
        store.close()

    caught = bedside(home, db_url, "archive", "catch-up")
    assert caught.returncode == 1, caught.stdout
    assert "REFUSING TO SIGN" in caught.stderr and dose.case_id in caught.stderr
    assert f"event {seq} (reconstitution) differs in data.values.vial_lot" in caught.stderr
    assert "Traceback" not in caught.stderr
    # Nothing new was signed: the archive holds the two original records only.
    assert sorted((home / "archive").glob("??/*.pdf")) == archive_files

    audit = bedside(home, db_url, "audit", "verify")
    assert audit.returncode == 1
    assert "CHECKPOINT" in audit.stderr and "the chain was recomputed" in audit.stderr

    verify_archive = bedside(home, db_url, "archive", "verify")
    assert verify_archive.returncode == 1
    assert verify_archive.stdout.count("UNINDEXED") == 2
    assert f"a record of case {dose.case_id} that the archive index does not know" in (
        verify_archive.stdout
    )
    assert "its events DISAGREE with the database" in verify_archive.stdout
    assert f"MISSING case {dose.case_id}" in verify_archive.stdout

    # `bedside serve` catches up too before serving: it refuses the forged case just as loudly,
    # and still serves the ward (returns once it answers).
    server = Server(home, db_url, tmp_path / "serve.log")
    server.stop()
    log = (tmp_path / "serve.log").read_text()
    assert "REFUSING TO SIGN" in log and dose.case_id in log and "Traceback" not in log
    assert sorted((home / "archive").glob("??/*.pdf")) == archive_files
