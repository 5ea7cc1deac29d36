"""Records made just after the closing step (service/records_later.py), as `bedside serve`
makes them: the step answers with its records pending, the records writer signs and archives
them, a failure leaves the case "ended without records" for catch-up, a clean shutdown drains
the queue and a kill leaves it to the start-up catch-up. On SQLite and PostgreSQL, with the
real archive (reportlab, pyHanko) and real signatures checked."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from interop.hl7_support import msa, order
from interop.support import clock_of, walk, who

from workflow.archive import Archive
from workflow.service import (
    RECORDS_ARCHIVED,
    RECORDS_FAILED,
    RECORDS_PENDING,
    Bedside,
    CaseView,
    RecordsWriter,
)

from .test_service import new_course, open_and_order

DRAIN_S = 120.0  # a bound for a loaded test machine; the records take well under a second


def _archived_and_verified(app: Bedside, home: Path, case_id: str) -> None:
    """Both records are in the index and each verifies (pyHanko: signature, trust, hash)."""
    archive = Archive(home, app.store)
    records = app.store.search_archive(case_id=case_id)
    assert sorted(r.kind for r in records) == ["administration", "compounding"]
    for rec in records:
        result = archive.verify_bytes(archive.blobs.get(rec.sha256))
        assert result.ok, result.to_dict()


def _signed_off_later(app: Bedside, mrn: str = "MRN-1") -> tuple[CaseView, RecordsWriter]:
    """A dose walked to the end with a records writer that has not started yet."""
    writer = app.records_later or app.write_records_later(start=False)
    view = walk(app, open_and_order(app, new_course(app, mrn)))
    return view, writer


def test_the_sign_off_answers_with_its_records_pending_until_the_writer_makes_them(
    app: Bedside, home: Path
) -> None:
    view, writer = _signed_off_later(app)
    case_id = view.case.case_id
    assert view.case.state == "completed"
    assert app.case_records(view).state == RECORDS_PENDING and view.archive_error is None
    # Committed, nothing archived yet: the case is one catch-up would make.
    assert app.load(case_id).case.state == "completed"
    assert app.store.search_archive(case_id=case_id) == []
    assert app.unarchived_cases() == [case_id]
    assert app.case_records(view).state == RECORDS_PENDING
    writer.submit(case_id)  # again (a second look): queued once
    assert writer.queued() == [case_id]
    assert not writer.drain(0.1)  # not started: nothing is made

    writer.start()
    assert writer.drain(DRAIN_S)
    _archived_and_verified(app, home, case_id)
    status = app.case_records(app.load(case_id))
    assert status.state == RECORDS_ARCHIVED and status.reason is None
    assert sorted(r.kind for r in status.records) == ["administration", "compounding"]
    assert app.unarchived_cases() == []
    assert writer.close() == []


def test_an_open_case_has_no_records_state(app: Bedside) -> None:
    app.write_records_later(start=False)
    view = open_and_order(app, new_course(app))
    assert app.case_records(view).state is None


def test_a_side_exit_that_ends_the_dose_hands_its_records_over_too(
    app: Bedside, home: Path
) -> None:
    writer = app.write_records_later(start=False)
    view = open_and_order(app, new_course(app))
    clock_of(app).advance(minutes=5)
    ended = app.side_exit(
        view.case.case_id,
        view.version,
        "cancel",
        "patient_unavailable",
        "patient declined",
        who("dr.okafor"),
    )
    assert ended.case.state == "cancelled"
    assert app.case_records(ended).state == RECORDS_PENDING
    assert writer.queued() == [view.case.case_id]
    writer.start()
    assert writer.drain(DRAIN_S)
    assert app.case_records(app.load(view.case.case_id)).state == RECORDS_ARCHIVED
    assert app.unarchived_cases() == []
    writer.close()


def test_a_hospital_cancellation_that_ends_a_dose_hands_its_records_over(app: Bedside) -> None:
    """orders.py ends a dose after its transaction: the same hand-off as a closing step."""
    writer = app.write_records_later(start=False)
    new_course(app)
    assert msa(app.receive_hl7(order("MSG0020")).ack)[0] == "AA"
    [case_id] = [r.id for r in app.store.list_cases()]
    clock_of(app).advance(minutes=5)
    code, _, text = msa(app.receive_hl7(order("MSG0021", "DC", reason="^Toxicity")).ack)
    assert code == "AA", text
    assert app.load(case_id).case.state == "cancelled"
    assert writer.queued() == [case_id]
    assert app.store.search_archive(case_id=case_id) == []
    writer.start()
    assert writer.drain(DRAIN_S)
    assert app.case_records(app.load(case_id)).state == RECORDS_ARCHIVED
    writer.close()


def test_a_writer_failure_is_logged_and_left_for_catch_up(
    app: Bedside, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The signing key left readable by others: signing refuses it, as an inline sign-off's
    records are refused. The step stands, the case is "ended without records" (the pages say
    so, with why) and catch-up makes them once the fault is mended."""
    view, writer = _signed_off_later(app)
    case_id = view.case.case_id
    key = next((home / "pki").glob("signing-key*.pem"))
    key.chmod(0o644)
    writer.start()
    with caplog.at_level(logging.ERROR, logger="bedside"):
        assert writer.drain(DRAIN_S)
    assert any(
        case_id in r.getMessage() and "records were not made" in r.getMessage()
        for r in caplog.records
    )
    assert app.load(case_id).case.state == "completed"
    assert app.unarchived_cases() == [case_id]
    status = app.case_records(app.load(case_id))
    assert status.state == RECORDS_FAILED and status.reason
    assert writer.failure(case_id) == status.reason
    writer.close()

    key.chmod(0o600)
    assert app.archive_pending().archived == [case_id]
    _archived_and_verified(app, home, case_id)
    assert app.case_records(app.load(case_id)).state == RECORDS_ARCHIVED


