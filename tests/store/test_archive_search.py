"""Issue 13.10: archive search treats '%' and '_' as the characters typed, on both databases
(short needles take the LIKE path on SQLite, longer ones the trigram table; PostgreSQL uses
ILIKE for both)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from workflow.store import Store
from workflow.store.models import ArchivedRecord

from .conftest import T0

NAMES = ["SMITH, Ann", "SMITH, Anna", "O_NEIL, Jo", "100% PURE, Max", "A/B, Slash"]


def _add(store: Store) -> None:
    for i, name in enumerate(NAMES):
        at = T0 + timedelta(minutes=i)
        store.add_archived_record(
            ArchivedRecord(
                sha256=f"{i:x}" * 64,
                case_id=f"case-{i}",
                kind="administration",
                patient_name=name,
                mrn=f"MRN-{i}",
                dose_label="cycle 1 dose 1",
                cycle=1,
                signed_at=at,
                lots="L1",
                signers="Someone (u1)",
                state="completed",
                path=f"archive/{i}.pdf",
                created_at=at,
                events_sha256=f"{i:x}" * 64,
            )
        )


def _names(store: Store, text: str) -> set[str]:
    return {r.patient_name for r in store.search_archive(text=text)}


@pytest.mark.parametrize(
    ("typed", "found"),
    [
        ("%", {"100% PURE, Max"}),
        ("_", {"O_NEIL, Jo"}),
        ("0%", {"100% PURE, Max"}),
        ("100%", {"100% PURE, Max"}),
        ("o_n", {"O_NEIL, Jo"}),
        ("o_neil", {"O_NEIL, Jo"}),
        ("ann%", set()),
        ("s_ith", set()),
        ("a_", set()),
        ("/", {"A/B, Slash"}),
        ("a/b", {"A/B, Slash"}),
        ("smith, ann", {"SMITH, Ann", "SMITH, Anna"}),
    ],
)
def test_wildcards_are_text(store: Store, typed: str, found: set[str]) -> None:
    _add(store)
    assert _names(store, typed) == found


def test_blank_search_is_no_filter(store: Store) -> None:
    _add(store)
    assert _names(store, "  ") == set(NAMES)
