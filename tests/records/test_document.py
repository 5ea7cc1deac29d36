from __future__ import annotations

import dataclasses
import json
from decimal import Decimal

import pytest
import record_samples

from workflow.core.errors import InputError
from workflow.records.document import RecordDocument, Row, Section, SignatureManifestation


def test_hash_is_stable_and_covers_shown_content() -> None:
    a, b = record_samples.compounding(), record_samples.compounding()
    assert a.record_hash() == b.record_hash()
    assert len(a.record_hash()) == 64
    changed = [
        dataclasses.replace(a, title=a.title + "!"),
        dataclasses.replace(a, subject=(("Patient", "Someone Else"), *a.subject[1:])),
        dataclasses.replace(a, chain_hash="0" * 64),
        dataclasses.replace(a, sections=a.sections[:-1]),
        dataclasses.replace(a, signatures=a.signatures[:1]),
        dataclasses.replace(a, events=[*a.events, {"seq": 99}]),
    ]
    assert len({a.record_hash(), *(c.record_hash() for c in changed)}) == len(changed) + 1


def test_round_trip_through_json() -> None:
    doc = record_samples.hostile_long()
    again = RecordDocument.from_json(json.loads(json.dumps(doc.to_json())))
    assert again == doc
    assert again.record_hash() == doc.record_hash()


def test_events_are_deep_read_only_copies() -> None:
    source = [{"seq": 1, "data": {"v": "1"}}]
    doc = dataclasses.replace(record_samples.compounding(), events=source)
    before = doc.record_hash()
    source[0]["data"]["v"] = "2"
    assert doc.events[0]["data"]["v"] == "1"
    with pytest.raises(TypeError):
        doc.events[0]["seq"] = 5  # type: ignore[index]
    assert doc.record_hash() == before
    assert json.loads(doc.events_json) == [{"seq": 1, "data": {"v": "1"}}]


def test_decimals_are_canonical_floats_refused() -> None:
    base = record_samples.compounding()
    doc = dataclasses.replace(base, events=[{"dose": Decimal("2.5670")}])
    assert doc.events[0]["dose"] == "2.567"
    with pytest.raises(InputError, match="events"):
        dataclasses.replace(base, events=[{"dose": 2.567}])
    with pytest.raises(InputError, match="events"):
        dataclasses.replace(base, events=[{"blob": b"bytes"}])


def test_bad_inputs_refused() -> None:
    base = record_samples.compounding()
    with pytest.raises(InputError, match="kind"):
        dataclasses.replace(base, kind="billing")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="meaning"):
        SignatureManifestation("A", "nurse", "2025-01-01 00:00 UTC", "liked", "0" * 64)
    with pytest.raises(InputError, match="once"):
        dataclasses.replace(base, sections=(Section("a", "A"), Section("a", "B")))
    with pytest.raises(InputError, match="text"):
        Row("label", 5)  # type: ignore[arg-type]
