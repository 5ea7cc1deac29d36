"""Concurrency soak: 20+ client threads against one real `bedside serve` on loopback.

Each client walks cases of its own and, first of all, cases it shares with other clients (they
start those together, so two tablets really do submit the same step at the same version). What
the clients saw is then compared with the store: every HTTP 200 is stored exactly once, at its
seq, as its step, by its signer; nothing is stored that no client was told about; a 409 came
only where another client's step had landed on that version; no other status (no 5xx, no
refusal) was ever returned; the chains verify; `bedside audit verify` and `bedside archive
verify` pass. Bounded in requests per case and in wall-clock time; speed is reported, never
asserted.

In `make test` most cases are prepared in this process up to a drawn step (by separate people
with cheap password hashes, so the preparation costs no argon2 time) and the clients walk the
rest; under BEDSIDE_SOAK=1 every dose is walked whole through the API.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from workflow.identity import Credentials, Identity
from workflow.service import Bedside, open_bedside

from .conftest import Scale, report
from .harness import PASSWORD, PEOPLE, SIGNER, STEP_IDS, bedside, make_home
from .web_harness import (
    Ack,
    Server,
    Session,
    duplicate_step_errors,
    entries,
    sign_in,
    stored_step_errors,
    submission,
    tablet,
    tracebacks,
)

SHARERS = 3  # clients on each shared case
# In-process preparation only: these people never sign in to the server, so the server's
# rehash-on-login never touches their cheap hashes.
PREP_PEOPLE = {
    "order": "dr.prep",
    "order_verification": "p.prep",
    "eligibility": "p.prep",
    "hold_checks": "n.prep1",
    "reconstitution": "t.prep",
    "dilution": "t.prep",
    "pharmacy_verification": "p.prep",
    "double_check_first": "n.prep1",
    "double_check_second": "n.prep2",
    "pre_infusion": "n.prep1",
    "infusion_start": "n.prep1",
    "infusion_stop": "n.prep1",
    "observation": "n.prep1",
}
PREP_ROLES = {"dr.prep": "prescriber", "p.prep": "pharmacist", "t.prep": "pharmacy_technician",
              "n.prep1": "nurse", "n.prep2": "nurse"}  # fmt: skip
# Drawn starting points for the clients' walks in `make test`: 1 to 3 steps left per dose,
# so some clients sign the closing step (and archive) while others are mid-dose.
FIRST_API_STEP = (STEP_IDS.index("infusion_stop"), STEP_IDS.index("record_sign_off"))


@dataclass(frozen=True)
class Conflict:
    client: int
    case_id: str
    expected_version: int


@dataclass
class Seen:
    """What the clients were told, gathered across threads (list appends are atomic)."""

    acks: list[Ack] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    out_of_time: bool = False


def cheap_identity(app: Bedside) -> Identity:
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return Identity(app.store, policy=app.settings.security, hasher=cheap)


def prepare_case(prep: Bedside, serial: int, upto: int) -> tuple[str, int]:
    """A new patient, course and dose case, signed in this process up to (not including) step
    index ``upto``. Returns the case id and its version."""
    patient = prep.store.add_patient(
        mrn=f"SOAK-{serial:05d}", family_name="Soak", given_name=f"Client {serial}",
        date_of_birth="1968-05-17", created_by="soak",
    )  # fmt: skip
    p = prep.protocol
    course = prep.store.start_course(
        patient.id, protocol_id=p.id, protocol_version=p.version, protocol_hash=p.content_hash
    )
    view = prep.open_case(course.id, prep.clock.now(), Credentials("dr.prep", PASSWORD))
    for step in STEP_IDS[:upto]:
        proof = Credentials(PREP_PEOPLE[step], PASSWORD)
        values = entries(view.case, step)
        view = prep.sign_step(view.case.case_id, view.version, step, values, proof)
    return view.case.case_id, view.version


@dataclass(frozen=True)
class Plan:
    """Which client walks which cases, and where each case starts."""

    work: dict[int, list[str]]  # client -> its cases, shared ones first
    shared: dict[str, list[int]]  # shared case -> its clients
    start_version: dict[str, int]  # versions written in this process, not by any client


def plan_cases(prep: Bedside, scale: Scale, rng: random.Random) -> Plan:
    work: dict[int, list[str]] = {c: [] for c in range(scale.soak_clients)}
    shared: dict[str, list[int]] = {}
    start: dict[str, int] = {}
    serial = 0

    def new_case() -> str:
        nonlocal serial
        serial += 1
        upto = 0 if scale.soak_whole_doses else rng.randint(*FIRST_API_STEP)
        case_id, version = prepare_case(prep, serial, upto)
        start[case_id] = version
        return case_id

    for j in range(scale.soak_shared):
        case_id = new_case()
        clients = [(j * SHARERS + i) % scale.soak_clients for i in range(SHARERS)]
        shared[case_id] = clients
        for c in clients:
            work[c].append(case_id)
    for _ in range(scale.soak_cases):  # each to a least busy client: every thread has work
        least = min(work, key=lambda c: (len(work[c]), c))
        work[least].append(new_case())
    return Plan(work, shared, start)


class Client:
    """One tablet thread: its own connections, the people's shared sessions."""

    def __init__(self, n: int, base: str, sessions: dict[str, Session], app: Bedside,
                 seen: Seen, deadline: float) -> None:  # fmt: skip
        self.n = n
        self.tablets = {u: tablet(base, s) for u, s in sessions.items()}
        self.app = app
        self.seen = seen
        self.deadline = deadline

    def walk(self, case_id: str, start: threading.Barrier | None) -> None:
        if start is not None:
            # The sharers of a case begin it together: a real race for each of its steps.
            start.wait(max(1.0, self.deadline - time.monotonic()))
        for _ in range(len(STEP_IDS) * (SHARERS + 1)):  # bounded: 14 steps, a few lost races
            if time.monotonic() > self.deadline:
                self.seen.out_of_time = True
                return
            got = self.tablets["n.rel1"].get(f"/api/cases/{case_id}")
            if got.status_code != 200:
                self.seen.failures.append(f"GET {case_id}: {got.status_code} {got.text[:200]}")
                return
            data = got.json()
            if data["next_step"] is None:
                return
            sub = submission(self.app, case_id, data["next_step"]["id"], data["version"])
            r = self.tablets[sub.tablet_of].post(sub.path, json=sub.body)
            if r.status_code == 200 and r.json()["version"] == sub.expected_version + 1:
                seq = sub.expected_version + 1
                self.seen.acks.append(Ack(self.n, case_id, seq, sub.step, SIGNER[sub.step]))
            elif r.status_code == 409:
                self.seen.conflicts.append(Conflict(self.n, case_id, sub.expected_version))
            else:
                self.seen.failures.append(f"{sub.step}: {r.status_code} {r.text[:300]}")
                return
        self.seen.failures.append(f"case {case_id} unfinished after its request bound")

    def close(self) -> None:
        for c in self.tablets.values():
            c.close()


