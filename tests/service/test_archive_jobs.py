"""`archive verify --jobs`: the same report from one process as from worker processes, on
SQLite and PostgreSQL, with a missing file, a changed file and a record whose signed events the
database no longer agrees with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from store.forgery import forge_event

from workflow.archive import Archive
from workflow.cli import main
from workflow.service import Bedside

from .test_service import new_course, open_and_order, walk


def _tampered_archive(app: Bedside, home: Path) -> tuple[Archive, dict[str, str]]:
    views = [walk(app, open_and_order(app, new_course(app, f"MRN-{i}"))) for i in range(3)]
    archive = Archive(home, app.store)
    by_case = {
        v.case.case_id: [r.sha256 for r in app.store.search_archive(case_id=v.case.case_id)]
        for v in views
    }
    missing = by_case[views[0].case.case_id][0]
    archive.blobs.path(missing).unlink()
    changed = by_case[views[1].case.case_id][0]
    path = archive.blobs.path(changed)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))

    def relabel(event: dict[str, Any]) -> None:
        event["values"]["vial_lot"] = "FORGED"

    forged_case = views[2].case.case_id
    seq = next(e.seq for e in views[2].case.events if e.step == "reconstitution")
    forge_event(app.store.engine, forged_case, seq, relabel)
    return archive, {"missing": missing, "changed": changed, "forged": forged_case}


def test_one_and_two_jobs_give_the_same_report(app: Bedside, home: Path) -> None:
    archive, what = _tampered_archive(app, home)
    one = archive.verify_all(jobs=1)
    seen: list[tuple[int, int]] = []
    two = archive.verify_all(lambda done, total: seen.append((done, total)), jobs=2)
    assert one.failed == two.failed
    assert (one.checked, one.compared, one.placeholders) == (two.checked, two.compared, 0)
    assert one.unindexed == two.unindexed and not one.ok
    failures = dict(one.failed)
    assert failures[what["missing"]] == "file missing from the archive"
    assert failures[what["changed"]] == "file does not match its SHA-256"
    assert sum(what["forged"] in why and "disagree" in why for why in failures.values()) >= 1
    assert one.checked == 6 and len(one.failed) >= 3
    # Every record checked counted once on the progress bar, ending at the total.
    assert seen[-1] == (6, 6) and [d for d, _ in seen] == list(range(1, 7))
    # Every good record was checked (the first of the signer by pyHanko in full).
    assert two.quick + two.full == one.quick + one.full == 6 - 2
    assert one.disagreements == two.disagreements == ()


@pytest.mark.parametrize("jobs", ["0", "65", "-1"])
def test_jobs_out_of_range_is_refused(
    app: Bedside, home: Path, db_url: str, jobs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--home", str(home), "--db", db_url, "archive", "verify", "--jobs", jobs])
    assert code == 2
    err = capsys.readouterr().err
    assert "jobs" in err and "from 1 to 64" in err
