"""An installation (store + people + protocol + archive) on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from workflow.archive import Archive
from workflow.core.clock import FixedClock
from workflow.core.protocol import Protocol
from workflow.dev.demo import DEMO_PASSWORD, DEMO_PEOPLE
from workflow.identity import Identity
from workflow.records.pki import create_site_pki
from workflow.service import Bedside
from workflow.store import open_store

START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    create_site_pki(path / "pki", organisation="Test site")
    return path


@pytest.fixture
def app(db_url: str, home: Path, protocol: Protocol) -> Iterator[Bedside]:
    clock = FixedClock(START)
    store = open_store(db_url, clock=clock)
    # Real argon2id with cheap parameters: the suite stays fast, the code path is the real one.
    identity = Identity(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    bedside = Bedside(store, protocol, clock=clock, identity=identity)
    bedside.archiver = Archive(home, store).archive_case
    for p in DEMO_PEOPLE:
        identity.add_user(p.username, p.name, [p.role], DEMO_PASSWORD, by="test")
    identity.add_user("p.osei", "Kofi Osei, PharmD", ["pharmacist"], DEMO_PASSWORD, by="test")
    try:
        yield bedside
    finally:
        store.close()
