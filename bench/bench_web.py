"""Web bench: step-submission latency under 20 concurrent clients against `bedside serve`.

Starts `bedside serve` as a real subprocess on a free loopback port, on SQLite and then on a
fresh PostgreSQL database (created and dropped here; skipped when PostgreSQL is unreachable).
Each client walks its own cases from the pre-dose checks to the record sign-off through the JSON
API (every step a signature: password checked with argon2id each time, as Part 11 needs).
Prints median and 95th-percentile latency of a step POST and the server's resident memory
after the run (at least 1,000 steps). Loopback only; bounded in steps and time.

Two loads: *saturated*, each client posting its next step as soon as the last one answered
(the server's capacity; latency is then mostly queueing behind two cores), and *paced*, each
client pausing THINK_S (with seeded jitter) between steps, as a nurse reading the next screen
does: what a person at a tablet waits for on a busy ward.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from workflow.dev.demo import _SIGNERS, DEMO_PASSWORD, ensure_demo_people
from workflow.dev.walk import order_values, values_for
from workflow.identity import Credentials
from workflow.records.pki import create_site_pki
from workflow.service import Bedside, open_bedside

CLIENTS = 20
CASES_PER_CLIENT = 5  # 11 signed steps each from hold_checks: 1,100 steps in all
TIME_LIMIT_S = 600
RECORDS_WAIT_S = 120  # for the records made after the last sign-off's answer
THINK_S = 2.0  # paced load: 20 tablets at one step every ~2 s each is a very busy ward
PG_URL = os.environ.get("BEDSIDE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SIGNER = _SIGNERS  # who signs each step in the demo walk


def _archived(home: Path) -> int:
    return len(list((home / "archive").rglob("*.pdf")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(bedside: Bedside, n_cases: int) -> list[str]:
    """Patients, courses and cases walked to the pre-dose checks (not timed)."""
    ensure_demo_people(bedside)
    p = bedside.protocol
    dr, pharm = Credentials("dr.okafor", DEMO_PASSWORD), Credentials("p.lindqvist", DEMO_PASSWORD)
    out = []
    for i in range(n_cases):
        patient = bedside.store.add_patient(
            mrn=f"BENCH-{i:05d}-{uuid.uuid4().hex[:6]}",
            family_name="Bench",
            given_name=f"Patient {i}",
            date_of_birth="1970-01-01",
            created_by="bench",
        )
        course = bedside.store.start_course(
            patient.id, protocol_id=p.id, protocol_version=p.version, protocol_hash=p.content_hash
        )
        now = datetime.now(UTC)
        view = bedside.open_case(course.id, now + timedelta(hours=1), dr)
        cid = view.case.case_id
        view = bedside.sign_step(
            cid, view.version, "order", order_values("68", now - timedelta(hours=2)), dr
        )
        while view.case.next_step() is not None and view.case.next_step().id != "hold_checks":
            step = view.case.next_step().id
            values = values_for(view.case, step, datetime.now(UTC) - timedelta(minutes=1))
            view = bedside.sign_step(cid, view.version, step, values, pharm)
        out.append(cid)
    return out


def login(base: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    r = client.post("/api/session", json={"username": username, "password": DEMO_PASSWORD})
    r.raise_for_status()
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


def run_client(
    base: str,
    bedside: Bedside,
    cases: list[str],
    latencies: list[tuple[str, float]],
    errors: list[str],
    think_s: float,
    seed: int,
    phases: list[tuple[str, str]],
) -> None:
    clients = {u: login(base, u) for u in ("n.alvarez", "t.mensah", "p.lindqvist")}
    pause = random.Random(seed)
    deadline = time.monotonic() + TIME_LIMIT_S
    for cid in cases:
        while time.monotonic() < deadline:
            view = bedside.load(cid)
            step = view.case.next_step()
            if step is None:
                break
            who = SIGNER[step.id]
            values = values_for(view.case, step.id, datetime.now(UTC) - timedelta(seconds=30))
            body: dict[str, Any] = {
                "expected_version": view.version,
                "values": values,
                "password": DEMO_PASSWORD,
            }
            client = clients.get(who, clients["n.alvarez"])
            if who not in clients:
                body["username"] = who  # the second checker signs at the same tablet
            t0 = time.perf_counter()
            r = client.post(f"/api/cases/{cid}/steps/{step.id}", json=body)
            latencies.append((step.id, time.perf_counter() - t0))
            phases.append((step.id, r.headers.get("Server-Timing", "")))
            if r.status_code != 200:
                errors.append(f"{step.id}: {r.status_code} {r.text[:200]}")
                break
            if think_s:
                time.sleep(think_s * pause.uniform(0.5, 1.5))


def _p95(sorted_ms: list[float]) -> float:
    return sorted_ms[int(0.95 * (len(sorted_ms) - 1))] if sorted_ms else float("nan")


def _phase_summary(headers: list[str]) -> str:
    by_phase: dict[str, list[float]] = {}
    for header in headers:
        for part in header.split(","):
            name, _, dur = part.strip().partition(";dur=")
            if dur:
                by_phase.setdefault(name, []).append(float(dur))
    return ", ".join(
        f"{name} {statistics.median(v):.1f} / {_p95(sorted(v)):.1f}" for name, v in by_phase.items()
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children_rss_kib(pid: int) -> int:
    """Resident memory of the server's child processes (the record signing worker and
    multiprocessing's resource tracker)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += rss_kib(int(child))
    return total


