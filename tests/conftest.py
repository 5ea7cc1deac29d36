"""Shared fixtures: the databases (SQLite file, real PostgreSQL), the shipped protocol, an
injected clock, a store with its people, and a whole installation (store + people + protocol +
archive)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from databases import new_pg_database
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from workflow.archive import Archive
from workflow.core.clock import FixedClock
from workflow.core.protocol import Protocol, load_protocol
from workflow.dev.demo import DEMO_PASSWORD, DEMO_PEOPLE
from workflow.identity import Identity
from workflow.records.pki import create_site_pki
from workflow.resources import default_protocol_path
from workflow.service import Bedside
from workflow.store import Store, open_store

START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """URL of a PostgreSQL database created for this test session (one schema per test in it:
    see ``db_url``)."""
    with new_pg_database("bedside_test") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'home' / 'bedside.sqlite3'}"
        return
    base: str = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def protocol() -> Protocol:
    return load_protocol(default_protocol_path())


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


def cheap_hasher() -> PasswordHasher:
    """Real argon2id with cheap parameters: the suite stays fast, the code path is the real one."""
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def store(db_url: str, clock: FixedClock) -> Iterator[Store]:
    with open_store(db_url, clock=clock) as opened:
        yield opened


@pytest.fixture
def identity(store: Store) -> Identity:
    return Identity(store, hasher=cheap_hasher())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home folder with the site's signing PKI."""
    path = tmp_path / "home"
    path.mkdir()
    create_site_pki(path / "pki", organisation="Test site")
    return path


@pytest.fixture
def app(db_url: str, home: Path, protocol: Protocol) -> Iterator[Bedside]:
    """A whole installation: store, the demo people (and a second pharmacist), the shipped
    protocol and the archive, on SQLite and on PostgreSQL."""
    clock = FixedClock(START)
    store = open_store(db_url, clock=clock)
    identity = Identity(store, hasher=cheap_hasher())
    bedside = Bedside(store, protocol, clock=clock, identity=identity)
    bedside.archiver = Archive(home, store).archive_case
    for p in DEMO_PEOPLE:
        identity.add_user(p.username, p.name, [p.role], DEMO_PASSWORD, by="test")
    identity.add_user("p.osei", "Kofi Osei, PharmD", ["pharmacist"], DEMO_PASSWORD, by="test")
    try:
        yield bedside
    finally:
        store.close()
