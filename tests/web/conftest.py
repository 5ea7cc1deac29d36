"""A web app on a real store (SQLite, and PostgreSQL via ``db_url``), demo people, a patient
with an active course, and helpers to walk a case to any step through the service."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from workflow.archive import Archive
from workflow.core.clock import FixedClock
from workflow.core.protocol import Protocol
from workflow.dev.demo import _SIGNERS, DEMO_PASSWORD, DEMO_PEOPLE
from workflow.dev.walk import order_values, values_for
from workflow.identity import Credentials, Identity
from workflow.records.pki import create_site_pki
from workflow.service import Bedside, CaseView
from workflow.store import open_store
from workflow.web import WebSettings, create_app

START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
PASSWORD = DEMO_PASSWORD
EVIL_NAME = "<script>alert(1)</script>"
# How long a test waits for the records writer: a case's records take well under a second; this
# bounds a loaded test machine.
RECORDS_WAIT_S = 120.0


class Site:
    """The installation under test and shortcuts to drive it."""

    def __init__(self, bedside: Bedside, clock: FixedClock, archive: Archive) -> None:
        self.bedside = bedside
        self.clock = clock
        self.archive = archive
        self.app = create_app(bedside, WebSettings(), archive=archive)
        self.course_id = self.new_course("MRN-7001", "Rivera", EVIL_NAME, "1971-03-14")

    def new_course(self, mrn: str, family_name: str, given_name: str, born: str) -> str:
        """A new patient on a course of the site's protocol; returns the course id."""
        b = self.bedside
        patient = b.store.add_patient(
            mrn=mrn,
            family_name=family_name,
            given_name=given_name,
            date_of_birth=born,
            created_by="test",
        )
        p = b.protocol
        return b.store.start_course(
            patient.id, protocol_id=p.id, protocol_version=p.version, protocol_hash=p.content_hash
        ).id

    def open_case(self) -> CaseView:
        b = self.bedside
        view = b.open_case(self.course_id, self.clock.now() + timedelta(hours=2), cred("dr.okafor"))
        self.clock.advance(minutes=5)
        weighed = self.clock.now() - timedelta(hours=3)
        return b.sign_step(
            view.case.case_id,
            view.version,
            "order",
            order_values("68", weighed),
            cred("dr.okafor"),
        )

    def walk_to(self, step_id: str, view: CaseView | None = None) -> CaseView:
        """Sign every step before ``step_id`` with correct entries."""
        view = view or self.open_case()
        while True:
            step = view.case.next_step()
            assert step is not None, view.case.state
            if step.id == step_id:
                return view
            self.clock.advance(minutes=20 if step.id == "hold_checks" else 5)
            values = values_for(view.case, step.id, self.clock.now())
            view = self.bedside.sign_step(
                view.case.case_id, view.version, step.id, values, cred(_SIGNERS[step.id])
            )

    def records_made(self) -> None:
        """Wait (bounded) until the records writer, when this site runs one as `bedside serve`
        does, has made the records of every case that ended so far: a test that reads records
        right after a sign-off waits here, never by sleeping. Inline (no writer): made already."""
        writer = self.bedside.records_later
        if writer is not None:
            assert writer.drain(RECORDS_WAIT_S), f"records still being made: {writer.queued()}"

    def client(self, username: str | None = None) -> TestClient:
        client = TestClient(self.app)
        if username:
            login(client, username)
        return client


def cred(username: str) -> Credentials:
    return Credentials(username, PASSWORD)


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in through the JSON API; returns the CSRF token for later POSTs."""
    r = client.post("/api/session", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    token = str(r.json()["csrf_token"])
    client.headers["X-CSRF-Token"] = token
    return token


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def version_of(html: str) -> str:
    m = re.search(r'name="expected_version" value="(\d+)"', html)
    assert m, "no expected_version on the page"
    return m.group(1)


def form_of(values: dict[str, Any]) -> dict[str, str]:
    """Service values as a browser would post them."""
    out: dict[str, str] = {}
    for k, v in values.items():
        if v is True:
            out[f"v_{k}"] = "on"
        elif v is False:
            out[f"v_{k}"] = "no"
        else:
            out[f"v_{k}"] = str(v)
    return out


def make_site(db_url: str, home: Path, protocol: Protocol) -> tuple[Site, Any]:
    clock = FixedClock(START)
    store = open_store(db_url, clock=clock)
    identity = Identity(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    bedside = Bedside(store, protocol, clock=clock, identity=identity)
    archive = Archive(home, store)
    bedside.archiver = archive.archive_case
    bedside.photos = archive.photos
    for p in DEMO_PEOPLE:
        identity.add_user(p.username, p.name, [p.role], PASSWORD, by="test")
    identity.add_user("root", "Site Admin", ["admin"], PASSWORD, by="test")
    return Site(bedside, clock, archive), store


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(exist_ok=True)
    create_site_pki(path / "pki", organisation="Test site")
    return path


@pytest.fixture
def site(db_url: str, home: Path, protocol: Protocol) -> Iterator[Site]:
    s, store = make_site(db_url, home, protocol)
    try:
        yield s
    finally:
        store.close()


@pytest.fixture
def sqlite_site(tmp_path: Path, home: Path, protocol: Protocol) -> Iterator[Site]:
    s, store = make_site(f"sqlite:///{tmp_path / 'web.sqlite3'}", home, protocol)
    try:
        yield s
    finally:
        store.close()
