"""Signed checkpoints of the log head, kept outside the database (issue 13.1): a forger who
recomputes every hash passes the chain walk but not a checkpoint signed before the edit."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import delete, update
from store.forgery import forge_event
from store.helpers import append_steps, course_for_new_patient, open_case

from workflow.archive.checkpoints import (
    KEY_FILE,
    PUBLIC_FILE,
    REASON_VERIFY,
    CheckpointWriter,
    check_against,
    folder_key,
    load_checkpoint_key,
    read_checkpoints,
    where_changed,
)
from workflow.core.clock import FixedClock
from workflow.store import CaseRecord, Store
from workflow.store import _schema as s


def _two_cases(store: Store, clock: FixedClock) -> tuple[CaseRecord, CaseRecord]:
    a = open_case(store, course_for_new_patient(store))
    b = open_case(store, course_for_new_patient(store))
    for _ in range(3):
        clock.advance(minutes=1)
        a = append_steps(store, a, 1)
        b = append_steps(store, b, 1)
    return a, b  # 8 events, interleaved


def _writer(tmp_path: Path) -> CheckpointWriter:
    return CheckpointWriter(tmp_path / "checkpoints", load_checkpoint_key(tmp_path / "pki"))


def _problems(store: Store, folder: Path) -> list[str]:
    found = read_checkpoints(folder, folder_key(folder))
    report = store.verify_chains({cp.length for cp in found.checkpoints})
    return [*found.problems, *check_against(found.checkpoints, report)]


def test_an_intact_log_matches_every_checkpoint(
    store: Store, clock: FixedClock, tmp_path: Path
) -> None:
    writer = _writer(tmp_path)
    writer.write(0, *store.log_head()[1:], clock.now(), REASON_VERIFY)  # the empty log
    _two_cases(store, clock)
    length, head = store.log_head()
    assert length == 8
    writer.write(length, head, clock.now(), REASON_VERIFY)
    assert _problems(store, writer.folder) == []
    files = sorted(writer.folder.glob("*.json"))
    assert [f.name[:12] for f in files] == ["000000000000", "000000000008"]
    # Read-only, never replaced; the private key never leaves pki/ (0600).
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o444 for f in files)
    assert stat.S_IMODE((tmp_path / "pki" / KEY_FILE).stat().st_mode) == 0o600
    assert "PRIVATE" not in (writer.folder / PUBLIC_FILE).read_text()


def test_a_recomputed_chain_contradicts_an_earlier_checkpoint(
    store: Store, clock: FixedClock, tmp_path: Path
) -> None:
    a, _ = _two_cases(store, clock)
    writer = _writer(tmp_path)
    writer.write(*store.log_head(), clock.now(), REASON_VERIFY)

    def change(data: dict[str, Any]) -> None:
        data["n"] = 99

    forge_event(store.engine, a.id, 2, change)
    assert store.verify_chains().ok  # consistent as far as the database can tell
    (problem,) = _problems(store, writer.folder)
    assert "chain hash at position 8" in problem and "the chain was recomputed" in problem


def test_checkpoints_narrow_down_where_the_change_lies(
    store: Store, clock: FixedClock, tmp_path: Path
) -> None:
    a = open_case(store, course_for_new_patient(store))
    writer = _writer(tmp_path)
    for _ in range(3):  # checkpoints at 3, 5 and 7 events
        a = append_steps(store, a, 2)
        writer.write(*store.log_head(), clock.now(), REASON_VERIFY)
    forge_event(store.engine, a.id, 4, lambda data: data.update(n=99))  # position 4
    found = read_checkpoints(writer.folder, folder_key(writer.folder))
    report = store.verify_chains({cp.length for cp in found.checkpoints})
    assert len(check_against(found.checkpoints, report)) == 2  # at 5 and at 7
    assert where_changed(found.checkpoints, report) == (
        "the log matches the checkpoints up to position 3; the change lies in positions 4-5"
    )


def test_an_edit_after_the_checkpoint_is_not_its_business(
    store: Store, clock: FixedClock, tmp_path: Path
) -> None:
    """A checkpoint vouches for the log up to its length: events added later, and an edit of
    them, are for the next checkpoint (why `audit verify --checkpoint` runs on a schedule)."""
    a, _ = _two_cases(store, clock)
    writer = _writer(tmp_path)
    writer.write(*store.log_head(), clock.now(), REASON_VERIFY)
    a = append_steps(store, a, 1)
    assert _problems(store, writer.folder) == []
    forge_event(store.engine, a.id, 5, lambda data: data.update(n=99))
    assert _problems(store, writer.folder) == []
    writer.write(*store.log_head(), clock.now(), REASON_VERIFY)  # anchors the log as it is


def test_a_shortened_log_is_found_by_a_longer_checkpoint(
    store: Store, clock: FixedClock, tmp_path: Path
) -> None:
    _, b = _two_cases(store, clock)
    writer = _writer(tmp_path)
    writer.write(*store.log_head(), clock.now(), REASON_VERIFY)
    # Remove the newest event and make the case and the head agree, as a careful forger would.
    with store.engine.begin() as conn:
        newest = conn.execute(s.events.select().where(s.events.c.log_seq == 8)).one()
        conn.execute(delete(s.signatures).where(s.signatures.c.event_id == newest.id))
        conn.execute(delete(s.events).where(s.events.c.id == newest.id))
        conn.execute(update(s.cases).where(s.cases.c.id == b.id).values(version=3))
        head = conn.execute(s.events.select().where(s.events.c.log_seq == 7)).one()
        conn.execute(update(s.log_head).values(event_count=7, head_hash=head.chain_hash))
    assert store.verify_chains().ok  # the database alone no longer remembers
    (problem,) = _problems(store, writer.folder)
    assert "covers 8 events, but the log holds only 7: events were deleted" in problem


def test_a_changed_or_foreign_checkpoint_is_a_problem_not_a_pass(
    store: Store, clock: FixedClock, tmp_path: Path
) -> None:
    _two_cases(store, clock)
    writer = _writer(tmp_path)
    path = writer.write(*store.log_head(), clock.now(), REASON_VERIFY)
    body = json.loads(path.read_text())
    body["checkpoint"]["hash"] = "0" * 64
    os.chmod(path, 0o644)
    path.write_text(json.dumps(body))
    other = CheckpointWriter(tmp_path / "other", load_checkpoint_key(tmp_path / "other-pki"))
    foreign = other.write(*store.log_head(), clock.now(), REASON_VERIFY)
    os.link(foreign, writer.folder / foreign.name)
    (writer.folder / "broken.json").write_text("{not json")
    problems = _problems(store, writer.folder)
    assert len(problems) == 3
    assert any("signature does not verify" in p for p in problems)
    assert any("signed by another key" in p for p in problems)
    assert any("not a checkpoint file" in p for p in problems)


def test_processes_making_the_key_at_once_share_one(tmp_path: Path) -> None:
    start = threading.Barrier(8)
    keys: list[bytes] = []

    def make() -> None:
        start.wait()
        key = load_checkpoint_key(tmp_path / "pki")
        keys.append(key.public_key().public_bytes_raw())

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert [p.name for p in (tmp_path / "pki").iterdir()] == [KEY_FILE]  # no temporary left
