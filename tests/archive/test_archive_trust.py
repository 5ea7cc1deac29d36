"""The archive as evidence the database cannot rewrite (issue 13.1), on SQLite and PostgreSQL:
a record is noted by case outside the database, a case whose events disagree with a record
already signed for it is refused, a legitimate later event (a correction after the dose) is
archived again, and cut-off writes are finished or cleared rather than left unreported."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from service.test_service import clock_of, new_course, open_and_order, walk, who
from store.forgery import delete_index_rows, forge_event

from workflow.archive import Archive
from workflow.core.errors import IntegrityError, StepRefused
from workflow.service import Bedside, CaseView
from workflow.store import Store


def _completed(app: Bedside) -> CaseView:
    return walk(app, open_and_order(app, new_course(app)))


def _seq_of(view: CaseView, step: str) -> int:
    return next(e.seq for e in view.case.events if e.step == step)


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_every_record_is_noted_by_case_outside_the_database(app: Bedside, home: Path) -> None:
    view = _completed(app)
    archive = Archive(home, app.store)
    noted = archive.register.noted(view.case.case_id)
    indexed = app.store.search_archive(case_id=view.case.case_id)
    assert sorted((n.sha256, n.kind) for n in noted) == sorted((r.sha256, r.kind) for r in indexed)
    # ... and every archiving leaves a signed checkpoint of the log naming its records.
    (checkpoint,) = (home / "checkpoints").glob("*.json")
    assert view.case.case_id in checkpoint.read_text()


def test_an_ended_case_takes_no_correction_so_its_records_stay_the_whole_story(
    app: Bedside, home: Path
) -> None:
    """An ended case's records are signed: a correction is refused (issue 11.11), nothing is
    appended, and the archive keeps exactly the records of the events as stored."""
    view = _completed(app)
    clock_of(app).advance(minutes=30)
    target = _seq_of(view, "observation")
    with pytest.raises(StepRefused) as refused:
        app.correct(
            view.case.case_id,
            view.version,
            target,
            {"observation_notes": "Flushed, comfortable; BP rechecked."},
            "note left out",
            who("n.alvarez"),
        )
    assert refused.value.reason == "case_closed"
    assert app.load(view.case.case_id).version == view.version
    records = app.store.search_archive(case_id=view.case.case_id)
    assert len(records) == 2
    report = Archive(home, app.store).verify_all()
    assert report.ok and report.compared == 2, report


def test_archiving_refuses_events_that_disagree_with_a_signed_record(
    app: Bedside, home: Path
) -> None:
    view = _completed(app)
    archive = Archive(home, app.store)
    before = sorted(archive.blobs.iter_hashes())

    def relabel(data: dict[str, Any]) -> None:
        data["values"]["vial_lot"] = "FORGED"

    seq = _seq_of(view, "reconstitution")
    forge_event(app.store.engine, view.case.case_id, seq, relabel)
    delete_index_rows(app.store.engine, view.case.case_id)
    forged = app.load(view.case.case_id)  # the chain was recomputed: it loads
    with pytest.raises(IntegrityError, match="REFUSING TO SIGN") as err:
        archive.archive_case(forged.case, app.store.case_chain_hash(view.case.case_id))
    assert f"event {seq} (reconstitution) differs in data.values.vial_lot" in err.value.message
    assert sorted(archive.blobs.iter_hashes()) == before  # nothing was signed
    assert app.store.search_archive(case_id=view.case.case_id) == []


def test_a_record_stored_but_not_indexed_is_reported_then_indexed_not_signed_twice(
    app: Bedside, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between storing a record's file and writing its index row left a signed file
    nobody knew about, and the catch-up signed a second copy. Now `archive verify` reports the
    file (with its case, and that its events agree) and the catch-up indexes it."""
    calls = {"n": 0}
    real = Store.add_archived_record

    def crash_on_second(self: Store, record: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the administration record: its file is stored, then "SIGKILL"
            raise KeyboardInterrupt("killed between the file and its index row")
        real(self, record)

    monkeypatch.setattr(Store, "add_archived_record", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        _completed(app)
    monkeypatch.setattr(Store, "add_archived_record", real)
    archive = Archive(home, app.store)
    files = sorted(archive.blobs.iter_hashes())
    assert len(files) == 2
    report = archive.verify_all()
    (unindexed,) = report.unindexed
    assert "that the archive index does not know" in unindexed[1]
    assert "signature ok; its events agree with the database" in unindexed[1]
    assert not report.ok
    (case_id,) = app.unarchived_cases()
    app.archive_pending()
    assert sorted(archive.blobs.iter_hashes()) == files  # indexed, not signed again
    assert len(app.store.search_archive(case_id=case_id)) == 2
    assert archive.verify_all().ok


def test_cut_off_writes_are_finished_or_cleared_and_reported_until_then(
    app: Bedside, home: Path
) -> None:
    view = _completed(app)
    archive = Archive(home, app.store)
    (record,) = [
        r for r in app.store.search_archive(case_id=view.case.case_id) if r.kind == "compounding"
    ]
    pdf = archive.blobs.get(record.sha256)
    fan = archive.blobs.path(record.sha256).parent
    # A write killed mid-file (a partial PDF) and one killed just before its link (whole).
    partial = fan / ".incoming-partial"
    partial.write_bytes(pdf[: len(pdf) // 2])
    young = fan / ".incoming-young"
    young.write_bytes(b"%PDF-1.7 being written")
    _age(partial, 3600)
    report = archive.verify_all()
    assert report.ok  # reported, not failed: never named, never indexed
    assert [Path(w).name for w, _ in report.stale_leftovers] == [".incoming-partial"]
    assert {Path(w).name for w, _ in report.leftovers} == {".incoming-partial", ".incoming-young"}
    # The whole one: its blob "lost" its link (the file is removed to stand for that crash).
    os.chmod(fan, 0o755)
    whole = fan / ".incoming-whole"
    os.link(archive.blobs.path(record.sha256), whole)
    archive.blobs.path(record.sha256).unlink()
    _age(whole, 3600)
    swept = archive.sweep()
    assert swept.completed == (record.sha256,)
    assert [Path(w).name for w in swept.removed] == [".incoming-partial"]
    assert young.exists()  # a live writer's file is left alone
    young.unlink()
    assert archive.verify_all().ok


def test_records_of_an_older_archive_are_noted_once_so_they_are_defended_too(
    app: Bedside, home: Path
) -> None:
    """An archive made before the register existed has index rows only. The first sweep
    (`serve` start-up, `archive catch-up`) notes them all, once; after that, deleting their
    index rows no longer lets a catch-up sign over them."""
    view = _completed(app)
    archive = Archive(home, app.store)
    shutil.rmtree(home / "archive" / "by-case")  # as an earlier Bedside left it
    assert archive.register.noted(view.case.case_id) == []
    archive.sweep()
    assert len(archive.register.noted(view.case.case_id)) == 2
    assert archive.note_indexed_records() == 0  # done once
    seq = _seq_of(view, "dilution")
    forge_event(
        app.store.engine, view.case.case_id, seq, lambda d: d["values"].update(d5w_lot="X1")
    )
    delete_index_rows(app.store.engine, view.case.case_id)
    result = app.archive_pending()
    assert result.archived == []
    assert (
        f"event {seq} (dilution) differs in data.values.d5w_lot"
        in result.refused[view.case.case_id]
    )
