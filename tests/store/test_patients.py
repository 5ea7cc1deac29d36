"""Patients and courses: validation with field names, duplicate MRN refused and nothing changed."""

from __future__ import annotations

from datetime import date

import pytest

from workflow.core.clock import FixedClock
from workflow.core.errors import ConflictError, InputError, NotFound
from workflow.store import Patient, Store

from .helpers import PROTOCOL_HASH


def _add(store: Store, **change: object) -> Patient:
    fields: dict[str, object] = {
        "mrn": "A-1001",
        "family_name": "Doe",
        "given_name": "Jane",
        "date_of_birth": "1970-02-03",
        "created_by": "u-admin",
    }
    fields.update(change)
    return store.add_patient(**fields)  # type: ignore[arg-type]


def test_register_and_find(store: Store) -> None:
    patient = _add(store, family_name="  van  der Berg ", given_name="Ann")
    assert store.find_patient_by_mrn("A-1001") == patient
    assert store.get_patient(patient.id) == patient
    assert patient.family_name == "van der Berg"
    assert patient.date_of_birth == date(1970, 2, 3)
    assert store.list_patients() == [patient]
    assert store.find_patient_by_mrn("nope") is None
    with pytest.raises(NotFound):
        store.get_patient("nope")


def test_duplicate_mrn_is_refused_and_nothing_changes(store: Store) -> None:
    first = _add(store)
    with pytest.raises(InputError) as err:
        _add(store, family_name="Other", mrn=" A-1001 ")
    assert err.value.field == "mrn"
    assert "already registered" in err.value.message
    assert store.list_patients() == [first]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"mrn": ""}, "mrn", "required"),
        ({"mrn": "A 1"}, "mrn", "not a medical record number"),
        ({"family_name": "   "}, "family_name", "required"),
        ({"given_name": "x" * 101}, "given_name", "longer than 100"),
        ({"given_name": "Ann\x00"}, "given_name", "control characters"),
        ({"family_name": "1234"}, "family_name", "letters"),
        ({"date_of_birth": "03/02/1970"}, "date_of_birth", "YYYY-MM-DD"),
        ({"date_of_birth": "2030-01-01"}, "date_of_birth", "in the future"),
        ({"date_of_birth": "1850-01-01"}, "date_of_birth", "before 1900"),
    ],
)
def test_bad_values_name_their_field(
    store: Store, change: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(InputError) as err:
        _add(store, **change)
    assert err.value.field == field
    assert words in err.value.message
    assert store.list_patients() == []


def test_courses(store: Store, clock: FixedClock) -> None:
    patient = _add(store)
    pid = patient.id
    course = store.start_course(
        pid, protocol_id="aldesleukin", protocol_version="1", protocol_hash=PROTOCOL_HASH
    )
    assert course.status == "active"
    with pytest.raises(ConflictError, match="active course"):
        store.start_course(
            pid, protocol_id="aldesleukin", protocol_version="1", protocol_hash=PROTOCOL_HASH
        )
    done = store.set_course_status(course.id, "completed")
    assert done.status == "completed"
    clock.advance(days=60)
    second = store.start_course(
        pid, protocol_id="aldesleukin", protocol_version="1", protocol_hash=PROTOCOL_HASH
    )
    assert [c.id for c in store.list_courses(pid)] == [course.id, second.id]
    with pytest.raises(InputError):
        store.set_course_status(second.id, "paused")
    with pytest.raises(InputError, match="SHA-256"):
        store.start_course(pid, protocol_id="a", protocol_version="1", protocol_hash="x")
    with pytest.raises(NotFound):
        store.start_course(
            "nope", protocol_id="a", protocol_version="1", protocol_hash=PROTOCOL_HASH
        )
