"""``bedside dev seed``: fill a database with a cancer centre's year of realistic cases, fast.

Every case is walked by the real case machine in memory (the protocol's own checks, the dose
plan, q8h scheduling, cycles, rests and courses), with entries read off each case's plan
(``walk.values_for``) and signed by the ward's own staff, who are real accounts. The mix:

* most doses complete; some are held (SpO2 88 %) and resumed by a prescriber, some held and then
  cancelled (the hold carries over to the next dose), some cancelled before preparation, some
  wasted after dilution, a few end the course (sustained VT during the infusion);
* a share of patients have a dose in progress at the end, stopped at any step (worklists and
  the pharmacy queue are not empty);
* a patient who completes a course of 28 doses starts a second one six weeks later.

The cases are then written in batches by ``Store.bulk_load``, which hashes exactly as a live
append does, so ``bedside audit verify`` passes on a seeded database.

Archive: every ended case gets the index rows its records would have (kind, patient, MRN, dose,
lots, signers, state). The first ``signed_sample`` ended cases get real records, rendered,
signed and stored by the real archive (when the home has signing material). The rest are
*placeholders*: their ``path`` is :data:`PLACEHOLDER_PATH` and their key is
:func:`placeholder_sha256` of the case and kind (no PDF has that hash), so ``archive verify``
counts them apart and never calls them verified; relabelling a real row as a placeholder does
not hide it, because its key would no longer match.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from workflow.archive.index_row import index_row
from workflow.core.clock import FixedClock
from workflow.core.course import course_status
from workflow.core.errors import BedsideError, NotFound
from workflow.core.events import Event, Signer
from workflow.core.machine import Case, PatientRef
from workflow.core.names import with_id
from workflow.core.protocol.model import Protocol, Step
from workflow.dev.walk import open_next_dose, walk_dose
from workflow.identity import Identity
from workflow.records.case_records import _COMPOUNDING_STEPS as _COMPOUNDING
from workflow.store import (
    COURSE_ACTIVE,
    COURSE_COMPLETED,
    COURSE_DISCONTINUED,
    ArchivedRecord,
    Course,
    Patient,
    Store,
)
from workflow.store.bulk import BulkCase
from workflow.store.placeholders import PLACEHOLDER_PATH, placeholder_sha256

if TYPE_CHECKING:
    from workflow.service import Bedside

SEED_PASSWORD = "seed-staff-2026!"  # noqa: S105 - dev seed accounts; printed by the command
SEED_CREATOR = "dev-seed"
PATIENTS_PER_WARD = 250
BATCH_CASES = 400

# Per-dose outcome shares (the rest complete).
_SCENARIOS = (
    ("hold_resume", 0.04),
    ("hold_cancel", 0.02),
    ("cancel", 0.02),
    ("waste", 0.01),
    ("discontinue", 0.004),
)
IN_PROGRESS_SHARE = 0.2  # of patients, their last dose is left open at a random step
# Which member of the ward's team signs each step (the verifier never prepared; two nurses).
_SLOT = {
    "order": "prescriber",
    "order_verification": "pharmacist",
    "eligibility": "pharmacist",
    "reconstitution": "technician",
    "dilution": "technician",
    "pharmacy_verification": "pharmacist",
    "double_check_second": "nurse2",
}
_FAMILY = (
    "Rivera",
    "Okafor",
    "Lindqvist",
    "Mensah",
    "Alvarez",
    "Chen",
    "Ibrahim",
    "Novak",
    "Haddad",
    "Kowalski",
    "Moreau",
    "Tanaka",
    "Schmidt",
    "Rossi",
    "Nguyen",
    "Andersen",
    "Fischer",
    "Silva",
    "Murphy",
    "Kaur",
    "Yilmaz",
    "Popescu",
    "Dubois",
    "Larsen",
    "Costa",
    "Jansen",
    "Horvat",
    "Ahmed",
    "Petrov",
    "Garcia",
)
_GIVEN = (
    "Jordan",
    "Amara",
    "Per",
    "Tomas",
    "Nadia",
    "Wei",
    "Aisha",
    "Lena",
    "Omar",
    "Sofia",
    "Mateo",
    "Hana",
    "Ravi",
    "Ines",
    "Karl",
    "Maya",
    "Tariq",
    "Elena",
    "Jonas",
    "Priya",
    "Luca",
    "Noor",
    "Ana",
    "Felix",
    "Zara",
    "Ivan",
    "Mei",
    "Leo",
    "Rosa",
    "Samir",
)


@dataclass(frozen=True)
class SeedReport:
    patients: int
    courses: int
    cases: int
    events: int
    open_cases: int
    records_indexed: int
    records_signed: int
    placeholders: int
    seconds_building: float
    seconds_writing: float


@dataclass
class _Team:
    prescriber: list[Signer]
    pharmacist: list[Signer]
    technician: list[Signer]
    nurse: list[Signer]

    def pick(self, rng: random.Random) -> dict[str, Signer]:
        first, second = rng.sample(self.nurse, 2)
        return {
            "prescriber": rng.choice(self.prescriber),
            "pharmacist": rng.choice(self.pharmacist),
            "technician": rng.choice(self.technician),
            "nurse": first,
            "nurse2": second,
        }


@dataclass
class _Batch:
    patients: list[Patient] = field(default_factory=list)
    courses: list[Course] = field(default_factory=list)
    cases: list[tuple[BulkCase, Case]] = field(default_factory=list)


def seed_installation(
    bedside: Bedside,
    *,
    patients: int,
    doses: int,
    rng_seed: int = 8,
    signed_sample: int = 20,
    progress: Callable[[int, int], None] | None = None,
) -> SeedReport:
    """:func:`seed` an opened installation (``bedside dev seed``): its store, protocol and
    archiver, so the command line hands over the service and nothing below it."""
    return seed(
        bedside.store,
        bedside.protocol,
        patients=patients,
        doses=doses,
        rng_seed=rng_seed,
        archive_case=bedside.archiver,
        signed_sample=signed_sample,
        progress=progress,
    )


def seed(
    store: Store,
    protocol: Protocol,
    *,
    patients: int,
    doses: int,
    rng_seed: int = 8,
    end: datetime | None = None,
    archive_case: Callable[[Case, str], object] | None = None,
    signed_sample: int = 20,
    progress: Callable[[int, int], None] | None = None,
    identity: Identity | None = None,
) -> SeedReport:
    """Add ``patients`` patients and ``doses`` dose cases (spread over them, ending by ``end``).

    ``archive_case`` (``Archive.archive_case``) signs real records for the first
    ``signed_sample`` ended cases; every other ended case gets placeholder index rows.
    """
    import time

    if patients < 1 or doses < 1:
        raise BedsideError("--patients and --doses must be 1 or more")
    rng = random.Random(rng_seed)  # noqa: S311 - reproducible made-up data, not secrets
    end = end or store.clock.now()
    start = end - timedelta(days=365)
    teams = _wards(store, protocol, identity or Identity(store), patients)
    wards = len(teams)
    run = uuid.uuid4().hex[:6].upper()

    quota = [doses // patients + (1 if i < doses % patients else 0) for i in range(patients)]
    batch = _Batch()
    sample: list[str] = []
    totals = {"courses": 0, "cases": 0, "events": 0, "open": 0, "indexed": 0, "placeholders": 0}
    building = writing = 0.0
    leftover = 0
    for index in range(patients):
        t0 = time.perf_counter()
        ward = index % wards
        patient = _patient(rng, run, index, start)
        batch.patients.append(patient)
        want = quota[index] + leftover
        first_at = start + timedelta(minutes=rng.randrange(0, 300 * 24 * 60))
        made = _patient_cases(
            protocol, rng, patient, teams[ward], f"ward-{ward + 1}", first_at, want, batch
        )
        leftover = want - made
        building += time.perf_counter() - t0
        if len(batch.cases) >= BATCH_CASES or index == patients - 1:
            t0 = time.perf_counter()
            _flush(store, batch, totals, sample, signed_sample if archive_case else 0)
            writing += time.perf_counter() - t0
            batch = _Batch()
            if progress is not None:
                progress(totals["cases"], doses)
    _analyze(store)
    t0, signed = time.perf_counter(), 0
    if archive_case is not None:
        signed = _sign_sample(store, protocol, sample, archive_case)
        writing += time.perf_counter() - t0
    return _report(patients, totals, signed, building, writing)


def _report(
    patients: int, totals: dict[str, int], signed: int, building: float, writing: float
) -> SeedReport:
    return SeedReport(
        patients=patients,
        courses=totals["courses"],
        cases=totals["cases"],
        events=totals["events"],
        open_cases=totals["open"],
        records_indexed=totals["indexed"],
        records_signed=signed,
        placeholders=totals["placeholders"],
        seconds_building=building,
        seconds_writing=writing,
    )


def _sign_sample(
    store: Store, protocol: Protocol, sample: list[str], archive_case: Callable[[Case, str], object]
) -> int:
    """Real, signed records for the sampled cases, replayed from the store as written."""
    for case_id in sample:
        record, events = store.load_case(case_id)
        case = Case.replay(protocol, case_id, events)
        assert record.version == case.version
        archive_case(case, store.case_chain_hash(case_id))
    return len(sample)


def _wards(store: Store, protocol: Protocol, identity: Identity, patients: int) -> list[_Team]:
    """One team of real accounts per ward of PATIENTS_PER_WARD patients; the protocol text
    saved so the seeded cases' version resolves."""
    wards = max(1, -(-patients // PATIENTS_PER_WARD))
    teams = [_team(identity, ward + 1) for ward in range(wards)]
    store.save_protocol_text(
        _protocol_text(protocol), protocol_id=protocol.id, version=protocol.version
    )
    return teams


def _analyze(store: Store) -> None:
    """Refresh the planner's statistics. A live database has them from autovacuum; right after
    a bulk load PostgreSQL would otherwise plan a case load as a scan of every signature
    (measured at 10,000 records: 11.0 ms per case load before, 5.9 ms after). SQLite's plans
    here need no statistics (its EXPLAIN QUERY PLAN uses the indexes without them)."""
    if store.dialect != "postgresql":
        return
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))


