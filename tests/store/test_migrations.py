"""Named migrations: applied in order, recorded, idempotent, upgrading a database in place."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, inspect, text

from workflow.core.clock import FixedClock
from workflow.core.errors import ConflictError, IntegrityError
from workflow.store import (
    MIGRATIONS,
    ArchivedRecord,
    Store,
    applied_migrations,
    make_engine,
    migrate,
)
from workflow.store import _schema as s

from .helpers import append_steps, course_for_new_patient, open_case


def test_upgrade_in_place_keeps_data(db_url: str, clock: FixedClock) -> None:
    engine = make_engine(db_url)
    try:
        assert migrate(engine, target="0001_core", clock=clock) == ["0001_core"]
        assert not inspect(engine).has_table("users")
        old = Store(engine, clock)
        course = course_for_new_patient(old, mrn="OLD-1")
        case = append_steps(old, open_case(old, course), 3)
        before = old.load_events(case.id)

        assert migrate(engine, clock=clock) == [m.name for m in MIGRATIONS[1:]]
        assert applied_migrations(engine) == [m.name for m in MIGRATIONS]
        assert inspect(engine).has_table("users")
        new = Store(engine, clock)
        assert new.load_events(case.id) == before
        found = new.find_patient_by_mrn("OLD-1")
        assert found is not None and found.id == course.patient_id
        assert new.verify_chains().ok
        assert append_steps(new, case, 1).version == 5
        assert migrate(engine, clock=clock) == []  # idempotent
    finally:
        engine.dispose()


def test_database_from_a_newer_bedside_is_refused(store: Store, clock: FixedClock) -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(s.schema_migrations).values(name="9999_future", applied_at=clock.now()))
    with pytest.raises(IntegrityError, match="newer Bedside"):
        migrate(store.engine)


def _record(sha_digit: str, events_sha256: str | None = None) -> ArchivedRecord:
    at = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    return ArchivedRecord(
        sha256=sha_digit * 64,
        case_id="case-1",
        kind="administration",
        patient_name="QUIST, Ada",
        mrn="MRN-1",
        dose_label="cycle 1 dose 1 (course dose 1)",
        cycle=1,
        signed_at=at,
        lots="L1",
        signers="A",
        state="completed",
        path="archive/x.pdf",
        created_at=at,
        events_sha256=events_sha256,
    )


def test_0007_adds_the_record_key_to_an_archive_index_made_without_it(
    db_url: str, clock: FixedClock
) -> None:
    """A 0006 database whose archive index has no events key gains it in place, old rows
    keep NULL (and never collide), and new rows with the same events are refused."""
    engine = make_engine(db_url)
    try:
        migrate(engine, target="0006_scale_indexes", clock=clock)
        with engine.begin() as conn:
            # The table as 0003 made it before this column existed.
            conn.execute(text("ALTER TABLE archived_records DROP COLUMN events_sha256"))
            for digit in "ab":  # two old rows for one case and kind: allowed then
                values = {k: v for k, v in vars(_record(digit)).items() if k != "events_sha256"}
                # Only the named columns are written, so the dropped one is never mentioned.
                conn.execute(insert(s.archived_records).values(**values))
        assert migrate(engine, target="0007_archive_record_key", clock=clock) == [
            "0007_archive_record_key"
        ]
        columns = {c["name"] for c in inspect(engine).get_columns("archived_records")}
        assert "events_sha256" in columns
        store = Store(engine, clock)
        old = store.search_archive(case_id="case-1")
        assert {r.sha256 for r in old} == {"a" * 64, "b" * 64}
        assert {r.events_sha256 for r in old} == {None}
        store.add_archived_record(_record("c", events_sha256="e" * 64))
        with pytest.raises(ConflictError):
            store.add_archived_record(_record("d", events_sha256="e" * 64))
        found = store.find_archived_record("case-1", "administration", "e" * 64)
        assert found is not None and found.sha256 == "c" * 64
        assert len(store.search_archive(case_id="case-1")) == 3
    finally:
        engine.dispose()


def test_0008_adds_the_course_start_record_to_courses_made_without_it(
    db_url: str, clock: FixedClock
) -> None:
    """A 0007 database whose courses have no start record gains the column in place; old
    courses read back with none, new ones keep the signed record."""
    engine = make_engine(db_url)
    try:
        migrate(engine, target="0007_archive_record_key", clock=clock)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE courses DROP COLUMN start_record"))
        store = Store(engine, clock)
        patient = store.add_patient(
            mrn="MRN-0008",
            family_name="Old",
            given_name="Course",
            date_of_birth="1970-01-01",
            created_by="test",
        )
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO courses (id, patient_id, started_at, status, protocol_id, "
                    "protocol_version, protocol_hash) VALUES ('old', :p, :t, 'completed', 'x', "
                    "'1', :h)"
                ),
                {"p": patient.id, "t": "2026-01-01 00:00:00.000000", "h": "a" * 64},
            )
        assert migrate(engine, target="0008_course_start", clock=clock) == ["0008_course_start"]
        (old,) = store.list_courses(patient.id)
        assert old.start_record is None
        new = store.start_course(
            patient.id,
            protocol_id="x",
            protocol_version="1",
            protocol_hash="b" * 64,
            start_record={"attestations": {"no_organ_allograft": True}},
        )
        assert store.get_course(new.id).start_record == {
            "attestations": {"no_organ_allograft": True}
        }
    finally:
        engine.dispose()


def test_0010_adds_the_interface_tables_to_a_0009_database(db_url: str, clock: FixedClock) -> None:
    """An installation from before the interface gains its log and order links in place."""
    engine = make_engine(db_url)
    try:
        migrate(engine, target="0009_formulary", clock=clock)
        assert not inspect(engine).has_table("interface_log")
        assert migrate(engine, clock=clock) == ["0010_interface", "0011_orders16_pending_orders"]
        assert {"interface_log", "order_cases"} <= set(inspect(engine).get_table_names())
        assert Store(engine, clock).interface_log() == []
    finally:
        engine.dispose()


def test_0011_adds_the_pending_orders_table_to_a_0010_database(
    db_url: str, clock: FixedClock
) -> None:
    """Orders waiting for a course start get their table in place."""
    engine = make_engine(db_url)
    try:
        migrate(engine, target="0010_interface", clock=clock)
        assert not inspect(engine).has_table("pending_orders")
        assert migrate(engine, clock=clock) == ["0011_orders16_pending_orders"]
        assert inspect(engine).has_table("pending_orders")
        assert Store(engine, clock).pending_orders() == []
    finally:
        engine.dispose()
