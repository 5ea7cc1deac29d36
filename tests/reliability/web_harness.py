"""The web campaigns' moving parts: real `bedside serve` children on loopback, the JSON API
walked by real HTTP clients, SIGKILL.

A `Server` is one `bedside serve` subprocess on a free 127.0.0.1 port, its log in a file. People
sign in once (`POST /api/session`); their sessions live in the database, so they outlive a
killed server and are carried to the next one (cookie and CSRF token only, as a browser would).
Every step goes through `POST /api/cases/{id}/steps/{step}` with the version the client last
saw and the signer's password; an `Ack` is an HTTP 200 the client actually received.

`WebCampaign` reuses `harness.Campaign` for the home, the patients and every check after a kill
(chains, acknowledged versions, replay, complete archive files) and adds what only the web
knows: which client was acknowledged for which step at which seq, and the requests whose
outcome the kill made unknown (resent to the next server: 200 if they had not landed, 409 if
they had, never both).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from workflow.core.events import format_time
from workflow.core.machine import Case
from workflow.dev.walk import order_values, values_for
from workflow.identity import Credentials
from workflow.service import Bedside

from .harness import PASSWORD, PEOPLE, SIGNER, STEP_IDS, Campaign, bedside, bedside_argv, child_env

# Bounds on every wait: a server that hangs is a finding, not a stuck suite.
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 60.0
# The tablet the blinded second checker signs at (with their own id, never their session).
SECOND_CHECK_TABLET = "n.rel1"
# uvicorn closes a keep-alive connection after 5 s idle, httpx keeps one 5 s by default: a
# request sent on it as the server closes it is reset unanswered (the first soak met this under
# load). A client must drop idle connections first, as a browser or nginx upstream does.
LIMITS = httpx.Limits(keepalive_expiry=1.0)
# What `bedside serve` prints when it archived ended cases a kill had left without records.
CAUGHT_UP = "bedside: archived the records of"
# A server is killed after at most this many acknowledged steps (plus one in flight).
MAX_ACKS_PER_SERVER = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One `bedside serve` child on a free loopback port; stdout and stderr go to ``log``."""

    def __init__(self, home: Path, db: str | None, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                bedside_argv(home, db, "serve", "--port", str(self.port)),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(),
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"bedside serve exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(self.base + "/login", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"bedside serve on {self.base} did not start in {START_TIMEOUT_S} s")

    def kill(self) -> bool:
        """SIGKILL; True when the server was still running (a real kill)."""
        alive = self.proc.poll() is None
        if alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        return alive and self.proc.returncode == -signal.SIGKILL

    def stop(self) -> None:
        """A clean stop (SIGTERM), bounded."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def tracebacks(log: Path) -> int:
    """How many tracebacks the servers wrote: each one is a request that failed with a 5xx."""
    return log.read_text(errors="replace").count("Traceback") if log.exists() else 0


@dataclass(frozen=True)
class Session:
    """What a browser keeps of a sign-in: the cookies and the CSRF token."""

    cookies: httpx.Cookies
    csrf: str


def sign_in(base: str, username: str) -> Session:
    with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S, limits=LIMITS) as c:
        r = c.post("/api/session", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, (username, r.status_code, r.text)
        return Session(c.cookies, r.json()["csrf_token"])


def tablet(base: str, session: Session) -> httpx.Client:
    """A client on ``base`` carrying ``session`` (a new connection pool: the old server's
    connections died with it)."""
    client = httpx.Client(
        base_url=base, timeout=REQUEST_TIMEOUT_S, cookies=session.cookies, limits=LIMITS
    )
    client.headers["X-CSRF-Token"] = session.csrf
    return client


@dataclass(frozen=True)
class Ack:
    """An HTTP 200 a client received: its step is stored at ``seq``, signed by ``signer``."""

    client: int
    case_id: str
    seq: int
    step: str
    signer: str


@dataclass(frozen=True)
class Submission:
    """One step POST: where it goes, who sends it (whose session) and its body."""

    case_id: str
    step: str
    expected_version: int
    tablet_of: str  # the person whose session sends it
    body: dict[str, Any]

    @property
    def path(self) -> str:
        return f"/api/cases/{self.case_id}/steps/{self.step}"


def entries(case: Case, step: str) -> dict[str, Any]:
    """The entries a careful team makes for ``step``, from the case's own plan and patient."""
    now = datetime.now(UTC)
    if step == "order":
        values = order_values("71.5", now - timedelta(hours=3))
        values["weight_measured_at"] = format_time(now - timedelta(hours=3))
        return values
    return values_for(case, step, now - timedelta(seconds=30))


def values_now(app: Bedside, case_id: str, step: str) -> dict[str, Any]:
    """:func:`entries` for the case as stored now (replayed here; the entries are plain data
    the client then sends)."""
    return entries(app.load(case_id).case, step)


def submission(app: Bedside, case_id: str, step: str, version: int) -> Submission:
    signer = SIGNER[step]
    body: dict[str, Any] = {
        "expected_version": version,
        "values": values_now(app, case_id, step),
        "password": PASSWORD,
    }
    tablet_of = signer
    if app.protocol.step(step).blinded_against:
        body["username"] = signer  # signs with their own id at the first checker's tablet
        tablet_of = SECOND_CHECK_TABLET
    return Submission(case_id, step, version, tablet_of, body)


def stored_step_errors(app: Bedside, acks: list[Ack], user_ids: dict[str, str]) -> list[str]:
    """Every acknowledged step is stored at its seq, as that step, signed by that person; and no
    two acknowledgements claim one seq. Returns what is wrong (empty when all is well)."""
    problems: list[str] = []
    seen: dict[tuple[str, int], Ack] = {}
    by_case: dict[str, list[Ack]] = {}
    for ack in acks:
        key = (ack.case_id, ack.seq)
        if key in seen:
            problems.append(f"two acknowledgements for {key}: {seen[key]} and {ack}")
        seen[key] = ack
        by_case.setdefault(ack.case_id, []).append(ack)
    for case_id, case_acks in by_case.items():
        events = {e.seq: e for e in app.store.load_events(case_id)}
        for ack in case_acks:
            event = events.get(ack.seq)
            if event is None:
                problems.append(f"acknowledged {ack} is not stored")
            elif event.step != ack.step or event.actor is None:
                problems.append(f"acknowledged {ack} but seq {ack.seq} holds {event.step}")
            elif event.actor.user_id != user_ids[ack.signer]:
                problems.append(f"acknowledged {ack} but seq {ack.seq} is signed by another")
    return problems


def duplicate_step_errors(app: Bedside, case_ids: list[str]) -> list[str]:
    """On the happy path each step is signed once: a step stored twice is a duplicate."""
    problems = []
    for case_id in case_ids:
        steps = [e.step for e in app.store.load_events(case_id) if e.step is not None]
        doubled = sorted({s for s in steps if steps.count(s) > 1})
        if doubled:
            problems.append(f"case {case_id} has {doubled} stored more than once")
    return problems


@dataclass
class WebFigures:
    kills: int = 0
    kills_mid_request: int = 0  # with a step POST cut off (no answer received)
    kills_closing: int = 0  # with the closing step (its records being archived) in flight
    servers: int = 0
    acked_steps: int = 0
    unknown_outcomes: int = 0  # requests in flight at a kill
    unknown_landed: int = 0  # ... of which the resend got 409 (it had landed)
    cases: int = 0
    caught_up: int = 0  # server starts that first archived a case a kill left without records
    archived_files: int = 0
    leftover_temp_files: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def line(self, name: str, seed: int) -> str:
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        return (
            f"FIGURES {name}: seed {seed}, {self.kills} SIGKILLs of bedside serve "
            f"({self.kills_mid_request} with a step POST in flight, {self.kills_closing} of them "
            f"the closing step with its archiving) over {self.servers} server starts, "
            f"{self.acked_steps} acknowledged (HTTP 200) steps all stored at their seq, "
            f"{self.unknown_outcomes} requests cut off in flight (resent: "
            f"{self.unknown_landed} had landed -> 409, "
            f"{self.unknown_outcomes - self.unknown_landed} had not -> 200), 0 5xx, "
            f"{self.cases} cases all replayed, resumed and finished, {self.caught_up} server "
            f"starts archived a case left without records, {self.archived_files} "
            f"archived PDFs all complete, {self.leftover_temp_files} unfinished temp files "
            f"(never indexed), {self.seconds:.0f} s{notes}"
        )


class WebCampaign(Campaign):
    """One home, one seeded schedule of server starts and kills, the checks after each."""

    def __init__(self, home: Path, db: str | None, seed: int) -> None:
        super().__init__(home, db, seed)
        self.web = WebFigures()
        self.log = home.parent / f"serve-{seed}.log"
        self.sessions: dict[str, Session] = {}
        self.acks: list[Ack] = []
        self.in_flight: list[Submission] = []  # cut off by a kill: outcome unknown
        self.failures: list[str] = []  # any answer but 200 (or 409 to a resend)
        self.user_ids: dict[str, str] = {}
        self.driver: Bedside | None = None
        self.post_seconds: dict[str, float] = {}  # the last POST's duration, per step

    # -- the server --------------------------------------------------------------------------
    def start(self) -> tuple[Server, dict[str, httpx.Client]]:
        server = Server(self.home, self.db, self.log)
        self.web.servers += 1
        if not self.sessions:  # sign in once: the sessions outlive every later kill
            self.sessions = {u: sign_in(server.base, u) for u in PEOPLE if u != "a.rel"}
        return server, {u: tablet(server.base, s) for u, s in self.sessions.items()}

    def app_for_driver(self) -> Bedside:
        if self.driver is None:
            self.driver = self.app()
            self.user_ids = {u: self.driver.identity.get_user(u).id for u in PEOPLE}
        return self.driver

    def close(self) -> None:
        if self.driver is not None:
            self.driver.store.close()
            self.driver = None

    # -- one client's walk -----------------------------------------------------------------
    def send(self, tablets: dict[str, httpx.Client], sub: Submission, resend: bool) -> bool:
        """POST one step; True when it was acknowledged. A transport error (the server died)
        leaves the outcome unknown and propagates."""
        r = tablets[sub.tablet_of].post(sub.path, json=sub.body)
        if r.status_code == 200 and r.json()["version"] == sub.expected_version + 1:
            self.acks.append(
                Ack(0, sub.case_id, sub.expected_version + 1, sub.step, SIGNER[sub.step])
            )
            self.acked[sub.case_id] = max(self.acked.get(sub.case_id, 0), sub.expected_version + 1)
            return True
        if resend and r.status_code == 409:
            return False  # it had landed before the kill: refused, nothing written twice
        self.failures.append(f"{sub.step} on {sub.case_id}: {r.status_code} {r.text[:300]}")
        return False

    def resume_plan(self, tablets: dict[str, httpx.Client], new_cases: int) -> list[str]:
        """The cases this server walks: every unfinished one (each must resume where it
        stopped, as the new server reports it) and ``new_cases`` new ones."""
        app = self.app_for_driver()
        cases = self.unfinished(app)
        for case_id in cases:
            got = tablets["n.rel1"].get(f"/api/cases/{case_id}")
            assert got.status_code == 200, got.text
            view = app.load(case_id)
            nxt = view.case.next_step()
            assert nxt is not None, f"case {case_id} is open with no next step"
            assert got.json()["version"] == view.version, (case_id, got.json()["version"])
            assert got.json()["next_step"]["id"] == nxt.id, (case_id, got.json()["next_step"])
        for _ in range(new_cases):
            mrn = self.new_patient(app)
            patient = app.store.find_patient_by_mrn(mrn)
            assert patient is not None
            (course,) = app.store.list_courses(patient.id)
            view = app.open_case(course.id, app.clock.now(), Credentials("dr.rel", PASSWORD))
            cases.append(view.case.case_id)
        return cases

    def walk(
        self, tablets: dict[str, httpx.Client], cases: list[str], sent_count: list[int]
    ) -> None:
        """Walk ``cases`` to their ends through the API, one step at a time; stops at the
        first transport error (the kill)."""
        app = self.app_for_driver()
        for case_id in cases:
            for _ in range(len(STEP_IDS) + 1):  # bounded: a dose has len(STEP_IDS) steps
                got = tablets["n.rel1"].get(f"/api/cases/{case_id}")
                if got.status_code != 200:
                    self.failures.append(f"GET {case_id}: {got.status_code} {got.text[:300]}")
                    return
                data = got.json()
                if data["next_step"] is None:
                    break
                sub = submission(app, case_id, data["next_step"]["id"], data["version"])
                self.in_flight = [sub]
                sent_count[0] += 1
                began = time.monotonic()
                if not self.send(tablets, sub, resend=False):
                    return
                self.post_seconds[sub.step] = time.monotonic() - began
                self.in_flight = []

    # -- one round: start, walk, kill at the drawn point ---------------------------------------
    def web_round(self) -> None:
        server, tablets = self.start()
        try:
            self.resend_in_flight(tablets)
            # Few steps per server (each start costs seconds): an interrupted case carries on
            # under the next one, so the kills still spread over every step of a dose.
            fresh = (
                1 if not self.unfinished(self.app_for_driver()) else int(self.rng.random() < 0.25)
            )
            cases = self.resume_plan(tablets, fresh)
            remaining = sum(self.steps_left(c) for c in cases)
            mid_request = self.rng.random() < 0.5
            k = self.rng.randint(0, min(MAX_ACKS_PER_SERVER, remaining - 1))  # inside the walk
            # Mid-request: a drawn fraction of how long this step's POST took last time, so
            # kills land anywhere from the password check to after the commit (and, for the
            # closing step, inside the archive write).
            fraction = self.rng.uniform(0.0, 1.2)
            after_ack = self.rng.uniform(0.0, 0.05)
            sent_count = [0]  # requests sent by the walk so far
            acks_before = len(self.acks)
            driver = threading.Thread(
                target=self._walk_safely, args=(tablets, cases, sent_count), daemon=True
            )
            driver.start()
            deadline = time.monotonic() + REQUEST_TIMEOUT_S * 2
            while driver.is_alive() and time.monotonic() < deadline:
                if mid_request and sent_count[0] > k:
                    break  # the (k+1)-th request is on its way
                if not mid_request and len(self.acks) - acks_before >= k:
                    break  # k steps acknowledged
                time.sleep(0.002)
            flying = self.in_flight  # the driver replaces the list, never changes it
            if mid_request and flying:
                time.sleep(fraction * self.post_seconds.get(flying[0].step, 0.5))
            elif not mid_request:
                time.sleep(after_ack)
            killed = server.kill()
            driver.join(REQUEST_TIMEOUT_S)
            assert not driver.is_alive(), "the API client hung after its server was killed"
            self.web.kills += int(killed)
            # What is still in flight after the join got no answer: the kill cut it off.
            cut_off = self.in_flight
            self.web.kills_mid_request += int(killed and bool(cut_off))
            self.web.unknown_outcomes += len(cut_off)
            closing = [s for s in cut_off if s.step == STEP_IDS[-1]]
            self.web.kills_closing += int(killed and bool(closing))
        finally:
            server.kill()
            for c in tablets.values():
                c.close()

    def _walk_safely(
        self, tablets: dict[str, httpx.Client], cases: list[str], sent_count: list[int]
    ) -> None:
        try:
            self.walk(tablets, cases, sent_count)
        except httpx.TransportError:
            pass  # the kill: what was in flight stays in self.in_flight
        except Exception as exc:  # a thread's error must fail the campaign, not vanish
            self.failures.append(f"the API client stopped: {exc!r}")

    def steps_left(self, case_id: str) -> int:
        step = self.app_for_driver().load(case_id).case.next_step()
        return 0 if step is None else len(STEP_IDS) - STEP_IDS.index(step.id)

    def resend_in_flight(self, tablets: dict[str, httpx.Client]) -> None:
        """A client that lost its answer sends the same request again (same version): 200 if
        the first never landed, 409 if it did; either way the step is stored once."""
        for sub in self.in_flight:
            if not self.send(tablets, sub, resend=True):
                self.web.unknown_landed += 1
        self.in_flight = []

    # -- the checks ----------------------------------------------------------------------------
    def check_web(self) -> None:
        """Harness checks (chains, acknowledged versions, replay, archive files) plus: every
        200 is stored at its seq as its step by its signer; no step stored twice; no failure
        answer; no server traceback."""
        self.check()
        assert not self.failures, self.failures
        assert tracebacks(self.log) == 0, self.log.read_text()[-4000:]
        app = self.app()
        try:
            problems = stored_step_errors(app, self.acks, self.user_ids)
            problems += duplicate_step_errors(app, [r.id for r in app.store.list_cases()])
        finally:
            app.store.close()
        assert not problems, problems
        self.web.acked_steps = len(self.acks)
        self.web.caught_up = self.log.read_text(errors="replace").count(CAUGHT_UP)
        self.web.archived_files = self.figures.archived_files
        self.web.leftover_temp_files = self.figures.leftover_temp_files

    def web_finish(self) -> None:
        """A server nobody kills resends what was cut off and finishes every case; then the
        audit commands pass and every ended case has its records."""
        server, tablets = self.start()
        try:
            self.resend_in_flight(tablets)
            cases = self.resume_plan(tablets, 0)
            self.walk(tablets, cases, [0])
        finally:
            server.stop()
            for c in tablets.values():
                c.close()
        self.check_web()
        app = self.app()
        try:
            assert not self.unfinished(app)
            self.web.cases = len(app.store.list_cases())
        finally:
            app.store.close()
        self.close()
        audit = bedside(self.home, self.db, "audit", "verify")
        assert audit.returncode == 0, audit.stdout + audit.stderr
        arch = bedside(self.home, self.db, "archive", "verify")
        assert arch.returncode == 0, arch.stdout + arch.stderr