def bench(label: str, db_url: str | None, think_s: float) -> None:
    home = Path(tempfile.mkdtemp(prefix="bedside-web-bench-"))
    # Signing material, as `bedside init` makes it: without it the server has no archiver and
    # the sign-off would close the case without rendering or signing any record.
    create_site_pki(home / "pki", organisation="Bench site")
    bedside = open_bedside(home, db_url, archive=False)
    t0 = time.perf_counter()
    cases = prepare(bedside, CLIENTS * CASES_PER_CLIENT)
    setup_s = time.perf_counter() - t0
    port = free_port()
    cmd = [sys.executable, "-m", "workflow.cli", "--home", str(home)]
    if db_url:
        cmd += ["--db", db_url]
    server = subprocess.Popen([*cmd, "serve", "--port", str(port)], stdout=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            if server.poll() is not None:
                raise SystemExit(f"bedside serve exited with {server.returncode}")
            try:
                httpx.get(base + "/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        latencies: list[tuple[str, float]] = []
        errors: list[str] = []
        phases: list[tuple[str, str]] = []
        threads = [
            threading.Thread(
                target=run_client,
                args=(base, bedside, cases[i::CLIENTS], latencies, errors, think_s, i, phases),
            )
            for i in range(CLIENTS)
        ]
        t1 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t1
        rss = rss_kib(server.pid)
        workers_rss = children_rss_kib(server.pid)
        ms = sorted(x * 1000 for _, x in latencies)
        p95 = _p95(ms)
        load = f"paced, ~{think_s:g} s between steps" if think_s else "saturated"
        print(
            f"web {label} ({load}): {len(ms)} step POSTs by {CLIENTS} clients in {wall:.1f} s "
            f"(setup {setup_s:.0f} s): median {statistics.median(ms):.1f} ms, "
            f"p95 {p95:.1f} ms, max {ms[-1]:.1f} ms; server RSS {rss / 1024:.0f} MiB "
            f"(+ {workers_rss / 1024:.0f} MiB in its signing worker); "
            f"errors {len(errors)}"
        )
        # Which steps make the tail: the blinded second checker signs with id and password (a
        # full argon2id check the first time at a tablet, then their own verifier there while
        # continuous) and the sign-off ends the case (its two PDF records are made just after
        # its answer, by the server's records writer); every other step is a password-alone
        # signature in a session.
        heavy = {"double_check_second", "record_sign_off"}
        for name, group in (
            ("in-session steps", [x for s, x in latencies if s not in heavy]),
            (
                "second checker (id + password)",
                [x for s, x in latencies if s == "double_check_second"],
            ),
            ("record sign-off", [x for s, x in latencies if s == "record_sign_off"]),
        ):
            part = sorted(x * 1000 for x in group)
            if part:
                print(
                    f"  {name}: {len(part)} POSTs, median {statistics.median(part):.1f} ms, "
                    f"p95 {_p95(part):.1f} ms"
                )
        # Where the time went, by the server's own account (Server-Timing, workflow/timing.py):
        # the client's latency minus the server's total is connection and queueing time.
        for name, wanted in (
            ("in-session steps", lambda s: s not in heavy),
            ("second checker", lambda s: s == "double_check_second"),
            ("record sign-off", lambda s: s == "record_sign_off"),
        ):
            print(
                f"  {name}, server phases median / p95 ms: "
                + _phase_summary([h for s, h in phases if wanted(s)])
            )
        # The sign-off answers before its records are made (the server's records writer makes
        # them just after): how long after the last answer the last ones were archived.
        t2 = time.perf_counter()
        while _archived(home) < 2 * len(cases) and time.perf_counter() - t2 < RECORDS_WAIT_S:
            time.sleep(0.05)
        signed = _archived(home)
        print(
            f"  signed records archived: {signed} ({len(cases)} cases x 2 records), the last "
            f"{time.perf_counter() - t2:.1f} s after the last step's answer"
        )
        for e in errors[:5]:
            print("  error:", e)
    finally:
        server.terminate()
        server.wait(timeout=10)
        bedside.store.close()
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--paced-only", action="store_true", help="skip the saturated load")
    parser.add_argument("--postgres-only", action="store_true", help="skip SQLite")
    args = parser.parse_args()
    loads = (THINK_S,) if args.paced_only else (0.0, THINK_S)
    for think_s in () if args.postgres_only else loads:
        bench("SQLite", None, think_s)
    try:
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        print(f"web PostgreSQL: skipped ({exc.__class__.__name__})")
        return 0
    try:
        for think_s in loads:  # each load on a fresh database of its own
            name = f"bedside_webbench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                bench(
                    "PostgreSQL",
                    make_url(PG_URL).set(database=name).render_as_string(False),
                    think_s,
                )
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
