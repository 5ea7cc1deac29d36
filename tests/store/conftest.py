"""Store fixtures: every store test runs on a SQLite file and on a real PostgreSQL.

PostgreSQL: one fresh database per test session (``bedside_test_<random>``, dropped at the end)
on ``BEDSIDE_TEST_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/test), and one
schema per test inside it so tests never see each other's logs. When the server is unreachable
those runs are skipped, unless ``BEDSIDE_REQUIRE_POSTGRES=1`` (CI), which makes them fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from argon2 import PasswordHasher

from workflow.core.clock import FixedClock
from workflow.identity import Identity
from workflow.store import Store, open_store

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def store(db_url: str, clock: FixedClock) -> Iterator[Store]:
    with open_store(db_url, clock=clock) as opened:
        yield opened


@pytest.fixture
def identity(store: Store) -> Identity:
    # Real argon2id, with cheap parameters so the suite stays fast.
    return Identity(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