def run_clients(base: str, app: Bedside, plan: Plan, seen: Seen, budget_s: float) -> None:
    """Every client in its own thread; each walks its shared cases first, then its own."""
    sessions = {u: sign_in(base, u) for u in PEOPLE if u != "a.rel"}
    deadline = time.monotonic() + budget_s
    barriers = {c: threading.Barrier(len(cl)) for c, cl in plan.shared.items()}
    clients = [Client(n, base, sessions, app, seen, deadline) for n in plan.work]

    def run(client: Client) -> None:
        try:
            for case_id in plan.work[client.n]:
                client.walk(case_id, barriers.get(case_id))
        except Exception as exc:  # a thread's error must fail the soak, not vanish
            seen.failures.append(f"client {client.n}: {exc!r}")
            for b in barriers.values():
                b.abort()  # do not leave the other sharers waiting

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(budget_s + 120)
    for c in clients:
        c.close()
    assert not any(t.is_alive() for t in threads), "a client thread hung"


def compare_with_store(app: Bedside, plan: Plan, seen: Seen) -> list[str]:
    """Lost, duplicated, phantom or misplaced steps, and unexplained 409s."""
    user_ids = {u: app.identity.get_user(u).id for u in PEOPLE}
    problems = stored_step_errors(app, seen.acks, user_ids)
    problems += duplicate_step_errors(app, list(plan.start_version))
    acked = {(a.case_id, a.seq): a for a in seen.acks}
    for case_id, start in plan.start_version.items():
        version = app.store.get_case(case_id).version
        told = sorted(seq for (c, seq) in acked if c == case_id)
        if told != list(range(start + 1, version + 1)):
            problems.append(f"case {case_id} stores {start + 1}..{version}, clients saw {told}")
    for conflict in seen.conflicts:
        winner = acked.get((conflict.case_id, conflict.expected_version + 1))
        if winner is None or winner.client == conflict.client:
            problems.append(f"409 with no other client's step at that version: {conflict}")
    return problems


