"""The crash campaign's moving parts: a real Bedside home, real `bedside` processes, SIGKILL.

A campaign drives scripted doses through `bedside run` (and `bedside demo`) in child processes
and kills each with SIGKILL at a point drawn from a seeded random generator: after the k-th
acknowledged step plus a few milliseconds, or (for the demo, which prints only at the end) after
a drawn delay. The seed fixes the schedule; what the child was doing at that instant depends on
the machine, which is the point: the invariants must hold wherever the kill lands.

After every kill the harness checks, in this process, on a freshly opened store:

* every step the child acknowledged (printed after its commit returned) is stored at its seq;
* every hash chain verifies (per case and over the whole log);
* every case replays into the case machine (and the next run continues it);
* every file in the archive is complete: it hashes to its name and its signature verifies; every
  index entry points at such a file.

At the end a run that is not killed finishes every open case, and `bedside audit verify` and
`bedside archive verify` (which also reports ended cases without records) must pass.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from homes import floor_cost_home

from workflow.archive import Archive
from workflow.core.events import format_time
from workflow.dev.walk import order_values
from workflow.records.pki import load_trust_roots
from workflow.records.verify import Verifier
from workflow.service import Bedside, open_bedside

PASSWORD = "reliability-pass-2026"  # test accounts only
PEOPLE = {
    "dr.rel": ("Dr. Rel Iable", "prescriber"),
    "p.rel": ("Pat Rel, PharmD", "pharmacist"),
    "t.rel": ("Tech Rel, CPhT", "pharmacy_technician"),
    "n.rel1": ("Nurse One, RN", "nurse"),
    "n.rel2": ("Nurse Two, RN", "nurse"),
    "a.rel": ("Audrey Auditor", "auditor"),
}
# The happy path of the shipped protocol and who signs each step (verifiers differ from
# preparers; two nurses for the blinded double check).
STEPS: tuple[tuple[str, str], ...] = (
    ("order", "dr.rel"),
    ("order_verification", "p.rel"),
    ("eligibility", "p.rel"),
    ("hold_checks", "n.rel1"),
    ("reconstitution", "t.rel"),
    ("dilution", "t.rel"),
    ("pharmacy_verification", "p.rel"),
    ("double_check_first", "n.rel1"),
    ("double_check_second", "n.rel2"),
    ("pre_infusion", "n.rel1"),
    ("infusion_start", "n.rel1"),
    ("infusion_stop", "n.rel1"),
    ("observation", "n.rel1"),
    ("record_sign_off", "n.rel1"),
)
STEP_IDS = tuple(s for s, _ in STEPS)
SIGNER = dict(STEPS)
ACK = re.compile(r"^\s*\d+\.\s+(\w+)\s+(\S+)\s+-> (\S+) \(version (\d+)\)\s*$")
# Bounds on every wait: a child that hangs is a finding, not a stuck suite.
CHILD_TIMEOUT_S = 120.0


def bedside_argv(home: Path, db: str | None, *args: str) -> list[str]:
    argv = [sys.executable, "-m", "workflow.cli", "--home", str(home)]
    if db:
        argv += ["--db", db]
    return [*argv, *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("BEDSIDE_HOME", None)
    env.pop("BEDSIDE_DATABASE_URL", None)
    env["PYTHONUNBUFFERED"] = "1"  # an acknowledgement is printed the moment it is true
    return env


def bedside(
    home: Path, db: str | None, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        bedside_argv(home, db, *args),
        input=stdin,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )


def make_home(home: Path, db: str | None) -> None:
    """A home made the way an admin makes one: `bedside init`, then the campaign's people."""
    floor_cost_home(home)
    done = bedside(home, db, "init", "--admin", "admin.rel", "--name", "Admin Rel",
                   "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    app = open_bedside(home, db)
    try:
        for username, (name, role) in PEOPLE.items():
            app.identity.add_user(username, name, [role], PASSWORD, by="admin.rel")
    finally:
        app.store.close()


@dataclass
class Outcome:
    """What happened to one child."""

    killed: bool
    returncode: int
    acks: list[tuple[str, int]]
    stderr: str


class Child:
    """A `bedside` child whose stdout is read line by line as it is written."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        self.lines: list[str] = []
        self.acked = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.acked:
                self.lines.append(line)
                self.acked.notify_all()
        with self.acked:
            self.acked.notify_all()

    def acks(self) -> list[tuple[str, int]]:
        out = []
        for line in list(self.lines):
            m = ACK.match(line)
            if m:
                out.append((m.group(2), int(m.group(4))))
        return out

    def wait_acks(self, n: int, timeout: float) -> None:
        """Until ``n`` acknowledgements were printed, the child ended, or ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.acked:
            while len(self.acks()) < n and self.proc.poll() is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.acked.wait(min(left, 0.5))

    def kill(self) -> Outcome:
        killed = self.proc.poll() is None
        if killed:
            self.proc.send_signal(signal.SIGKILL)
        return self.finish(killed)

    def finish(self, killed: bool = False) -> Outcome:
        try:
            self.proc.wait(CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("a bedside child hung past its time limit") from None
        self._reader.join(10)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        killed = killed and self.proc.returncode == -signal.SIGKILL
        return Outcome(killed, self.proc.returncode, self.acks(), err)


@dataclass
class Figures:
    kills: int = 0
    runs: int = 0
    acked_steps: int = 0
    cases: int = 0
    archived_files: int = 0
    leftover_temp_files: int = 0
    restarts: int = 0
    refused_by_restart: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def line(self, name: str, seed: int) -> str:
        return (
            f"FIGURES {name}: seed {seed}, {self.kills} SIGKILLs over {self.runs} runs, "
            f"{self.acked_steps} acknowledged steps all present, {self.cases} cases all "
            f"replayed and finished, {self.archived_files} archived PDFs all complete, "
            f"{self.leftover_temp_files} unfinished temp files (never indexed), "
            f"{self.restarts} database restarts, {self.seconds:.0f} s"
        )


class Campaign:
    """One home, one seeded schedule of runs and kills, and the checks after each."""

    def __init__(self, home: Path, db: str | None, seed: int) -> None:
        self.home = home
        self.db = db
        self.seed = seed
        self.rng = random.Random(seed)
        self.acked: dict[str, int] = {}
        self.patient_ids: set[str] = set()
        self.verified_blobs: set[str] = set()
        self.figures = Figures()
        self.scripts = home.parent / f"scripts-{seed}"
        self.scripts.mkdir(parents=True, exist_ok=True)

    def app(self) -> Bedside:
        return open_bedside(self.home, self.db)

    # -- building the next run ---------------------------------------------------------------
    def new_patient(self, app: Bedside) -> str:
        mrn = f"REL-{uuid.uuid4().hex[:10].upper()}"
        patient = app.store.add_patient(
            mrn=mrn, family_name="Campaign", given_name=f"Seed{self.seed}",
            date_of_birth="1968-05-17", created_by="campaign",
        )  # fmt: skip
        p = app.protocol
        app.store.start_course(
            patient.id, protocol_id=p.id, protocol_version=p.version, protocol_hash=p.content_hash
        )
        self.patient_ids.add(patient.id)
        return mrn

    def unfinished(self, app: Bedside) -> list[str]:
        final = set(app.protocol.final_states)
        return [
            r.id
            for r in app.store.list_cases()
            if r.patient_id in self.patient_ids and r.state not in final
        ]

    def _sign(self, step: str, case_id: str | None) -> dict[str, Any]:
        action: dict[str, Any] = {"sign": step, "by": SIGNER[step]}
        if step == "order":
            now = datetime.now(UTC)
            action["values"] = order_values("71.5", now - timedelta(hours=3))
            action["values"]["weight_measured_at"] = format_time(now - timedelta(hours=3))
        else:
            action["values"] = "auto"
        if case_id is not None:
            action["case"] = case_id
        return action

    def script(self, doses: int) -> tuple[Path, int]:
        """Finish every case a kill interrupted, then open and walk new ones (``doses`` in
        all, at least one new)."""
        actions: list[dict[str, Any]] = []
        app = self.app()
        try:
            open_cases = self.unfinished(app)
            for case_id in open_cases:
                step = app.load(case_id).case.next_step()
                assert step is not None, f"case {case_id} has no next step"
                for sid in STEP_IDS[STEP_IDS.index(step.id) :]:
                    actions.append(self._sign(sid, case_id))
            for _ in range(max(1, doses - len(open_cases))):
                actions.append({"open": {"mrn": self.new_patient(app)}, "by": "dr.rel"})
                actions.extend(self._sign(sid, None) for sid in STEP_IDS)
        finally:
            app.store.close()
        path = self.scripts / f"run-{self.figures.runs}.yaml"
        path.write_text(
            yaml.safe_dump({"passwords": {u: PASSWORD for u in PEOPLE}, "actions": actions})
        )
        return path, len(actions)

    # -- one round -----------------------------------------------------------------------------
    def run_and_kill(self) -> Outcome:
        """A scripted run killed after a drawn number of acknowledgements and a drawn delay."""
        script, steps = self.script(self.rng.randint(1, 2))
        after = self.rng.randint(0, steps - 1)  # so that the kill lands inside the run
        extra = self.rng.uniform(0.0, 0.3)
        child = Child(bedside_argv(self.home, self.db, "run", str(script)))
        child.wait_acks(after, CHILD_TIMEOUT_S)
        time.sleep(extra)
        outcome = child.kill()
        self._record(outcome)
        return outcome

    def demo_and_kill(self) -> Outcome:
        """`bedside demo` prints only at the end, so it is killed after a drawn delay."""
        delay = self.rng.uniform(0.5, 6.0)
        child = Child(bedside_argv(self.home, self.db, "demo", "--doses", "2"))
        deadline = time.monotonic() + delay
        while child.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        outcome = child.kill()
        self._record(outcome)
        return outcome

    def restart_database_round(self) -> Outcome:
        """PostgreSQL restarted under a running `bedside run`: the child loses its connection
        and must stop with a message (no traceback); what it acknowledged must survive."""
        script, steps = self.script(2)
        child = Child(bedside_argv(self.home, self.db, "run", str(script)))
        child.wait_acks(self.rng.randint(1, max(1, steps // 2)), CHILD_TIMEOUT_S)
        try:
            pg_cluster("restart")
        finally:
            pg_cluster_running()
        outcome = child.finish()
        self.figures.runs += 1
        self.figures.restarts += 1
        assert "Traceback" not in outcome.stderr, outcome.stderr
        if outcome.returncode != 0:
            self.figures.refused_by_restart += 1
            assert outcome.returncode in (1, 2), outcome
        for case_id, version in outcome.acks:
            self.acked[case_id] = max(self.acked.get(case_id, 0), version)
        self.figures.acked_steps += len(outcome.acks)
        return outcome

    def round(self) -> Outcome:
        if self.rng.random() < 0.2:
            return self.demo_and_kill()
        return self.run_and_kill()

    def _record(self, outcome: Outcome) -> None:
        self.figures.runs += 1
        self.figures.kills += int(outcome.killed)
        if not outcome.killed:
            assert outcome.returncode == 0, outcome.stderr
        assert "Traceback" not in outcome.stderr, outcome.stderr
        for case_id, version in outcome.acks:
            self.acked[case_id] = max(self.acked.get(case_id, 0), version)
        self.figures.acked_steps += len(outcome.acks)

    # -- the checks ----------------------------------------------------------------------------
    def check(self) -> None:
        app = self.app()
        try:
            report = app.store.verify_chains()
            assert report.ok, report.first_problem
            for case_id, version in self.acked.items():
                events = app.store.load_events(case_id)
                assert len(events) >= version, (case_id, version, len(events))
                assert [e.seq for e in events] == list(range(1, len(events) + 1))
            for record in app.store.list_cases():
                view = app.load(record.id)  # replays on the case machine
                assert view.version == record.version
            self.check_archive(app)
        finally:
            app.store.close()

    def check_archive(self, app: Bedside) -> None:
        archive = Archive(self.home, app.store)
        verifier = Verifier(list(load_trust_roots(archive.pki_dir)))
        temp = 0
        fans = (p for p in archive.blobs.root.iterdir() if p.is_dir() and len(p.name) == 2)
        for fan in sorted(fans):  # the fan-out folders (archive/by-case/ names records)
            for path in sorted(fan.iterdir()):
                if path.name.startswith(".incoming-"):
                    temp += 1  # a write cut off before its link: never named, never indexed
                    continue
                sha = path.name.removesuffix(".pdf")
                if sha in self.verified_blobs:
                    continue
                data = path.read_bytes()
                assert hashlib.sha256(data).hexdigest() == sha, f"partial archive file {path}"
                result = verifier.verify(data, sha)
                assert result.ok, (path, result.to_dict())
                self.verified_blobs.add(sha)
        for record in archive.iter_records():
            assert record.sha256 in self.verified_blobs, f"index names a missing {record.sha256}"
        self.figures.leftover_temp_files = temp
        self.figures.archived_files = len(self.verified_blobs)

    def finish(self) -> None:
        """A run nobody kills finishes every interrupted case; then the audit commands pass."""
        app = self.app()
        try:
            pending = bool(self.unfinished(app))
        finally:
            app.store.close()
        if pending:
            script, _ = self.script(1)
            done = bedside(self.home, self.db, "run", str(script))
            assert done.returncode == 0, done.stdout + done.stderr
        self.check()
        app = self.app()
        try:
            assert not self.unfinished(app)
            self.figures.cases = len(app.store.list_cases())
        finally:
            app.store.close()
        # The demo's own course may hold an interrupted dose: the demo finishes it itself.
        demo = bedside(self.home, self.db, "demo", "--doses", "1")
        assert demo.returncode == 0, demo.stderr
        audit = bedside(self.home, self.db, "audit", "verify")
        assert audit.returncode == 0, audit.stdout + audit.stderr
        arch = bedside(self.home, self.db, "archive", "verify")
        assert arch.returncode == 0, arch.stdout + arch.stderr
        self.check()


def pg_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[0]


def pg_cluster(action: str) -> None:
    """``pg_ctlcluster`` on this machine's cluster; ``-m fast`` disconnects clients at once."""
    argv = ["pg_ctlcluster", "--skip-systemctl-redirect", pg_version(), "main", action]
    if action in ("restart", "stop"):
        argv += ["-m", "fast"]
    subprocess.run(argv, check=True, timeout=120, capture_output=True)


def pg_cluster_running() -> None:
    """Start the cluster if it is down (other people's tests share it), and wait until it
    accepts connections (bounded)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready = subprocess.run(
            ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], check=False, timeout=30
        )
        if ready.returncode == 0:
            return
        if ready.returncode == 2:  # no response: not running
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", pg_version(), "main", "start"],
                check=False, timeout=120, capture_output=True,
            )  # fmt: skip
        time.sleep(0.5)
    raise AssertionError("PostgreSQL did not come back within 60 s")
