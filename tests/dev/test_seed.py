"""The seed generator and the bulk path: realistic cases, the live path's hashes, honest archive
rows; and what keeps a big database fast (indexes used, keyset paging, migrations on data)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from workflow.archive import Archive
from workflow.core.clock import FixedClock
from workflow.core.events import Signer
from workflow.core.machine import Case
from workflow.core.protocol import Protocol
from workflow.dev.seed import seed
from workflow.dev.walk import values_for
from workflow.identity import Identity
from workflow.records.case_records import record_documents
from workflow.records.pki import create_site_pki
from workflow.store import Store, migrate, open_store
from workflow.store.engine import make_engine
from workflow.store.placeholders import PLACEHOLDER_PATH, is_placeholder, placeholder_sha256

END = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
COMPOUNDING = ["reconstitution", "dilution", "pharmacy_verification"]


def _seeded(url: str, protocol: Protocol, patients: int = 10, doses: int = 120) -> Store:
    store = open_store(url, clock=FixedClock(END))
    identity = Identity(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    seed(store, protocol, patients=patients, doses=doses, end=END, identity=identity)
    return store


def test_seeded_cases_are_real_walks_with_the_live_hashes(db_url: str, protocol: Protocol) -> None:
    store = _seeded(db_url, protocol)
    try:
        report = store.verify_chains()
        assert report.ok, report.first_problem
        cases = store.list_cases()
        assert len(cases) == 120
        assert report.events_checked > 120 * 10
        # A realistic mix: completed mostly, some side exits, some doses still in progress.
        states = Counter(c.state for c in cases)
        assert states["completed"] > 80
        assert set(states) - {"completed"}, states
        # Every case replays on the real machine to the state its row records.
        for record in cases[:40]:
            events = store.load_events(record.id)
            case = Case.replay(protocol, record.id, events)
            assert case.state == record.state and case.version == record.version
        # The log continues on the live path: the next append links to the bulk-loaded head.
        open_case = next(c for c in cases if c.state in protocol.step_ids())
        case = Case.replay(protocol, open_case.id, store.load_events(open_case.id))
        step = case.next_step()
        assert step is not None
        nurse = next(u for u in _users(store) if "nurse" in u[2])
        now = case.events[-1].at + timedelta(minutes=10)
        event = case.sign(step.id, values_for(case, step.id, now), Signer(*nurse), now)
        store.append(
            open_case.id,
            open_case.version,
            [event],
            protocol_version=protocol.version,
            protocol_hash=protocol.content_hash,
            state=case.state,
        )
        assert store.verify_chains().ok
    finally:
        store.close()


def _users(store: Store) -> list[tuple[str, str, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, printed_name, roles FROM users")).all()
    return [(r.id, r.printed_name, r.roles) for r in rows]


def test_placeholder_rows_are_what_the_archive_would_index(db_url: str, protocol: Protocol) -> None:
    store = _seeded(db_url, protocol, patients=4, doses=40)
    try:
        rows = list(store.iter_archive(batch=7))
        assert rows and all(is_placeholder(r) for r in rows)
        assert all(r.path == PLACEHOLDER_PATH for r in rows)
        ended = [c for c in store.list_cases() if c.state in protocol.final_states]
        assert {r.case_id for r in rows if r.kind == "administration"} == {c.id for c in ended}
        for record in ended[:10]:
            case = Case.replay(protocol, record.id, store.load_events(record.id))
            docs = record_documents(case, store.case_chain_hash(record.id))
            mine = {r.kind: r for r in rows if r.case_id == record.id}
            assert set(mine) == {d.kind for d in docs}
            for doc in docs:
                row = mine[doc.kind]
                assert row.sha256 == placeholder_sha256(record.id, doc.kind)
                assert row.signers == "; ".join(sorted({s.signer for s in doc.signatures}))
                assert row.state == case.state and row.mrn == case.patient.mrn  # type: ignore[union-attr]
    finally:
        store.close()


def test_search_pages_and_text_match_a_plain_scan(db_url: str, protocol: Protocol) -> None:
    store = _seeded(db_url, protocol, patients=10, doses=120)
    try:
        everything = list(store.iter_archive(batch=13))
        by_offset = [
            r for offset in range(0, 400, 50) for r in store.search_archive(limit=50, offset=offset)
        ]
        assert [r.sha256 for r in everything] == [r.sha256 for r in by_offset]
        assert len({r.sha256 for r in everything}) == len(everything)
        sample = everything[len(everything) // 2]
        family = sample.patient_name.split(",")[0].lower()
        for needle in (family[1:5], sample.mrn[-6:], sample.mrn.lower()[2:9], "zz", "qqqq"):
            found = _all(store, needle)
            expected = {
                r.sha256
                for r in everything
                if needle.lower() in r.patient_name.lower() or needle.lower() in r.mrn.lower()
            }
            assert found == expected, needle
    finally:
        store.close()


def _all(store: Store, needle: str) -> set[str]:
    out: set[str] = set()
    before = None
    while True:
        page = store.search_archive(text=needle, limit=25, before=before)
        out.update(r.sha256 for r in page)
        if len(page) < 25:
            return out
        before = (page[-1].signed_at, page[-1].sha256)


def _plan(store: Store, sql: str, params: dict[str, object]) -> str:
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            rows = conn.execute(text("EXPLAIN QUERY PLAN " + sql), params).all()
            return "\n".join(str(r[-1]) for r in rows)
        # The tables are tiny here, so the planner would rightly scan them; forbidding scans
        # asks whether an index path exists at all, which is what matters at 100,000 rows.
        conn.execute(text("SET enable_seqscan = off"))
        rows = conn.execute(text("EXPLAIN " + sql), params).all()
        return "\n".join(str(r[0]) for r in rows)


def test_queues_and_search_use_indexes(db_url: str, protocol: Protocol) -> None:
    store = _seeded(db_url, protocol, patients=6, doses=60)
    try:
        queue = _plan(
            store,
            "SELECT * FROM cases WHERE state IN ('reconstitution', 'dilution', "
            "'pharmacy_verification') ORDER BY scheduled_at, id LIMIT 50",
            {},
        )
        assert "ix_cases_queue" in queue, queue
        newest = _plan(
            store, "SELECT * FROM archived_records ORDER BY signed_at DESC, sha256 LIMIT 50", {}
        )
        assert "ix_archived_signed" in newest, newest
        by_mrn = _plan(
            store,
            "SELECT * FROM archived_records WHERE mrn = :m "
            "ORDER BY signed_at DESC, sha256 LIMIT 50",
            {"m": "S1"},
        )
        assert "ix_archived_mrn_signed" in by_mrn, by_mrn
        if store.dialect == "sqlite":
            search = _plan(
                store,
                "SELECT rowid FROM archive_text WHERE archive_text MATCH :q",
                {"q": '"abc"'},
            )
            assert "VIRTUAL TABLE INDEX" in search, search
        else:
            search = _plan(
                store,
                "SELECT * FROM archived_records WHERE patient_name ILIKE :p OR mrn ILIKE :p",
                {"p": "%rivera%"},
            )
            assert "ix_archived_name_trgm" in search and "ix_archived_mrn_trgm" in search, search
    finally:
        store.close()


def test_migration_0006_on_a_populated_database(db_url: str, protocol: Protocol) -> None:
    """Rows written before the indexes existed are found by the new text index."""
    engine = make_engine(db_url)
    migrate(engine, target="0005_protocols")
    engine.dispose()
    store = Store(make_engine(db_url), FixedClock(END))
    identity = Identity(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    seed(store, protocol, patients=3, doses=30, end=END, identity=identity)
    before = list(store.iter_archive())
    assert migrate(store.engine) == [
        "0006_scale_indexes",
        "0007_archive_record_key",
        "0008_course_start",
        "0009_formulary",
        "0010_interface",
        "0011_orders16_pending_orders",
    ]
    try:
        after = list(store.iter_archive())
        assert after == before
        target = before[0]
        assert target.sha256 in {
            r.sha256 for r in store.search_archive(text=target.mrn[-7:].lower(), limit=500)
        }
        assert store.verify_chains().ok
    finally:
        store.close()


@pytest.mark.parametrize("doses", [1, 29])
def test_small_and_odd_sizes(tmp_path: Path, protocol: Protocol, doses: int) -> None:
    url = f"sqlite:///{tmp_path}/s.sqlite3"
    store = _seeded(url, protocol, patients=1, doses=doses)
    try:
        assert len(store.list_cases()) == doses
        assert store.verify_chains().ok
    finally:
        store.close()


def test_archive_verify_counts_placeholders_apart(tmp_path: Path, protocol: Protocol) -> None:
    """Real signed records for the sample, placeholders counted apart, and a real row
    relabelled as a placeholder (to hide a lost file) is a failure."""
    home = tmp_path / "home"
    create_site_pki(home / "pki", organisation="Test site")
    store = open_store(f"sqlite:///{home / 'bedside.sqlite3'}", clock=FixedClock(END))
    archive = Archive(home, store)
    identity = Identity(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    try:
        report = seed(
            store,
            protocol,
            patients=2,
            doses=12,
            end=END,
            identity=identity,
            archive_case=archive.archive_case,
            signed_sample=2,
        )
        assert report.records_signed == 2
        result = archive.verify_all()
        assert result.ok and result.placeholders == report.placeholders > 0
        assert result.checked == len(list(store.iter_archive())) - result.placeholders >= 2
        real = next(r for r in store.iter_archive() if not is_placeholder(r))
        with store.engine.begin() as conn:
            conn.execute(
                text("UPDATE archived_records SET path = :p WHERE sha256 = :s"),
                {"p": PLACEHOLDER_PATH, "s": real.sha256},
            )
        failed = archive.verify_all().failed
        assert [sha for sha, _ in failed] == [real.sha256]
    finally:
        store.close()