def run_soak(name: str, home: Path, db: str | None, scale: Scale) -> None:
    started = time.monotonic()
    rng = random.Random(scale.seed)
    make_home(home, db)
    prep = open_bedside(home, db, archive=False)
    log = home.parent / "serve.log"
    seen = Seen()
    try:
        prep.identity = cheap_identity(prep)
        for username, role in PREP_ROLES.items():
            prep.identity.add_user(username, f"Prep {username}", [role], PASSWORD, by="soak")
        plan = plan_cases(prep, scale, rng)
        server = Server(home, db, log)
        walk_started = time.monotonic()
        try:
            run_clients(server.base, prep, plan, seen, scale.budget_s)
        finally:
            walk_s = time.monotonic() - walk_started
            server.stop()
        assert not seen.failures, seen.failures[:10]
        assert tracebacks(log) == 0, log.read_text()[-4000:]
        problems = compare_with_store(prep, plan, seen)
        assert not problems, problems[:10]
        report_chain = prep.store.verify_chains()
        assert report_chain.ok, report_chain.first_problem
        states = [prep.store.get_case(c).state for c in plan.start_version]
        if not seen.out_of_time:
            assert set(states) == {"completed"}, states
        records = sum(len(prep.store.search_archive(case_id=c)) for c in plan.start_version)
    finally:
        prep.store.close()
    audit = bedside(home, db, "audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    arch = bedside(home, db, "archive", "verify")
    assert arch.returncode == 0, arch.stdout + arch.stderr
    if plan.shared:
        assert seen.conflicts, "the shared cases raced and no 409 came back"
    note = ", stopped at the time budget" if seen.out_of_time else ""
    report(
        f"FIGURES {name}: seed {scale.seed}, {len(plan.work)} concurrent clients, "
        f"{len(plan.start_version)} cases ({len(plan.shared)} shared by {SHARERS} clients "
        f"each), {len(seen.acks) + len(seen.conflicts)} step POSTs: {len(seen.acks)} "
        f"acknowledged (HTTP 200), all stored exactly once at their seq, 0 lost, "
        f"0 duplicated, 0 unacknowledged writes; "
        f"{len(seen.conflicts)} 409s, each where another client's step had landed; 0 5xx, "
        f"0 other refusals; {states.count('completed')} doses completed, {records} records "
        f"archived; chains, audit verify and archive verify pass; "
        f"{len(seen.acks) / walk_s:.1f} acknowledged steps/s over {walk_s:.0f} s of walking, "
        f"{time.monotonic() - started:.0f} s in all"
        f"{note}"
    )


def test_soak_sqlite(tmp_path: Path, scale: Scale) -> None:
    run_soak("web soak (SQLite)", tmp_path / "home", None, scale)


@pytest.mark.postgres
def test_soak_postgresql(rel_database: str, tmp_path: Path, scale: Scale) -> None:
    if not scale.soak_postgres:
        pytest.skip("the PostgreSQL soak runs under BEDSIDE_SOAK=1 (make soak)")
    run_soak("web soak (PostgreSQL)", tmp_path / "home", rel_database, scale)
