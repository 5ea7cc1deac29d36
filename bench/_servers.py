"""Step throughput of `bedside serve` processes on one PostgreSQL database: one server against
two, with the same number of concurrent clients walking whole doses through the JSON API (real
argon2id password checks on every signature, records signed and archived at each dose's end).
Used by bench_scale.py; not a bench_*.py of its own because it needs that file's database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx

from workflow.dev.demo import _SIGNERS, DEMO_PASSWORD, DEMO_PEOPLE
from workflow.dev.walk import order_values, values_for
from workflow.identity import Credentials, Identity
from workflow.records.pki import create_site_pki
from workflow.service import open_bedside
from workflow.store import open_store

CLIENTS = 6
DOSES_PER_CLIENT = 2


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(database: str, home: Path, servers: int) -> tuple[int, float]:
    env = {**os.environ, "BEDSIDE_HOME": str(home), "BEDSIDE_DATABASE_URL": database}
    ports = [_port() for _ in range(servers)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "workflow.cli", "serve", "--port", str(p)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for p in ports
    ]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for base in bases:
            for _ in range(150):
                try:
                    httpx.get(base + "/login", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
        bedside = open_bedside(home, database)
        cases = []
        for i in range(CLIENTS * DOSES_PER_CLIENT):
            patient = bedside.store.add_patient(
                mrn=f"TP{servers}-{i:04d}",
                family_name="Bench",
                given_name="Pat",
                date_of_birth="1970-01-01",
                created_by="bench",
            )
            p = bedside.protocol
            course = bedside.store.start_course(
                patient.id,
                protocol_id=p.id,
                protocol_version=p.version,
                protocol_hash=p.content_hash,
            )
            now = bedside.clock.now()
            proof = Credentials("dr.okafor", DEMO_PASSWORD)
            view = bedside.open_case(course.id, now + timedelta(hours=2), proof)
            bedside.sign_step(
                view.case.case_id,
                view.version,
                "order",
                order_values("68", now - timedelta(hours=3)),
                proof,
            )
            cases.append(view.case.case_id)
        steps = [0]
        lock = threading.Lock()

        def walker(index: int) -> None:
            base = bases[index % servers]
            sessions: dict[str, httpx.Client] = {}
            for case_id in cases[index::CLIENTS]:
                while True:
                    view = bedside.load(case_id)
                    step = view.case.next_step()
                    if step is None:
                        break
                    who = _SIGNERS[step.id]
                    if who not in sessions:
                        c = httpx.Client(base_url=base, timeout=60)
                        r = c.post(
                            "/api/session", json={"username": who, "password": DEMO_PASSWORD}
                        )
                        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
                        sessions[who] = c
                    body: dict[str, object] = {
                        "expected_version": view.version,
                        "values": values_for(view.case, step.id, bedside.clock.now()),
                        "password": DEMO_PASSWORD,
                    }
                    if step.blinded_against:
                        body["username"] = who
                    r = sessions[who].post(f"/api/cases/{case_id}/steps/{step.id}", json=body)
                    if r.status_code != 200:
                        raise RuntimeError(r.text)
                    with lock:
                        steps[0] += 1

        threads = [threading.Thread(target=walker, args=(i,)) for i in range(CLIENTS)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        bedside.store.close()
        return steps[0], elapsed
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def throughput(database: str | None) -> None:
    if database is None:
        print("server throughput: PostgreSQL unreachable, skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        create_site_pki(home / "pki", organisation="Bench site")
        store = open_store(database)
        identity = Identity(store)  # default argon2id: the real cost of every signature
        for p in DEMO_PEOPLE:
            identity.add_user(p.username, p.name, [p.role], DEMO_PASSWORD, by="bench")
        store.close()
        print(f"server throughput ({CLIENTS} clients, {CLIENTS * DOSES_PER_CLIENT} whole doses)")
        first = None
        for servers in (1, 2):
            steps, elapsed = _run(database, home, servers)
            rate = steps / elapsed
            first = first or rate
            print(
                f"  {servers} server(s): {steps} steps in {elapsed:.1f} s = {rate:.1f} steps/s "
                f"(x{rate / first:.2f})",
                flush=True,
            )
