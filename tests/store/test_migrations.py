"""Named migrations: applied in order, recorded, idempotent, upgrading a database in place."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, inspect

from workflow.clock import FixedClock
from workflow.errors import IntegrityError
from workflow.store import MIGRATIONS, Store, applied_migrations, make_engine, migrate
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
