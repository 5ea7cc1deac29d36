"""Two real `bedside serve` processes on one PostgreSQL database behave as one server: a session
made on one is used on the other (CSRF included), a dose is walked across both, two submissions
of the same step version give one success and one 409, and the audit chain and the archive
verify afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from databases import new_pg_database

from workflow.dev.demo import _SIGNERS, DEMO_PASSWORD, DEMO_PEOPLE
from workflow.dev.walk import order_values, values_for
from workflow.identity import Credentials, Identity
from workflow.records.pki import create_site_pki
from workflow.service import open_bedside
from workflow.store import open_store

pytestmark = pytest.mark.postgres

BEDSIDE = [sys.executable, "-m", "workflow.cli"]
RECORDS_WAIT_S = 60.0  # the records of a sign-off take well under a second; a loaded machine


@pytest.fixture
def database() -> Iterator[str]:
    """A PostgreSQL database of its own, created and dropped here."""
    with new_pg_database("bedside_two") as url:
        yield url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def servers(database: str, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    home = tmp_path / "home"  # the shared home: signing material and the archive folder
    create_site_pki(home / "pki", organisation="Two-server site")
    store = open_store(database)  # migrates once, before either server starts
    identity = Identity(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    for p in DEMO_PEOPLE:
        identity.add_user(p.username, p.name, [p.role], DEMO_PASSWORD, by="test")
    store.close()
    env = {**os.environ, "BEDSIDE_HOME": str(home), "BEDSIDE_DATABASE_URL": database}
    procs, urls = [], []
    for _ in range(2):
        port = _free_port()
        procs.append(
            subprocess.Popen(
                [*BEDSIDE, "serve", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url, proc in zip(urls, procs, strict=True):
            _wait_ready(url, proc)
        yield urls[0], urls[1], home
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"bedside serve exited ({proc.returncode}): {err}")
        try:
            httpx.get(url + "/login", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"bedside serve on {url} did not start")


def _login(base: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    r = client.post("/api/session", json={"username": username, "password": DEMO_PASSWORD})
    assert r.status_code == 200, r.text
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


def _carry(session: httpx.Client, base: str) -> httpx.Client:
    """The same browser session pointed at the other server: cookie and CSRF token only."""
    other = httpx.Client(base_url=base, timeout=30, cookies=session.cookies)
    other.headers["X-CSRF-Token"] = session.headers["X-CSRF-Token"]
    return other


def test_two_servers_one_database(servers: tuple[str, str, Path], database: str) -> None:
    a, b, home = servers
    bedside = open_bedside(home, database)  # the test's own view of the same database
    try:
        patient = bedside.store.add_patient(
            mrn="MRN-2S-01",
            family_name="Rivera",
            given_name="Jordan",
            date_of_birth="1971-03-14",
            created_by="test",
        )
        p = bedside.protocol
        course = bedside.store.start_course(
            patient.id, protocol_id=p.id, protocol_version=p.version, protocol_hash=p.content_hash
        )
        now = bedside.clock.now()
        view = bedside.open_case(
            course.id, now + timedelta(hours=2), Credentials("dr.okafor", DEMO_PASSWORD)
        )
        case_id = view.case.case_id
        bedside.sign_step(
            case_id,
            view.version,
            "order",
            order_values("68", now - timedelta(hours=3)),
            Credentials("dr.okafor", DEMO_PASSWORD),
        )

        # One session per person, made on server A, then used on server B as well.
        on_a = {who: _login(a, who) for who in set(_SIGNERS.values())}
        on_b = {who: _carry(client, b) for who, client in on_a.items()}
        assert on_b["n.alvarez"].get("/api/session").json()["username"] == "n.alvarez"

        conflicts = 0
        n = 0
        while True:
            view = bedside.load(case_id)
            step = view.case.next_step()
            if step is None:
                break
            who = _SIGNERS[step.id]
            body: dict[str, object] = {
                "expected_version": view.version,
                "values": values_for(view.case, step.id, bedside.clock.now()),
                "password": DEMO_PASSWORD,
            }
            if step.blinded_against:
                body["username"] = who
            path = f"/api/cases/{case_id}/steps/{step.id}"
            if step.id == "hold_checks":
                # Both servers get the same step at the same version at once: one wins.
                codes = _race(on_a[who], on_b[who], path, body)
                assert sorted(codes) == [200, 409], codes
                conflicts += 1
            else:
                server = on_a if n % 2 == 0 else on_b  # alternate servers step by step
                r = server[who].post(path, json=body)
                assert r.status_code == 200, (step.id, r.text)
            n += 1
        assert conflicts == 1
        final = on_b["n.alvarez"].get(f"/api/cases/{case_id}").json()
        assert final["state"] == "completed", final
        # The records are made just after the sign-off by the server that took it; the other
        # says "pending" meanwhile (not "failed"), then lists them.
        state = _records_state(on_a["n.alvarez"], case_id)
        assert state["state"] == "archived", state
        records = on_a["n.alvarez"].get(f"/api/cases/{case_id}/records").json()
        assert {r["kind"] for r in records} == {"compounding", "administration"}

        # Signing out on B ends the session on A too (one session table).
        assert on_b["n.chen"].post("/api/session/end").status_code == 204
        assert on_a["n.chen"].get("/api/session").status_code == 401
    finally:
        bedside.store.close()

    env = {**os.environ, "BEDSIDE_HOME": str(home), "BEDSIDE_DATABASE_URL": database}
    audit = subprocess.run(
        [*BEDSIDE, "audit", "verify"], env=env, capture_output=True, text=True, check=False
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    archive = subprocess.run(
        [*BEDSIDE, "archive", "verify"], env=env, capture_output=True, text=True, check=False
    )
    assert archive.returncode == 0, archive.stdout + archive.stderr


def _records_state(client: httpx.Client, case_id: str) -> dict[str, object]:
    """Where the case's records stand, once no longer pending (bounded, as a person waits)."""
    deadline = time.monotonic() + RECORDS_WAIT_S
    while True:
        state: dict[str, object] = client.get(f"/api/cases/{case_id}/records-state").json()
        if state["state"] != "pending" or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def _race(
    first: httpx.Client, second: httpx.Client, path: str, body: dict[str, object]
) -> list[int]:
    codes: list[int] = []
    barrier = threading.Barrier(2)

    def post(client: httpx.Client) -> None:
        barrier.wait()
        codes.append(client.post(path, json=body).status_code)

    threads = [threading.Thread(target=post, args=(c,)) for c in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes
