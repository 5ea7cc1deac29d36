"""Store latency: append (one signed event per transaction, as at the bedside) and load_events.

    python bench/bench_store.py [--appends N] [--postgres URL]

Runs on a fresh SQLite file (synchronous=FULL, so every append waits for the disk) and, when
reachable, on a fresh PostgreSQL database created and dropped on BEDSIDE_TEST_POSTGRES_URL's
server. Prints median and p95 append latency, and the time to load and verify one case.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from workflow.core.clock import FixedClock
from workflow.core.events import CASE_OPENED, STEP_SIGNED, Event, Signer
from workflow.store import Store, new_id, open_store
from workflow.store.engine import normalise_url

PROTOCOL_HASH = "ab" * 32
SIGNER = Signer("u-bench", "Bench Nurse", "nurse")


def run(store: Store, appends: int) -> dict[str, float]:
    clock = store.clock
    patient = store.add_patient(
        mrn=f"B{new_id()[:10]}",
        family_name="Bench",
        given_name="Pat",
        date_of_birth="1970-01-01",
        created_by="u-bench",
    )
    course = store.start_course(
        patient.id, protocol_id="aldesleukin", protocol_version="1", protocol_hash=PROTOCOL_HASH
    )
    case_id = new_id()
    opening = Event(case_id, 1, CASE_OPENED, clock.now(), SIGNER, {})
    case = store.create_case(
        opening,
        course_id=course.id,
        cycle=1,
        dose_in_cycle=1,
        dose_in_course=1,
        scheduled_at=clock.now(),
        state="ordered",
        protocol_version="1",
        protocol_hash=PROTOCOL_HASH,
    )
    latencies = []
    for seq in range(2, appends + 2):
        event = Event(
            case_id,
            seq,
            STEP_SIGNED,
            clock.now(),
            SIGNER,
            {"values": {"weight_kg": "70.5", "sbp": "118"}, "outcome": "ok"},
            step=f"step{seq}",
            meaning="performed",
        )
        start = time.perf_counter()
        case = store.append(
            case_id,
            case.version,
            [event],
            protocol_version="1",
            protocol_hash=PROTOCOL_HASH,
            state="in_progress",
        )
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    events = store.load_events(case_id)
    load = time.perf_counter() - start
    start = time.perf_counter()
    store.load_events(case_id, verify=False)
    load_raw = time.perf_counter() - start
    start = time.perf_counter()
    assert store.verify_chains().ok
    verify = time.perf_counter() - start
    latencies.sort()
    return {
        "events": len(events),
        "append_median_ms": statistics.median(latencies) * 1000,
        "append_p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
        "load_verified_ms": load * 1000,
        "load_unverified_ms": load_raw * 1000,
        "verify_chains_ms": verify * 1000,
    }


@contextmanager
def postgres(url: str) -> Iterator[str | None]:
    admin = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError:
        admin.dispose()
        yield None
        return
    name = f"bedside_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(normalise_url(url)).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def report(name: str, figures: dict[str, float]) -> None:
    print(
        f"{name:<10} events={figures['events']:.0f}  append median "
        f"{figures['append_median_ms']:.2f} ms  p95 {figures['append_p95_ms']:.2f} ms  "
        f"load_events {figures['load_verified_ms']:.1f} ms (verified), "
        f"{figures['load_unverified_ms']:.1f} ms (unverified)  "
        f"verify_chains {figures['verify_chains_ms']:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=200)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "BEDSIDE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args, _ = parser.parse_known_args()  # bench/run.py passes its own argv through
    clock = FixedClock(datetime(2026, 11, 2, 6, 0, tzinfo=UTC))
    with tempfile.TemporaryDirectory() as home:
        url = f"sqlite:///{Path(home) / 'bedside.sqlite3'}"
        with open_store(url, clock=clock) as store:
            report("sqlite", run(store, args.appends))
    with postgres(args.postgres) as pg_url:
        if pg_url is None:
            print(f"postgresql skipped: {args.postgres} unreachable")
            return
        clock.advance(seconds=1)
        with open_store(pg_url, clock=clock) as store:
            report("postgresql", run(store, args.appends))


if __name__ == "__main__":
    main()