def _flush(
    store: Store,
    batch: _Batch,
    totals: dict[str, int],
    sample: list[str],
    signed_sample: int,
) -> None:
    result = store.bulk_load(
        patients=batch.patients, courses=batch.courses, cases=[b for b, _ in batch.cases]
    )
    records: list[ArchivedRecord] = []
    for _, case in batch.cases:
        if not case.closed:
            totals["open"] += 1
            continue
        if len(sample) < signed_sample:
            sample.append(case.case_id)  # real, signed records after the bulk load
            continue
        records.extend(_placeholder_rows(case))
    if records:
        store.bulk_load(records=records)
    totals["courses"] += len(batch.courses)
    totals["cases"] += len(batch.cases)
    totals["events"] += result.events_written
    totals["indexed"] += len(records)
    totals["placeholders"] += len(records)


def _placeholder_rows(case: Case) -> Iterator[ArchivedRecord]:
    """The index rows ``Archive.archive_case`` would write, keyed as placeholders. The kinds and
    signers follow ``case_records`` (a compounding record once anything was reconstituted; its
    signers are the order's and compounding's, the administration record's everyone else's)
    without building the documents, which would cost more than walking the case."""
    signed = [e for e in case.events if e.actor is not None and e.meaning is not None]
    # As the records print them (records.document.SignatureManifestation.signer).
    who = [(e.step, with_id(e.actor.name, e.actor.user_id)) for e in signed if e.actor]
    compounding = {name for step, name in who if step in _COMPOUNDING}
    order = {name for step, name in who if step == "order"}
    administration = {name for step, name in who if step not in _COMPOUNDING}
    kinds = []
    if any(e.step == "reconstitution" for e in case.events):
        kinds.append(("compounding", compounding | order))
    kinds.append(("administration", administration))
    for kind, names in kinds:
        yield index_row(
            case,
            kind=kind,
            sha256=placeholder_sha256(case.case_id, kind),
            signers=sorted(names),
            path=PLACEHOLDER_PATH,
            created_at=case.events[-1].at,
        )