def test_a_clean_shutdown_drains_what_is_queued(app: Bedside, home: Path) -> None:
    first, writer = _signed_off_later(app, "MRN-1")
    second, _ = _signed_off_later(app, "MRN-2")
    assert writer.queued() == [first.case.case_id, second.case.case_id]
    writer.start()
    assert writer.close() == []  # what `bedside serve` runs when it stops
    for view in (first, second):
        _archived_and_verified(app, home, view.case.case_id)
    assert app.unarchived_cases() == []


def test_a_killed_writer_leaves_its_queue_to_the_start_up_catch_up(
    app: Bedside, home: Path
) -> None:
    view, writer = _signed_off_later(app)
    case_id = view.case.case_id
    assert writer.stop() == [case_id]  # the server killed: nothing drained
    assert app.store.search_archive(case_id=case_id) == []
    # Just ended: another server may be making them, so still "being made" for a while...
    assert app.case_records(app.load(case_id)).state == RECORDS_PENDING
    clock_of(app).advance(minutes=3)
    # ...then "ended without records", which every start's catch-up makes.
    assert app.case_records(app.load(case_id)).state == RECORDS_FAILED
    assert app.unarchived_cases() == [case_id]
    assert app.archive_pending().archived == [case_id]  # `bedside serve` runs it at start
    _archived_and_verified(app, home, case_id)


def test_records_are_made_while_other_steps_are_signed(app: Bedside, home: Path) -> None:
    """The writer's thread archives (its own store connections) while this thread signs the
    steps of another dose: both durable, every chain intact."""
    first, writer = _signed_off_later(app, "MRN-1")
    writer.start()
    second = walk(app, open_and_order(app, new_course(app, "MRN-2")))
    assert writer.drain(DRAIN_S)
    for view in (first, second):
        _archived_and_verified(app, home, view.case.case_id)
    assert app.store.verify_chains().ok
    writer.close()


def test_without_a_writer_the_records_are_made_inline(app: Bedside, home: Path) -> None:
    """`bedside run`, `bedside demo` and a Bedside built directly: as before."""
    view = walk(app, open_and_order(app, new_course(app)))
    assert app.records_later is None and view.archive_error is None
    _archived_and_verified(app, home, view.case.case_id)
    assert app.case_records(view).state == RECORDS_ARCHIVED


def test_without_signing_material_an_ended_case_has_failed_records_at_once(
    app: Bedside,
) -> None:
    """No archiver, no writer: no server will make them, so no "being made" grace either."""
    app.archiver = None
    view = walk(app, open_and_order(app, new_course(app)))
    status = app.case_records(view)
    assert status.state == RECORDS_FAILED and status.reason and "bedside init" in status.reason