def _patient_cases(
    protocol: Protocol,
    rng: random.Random,
    patient: Patient,
    team: _Team,
    ward: str,
    first_at: datetime,
    want: int,
    batch: _Batch,
) -> int:
    """Walk up to ``want`` doses for one patient, course after course; returns how many."""
    ref = PatientRef(patient.id, patient.mrn, patient.display_name, patient.date_of_birth)
    weight = str(rng.randrange(52, 110))
    clock = FixedClock(first_at)
    made = 0
    leave_open = rng.random() < IN_PROGRESS_SHARE
    max_given = int(protocol.schedule.max_doses_per_course.value)
    while made < want:
        course = _new_course(protocol, patient, clock.now())
        cases: list[Case] = []
        ended = False
        while made < want and not ended:
            status = course_status(cases)
            if len(status.given) >= max_given:
                break
            scenario = _scenario(rng)
            last = made == want - 1
            stop = _stop_state(rng, protocol) if last and leave_open else None
            try:
                case, _events, scheduled = open_next_dose(
                    protocol,
                    cases,
                    clock,
                    course_id=course.id,
                    patient=ref,
                    prescriber=lambda: rng.choice(team.prescriber),
                    weight_kg=weight,
                    ward=ward,
                )
            except BedsideError:
                break  # the schedule refuses another dose in this course: start the next
            _walk(case, clock, team.pick(rng), scenario, stop)
            cases.append(case)
            made += 1
            batch.cases.append((_bulk(case, course, scheduled, protocol), case))
            if case.state == COURSE_DISCONTINUED:
                ended = True
        status_word = _course_status_word(cases, max_given)
        batch.courses.append(replace(course, status=status_word))
        if not cases or status_word == COURSE_DISCONTINUED:
            break  # no more doses for this patient; the rest go to the next patient
        clock.advance(days=42)
    return made


def _walk(
    case: Case, clock: FixedClock, team: dict[str, Signer], scenario: str, stop: str | None
) -> None:
    """Walk the dose as ``scenario`` has it go (see _SCENARIOS), stopping at state ``stop``."""
    held_once = False

    def intervene(case: Case, step: Step | None) -> bool:
        if case.on_hold:
            clock.advance(minutes=45)
            if scenario == "hold_cancel":
                case.cancel(team["prescriber"], clock.now(), "dose_skipped_after_hold")
            else:
                case.resume(team["prescriber"], clock.now(), "criteria_met")
            return True
        if step is not None and scenario == "cancel" and step.id == "hold_checks":
            case.cancel(team["nurse"], clock.now(), "patient_unavailable")
            return True
        if step is not None and scenario == "discontinue" and step.id == "infusion_stop":
            clock.advance(minutes=6)
            case.assess({"vt_sustained_beats": "7"}, team["nurse"], clock.now())
            return True
        return False

    def sign(step: Step, now: datetime, values: dict[str, Any]) -> None:
        nonlocal held_once
        holds = scenario in ("hold_resume", "hold_cancel")
        if holds and step.id == "hold_checks" and not held_once:
            values["spo2_pct"] = "88"
            held_once = True
        case.sign(step.id, values, team[_SLOT.get(step.id, "nurse")], now)
        if scenario == "waste" and step.id == "dilution":
            clock.advance(minutes=20)
            case.waste(team["technician"], clock.now(), "damaged_or_dropped")

    walk_dose(case, clock, sign, stop=stop, intervene=intervene, turns=100)


def _new_course(protocol: Protocol, patient: Patient, at: datetime) -> Course:
    return Course(
        id=uuid.uuid4().hex,
        patient_id=patient.id,
        started_at=at,
        status=COURSE_ACTIVE,
        protocol_id=protocol.id,
        protocol_version=protocol.version,
        protocol_hash=protocol.content_hash,
    )


def _course_status_word(cases: list[Case], max_given: int) -> str:
    """Discontinued, completed (every dose given) or still active."""
    if any(c.state == COURSE_DISCONTINUED for c in cases):
        return COURSE_DISCONTINUED
    if len(course_status(cases).given) >= max_given:
        return COURSE_COMPLETED
    return COURSE_ACTIVE


def _scenario(rng: random.Random) -> str:
    roll = rng.random()
    for name, share in _SCENARIOS:
        if roll < share:
            return name
        roll -= share
    return "complete"


def _stop_state(rng: random.Random, protocol: Protocol) -> str:
    steps = [s.id for s in protocol.ordered_steps_from(protocol.initial) if s.id != "order"]
    return rng.choice(steps)


def _bulk(case: Case, course: Course, scheduled: datetime, protocol: Protocol) -> BulkCase:
    events: list[Event] = list(case.events)
    return BulkCase(
        events=events,
        course_id=course.id,
        patient_id=course.patient_id,
        cycle=case.cycle,
        dose_in_cycle=case.dose_in_cycle,
        dose_in_course=case.dose_in_course,
        scheduled_at=scheduled,
        state=case.state,
        protocol_version=protocol.version,
        protocol_hash=protocol.content_hash,
    )


def _patient(rng: random.Random, run: str, index: int, start: datetime) -> Patient:
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(0, 365 * 60))
    return Patient(
        id=uuid.uuid4().hex,
        mrn=f"S{run}-{index + 1:07d}",
        family_name=rng.choice(_FAMILY),
        given_name=rng.choice(_GIVEN),
        date_of_birth=born,
        created_at=start,
        created_by=SEED_CREATOR,
    )


def _team(identity: Identity, ward: int) -> _Team:
    """The ward's staff: real accounts (argon2 hashing is slow, so a few per ward)."""

    def person(role: str, n: int, title: str) -> Signer:
        short = {"pharmacy_technician": "tech", "pharmacist": "pharm"}.get(role, role[:5])
        username = f"w{ward}.{short}{n}"
        k = ward * 11 + n + len(role) * 5  # a different name for each account of the ward
        # The ward in the name: no two active accounts may print the same name.
        name = f"{title} {_GIVEN[k % len(_GIVEN)]} {_FAMILY[(k * 7) % len(_FAMILY)]} (ward {ward})"
        try:
            user = identity.get_user(username)
        except NotFound:
            user = identity.add_user(username, name, [role], SEED_PASSWORD, by=SEED_CREATOR)
        return Signer(user.id, user.printed_name, role)

    return _Team(
        prescriber=[person("prescriber", n, "Dr.") for n in (1, 2)],
        pharmacist=[person("pharmacist", n, "PharmD") for n in (1, 2)],
        technician=[person("pharmacy_technician", n, "CPhT") for n in (1, 2)],
        nurse=[person("nurse", n, "RN") for n in (1, 2, 3, 4)],
    )


def _protocol_text(protocol: Protocol) -> bytes:
    return Path(protocol.path).read_bytes()
