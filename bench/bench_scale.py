"""How costs grow with the database: archive search, worklist, pharmacy queue, case load and
step latency at several archive sizes, on SQLite and PostgreSQL; and the step throughput of two
`bedside serve` processes against one on the same PostgreSQL database.

    python bench/bench_scale.py [--sizes 1000,10000] [--no-postgres] [--no-servers]
    python bench/bench_scale.py --sizes 1000,10000,100000      # the README's figures

A size is the number of archived records; each is seeded with `bedside dev seed`'s generator
(about 1.94 records and 14.5 events per dose case, 25 doses per patient). Every figure is the
median of repeated calls on a warm connection pool; growth is the ratio to the smallest size.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from workflow.core.clock import FixedClock
from workflow.core.machine import Case
from workflow.core.protocol import Protocol, load_protocol
from workflow.dev.seed import SEED_PASSWORD, seed
from workflow.dev.walk import values_for
from workflow.identity import Credentials, Identity
from workflow.resources import default_protocol_path
from workflow.service import Bedside
from workflow.store import Store, open_store
from workflow.store.engine import normalise_url

END = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
PG_URL = os.environ.get("BEDSIDE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
RECORDS_PER_DOSE = 1.94
DOSES_PER_PATIENT = 25
WARD = [
    "order_verification",
    "eligibility",
    "hold_checks",
    "double_check_first",
    "double_check_second",
    "pre_infusion",
    "infusion_start",
    "infusion_stop",
    "observation",
    "record_sign_off",
    "double_check_second_mismatch",
    "held",
]
PHARMACY = ["reconstitution", "dilution", "pharmacy_verification"]


def ms(fn: Callable[[], object], repeat: int = 30) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


@contextmanager
def pg_database(keep: str | None = None) -> Iterator[str | None]:
    """A new database on the test server, dropped afterwards unless named by ``keep``."""
    admin = create_engine(normalise_url(PG_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError:
        admin.dispose()
        yield None
        return
    name = keep or f"bedside_scale_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))  # fails if a kept one has that name
    try:
        yield make_url(normalise_url(PG_URL)).set(database=name).render_as_string(False)
    finally:
        if keep is None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def measure(url: str, protocol: Protocol, records: int) -> dict[str, float]:
    doses = max(1, round(records / RECORDS_PER_DOSE))
    store = open_store(url, clock=FixedClock(END))
    identity = Identity(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    t0 = time.perf_counter()
    report = seed(
        store,
        protocol,
        patients=max(1, doses // DOSES_PER_PATIENT),
        doses=doses,
        end=END,
        identity=identity,
    )
    seeded = time.perf_counter() - t0
    rng = random.Random(1)
    all_cases = store.list_cases()
    some = rng.sample(all_cases, min(50, len(all_cases)))
    newest = store.search_archive(limit=1)[0]
    family = newest.patient_name.split(",")[0].lower()
    out: dict[str, float] = {
        "records": float(report.records_indexed),
        "events": float(report.events),
        "seed_s": seeded,
        "search_text_ms": ms(lambda: store.search_archive(text=family[:4], limit=50)),
        "search_mrn_ms": ms(lambda: store.search_archive(text=newest.mrn[-7:], limit=50)),
        "search_page_ms": ms(lambda: store.search_archive(limit=50)),
        "worklist_ms": ms(lambda: store.worklist(WARD, limit=50)),
        "pharmacy_ms": ms(lambda: store.worklist(PHARMACY, limit=50)),
    }
    picks = iter(some * 3)

    def load_case() -> None:
        record = next(picks)
        events = store.load_events(record.id)
        Case.replay(protocol, record.id, events)

    out["case_load_ms"] = ms(load_case, repeat=min(30, len(some) * 3 - 1))
    out["step_ms"] = step_latency(store, protocol, identity)
    t0 = time.perf_counter()
    ok = store.verify_chains().ok
    out["audit_verify_s"] = time.perf_counter() - t0
    assert ok
    store.close()
    return out


def step_latency(store: Store, protocol: Protocol, identity: Identity) -> float:
    """One signed step through the service (load, replay, authenticate, append)."""
    clock = FixedClock(END + timedelta(days=1))
    bedside = Bedside(store, protocol, clock=clock, identity=identity)
    open_cases = [c for c in store.worklist(WARD + PHARMACY, limit=500) if c.state in WARD[:10]]
    open_cases += store.worklist(PHARMACY, limit=500)
    times = []
    with store.engine.connect() as conn:
        usernames = {r.id: r.username for r in conn.execute(text("SELECT id, username FROM users"))}
    for record in open_cases[:20]:
        view = bedside.load(record.id)
        step = view.case.next_step()
        if step is None:
            continue
        signer = (
            next(
                e.actor
                for e in reversed(view.case.events)
                if e.actor and e.actor.role in step.roles
            )
            if any(e.actor and e.actor.role in step.roles for e in view.case.events)
            else None
        )
        if signer is None:
            continue
        clock.set(max(clock.now(), view.case.events[-1].at) + timedelta(minutes=5))
        values = values_for(view.case, step.id, clock.now())
        proof = Credentials(usernames[signer.user_id], SEED_PASSWORD)
        t0 = time.perf_counter()
        try:
            bedside.sign_step(record.id, view.version, step.id, values, proof)
        except Exception:
            continue
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000 if times else float("nan")


COLUMNS = [
    ("search_text_ms", "search name"),
    ("search_mrn_ms", "search MRN"),
    ("search_page_ms", "newest page"),
    ("worklist_ms", "worklist"),
    ("pharmacy_ms", "pharmacy"),
    ("case_load_ms", "case load"),
    ("step_ms", "step"),
]


def table(backend: str, rows: list[dict[str, float]]) -> None:
    head = f"{'records':>8} {'events':>9} " + " ".join(f"{name:>12}" for _, name in COLUMNS)
    print(f"{backend}: median ms per call (seed s, audit verify s at the end)")
    print(head)
    for r in rows:
        cells = " ".join(f"{r[key]:>12.2f}" for key, _ in COLUMNS)
        print(
            f"{int(r['records']):>8} {int(r['events']):>9} {cells}   "
            f"seed {r['seed_s']:.0f} s, verify {r['audit_verify_s']:.1f} s"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        ratios = " ".join(f"{last[key] / first[key]:>12.2f}" for key, _ in COLUMNS)
        label = f"x{int(last['records'])}/{int(first['records'])}"
        print(f"{label:>18} {ratios}")
    print(flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-servers", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    protocol = load_protocol(default_protocol_path())
    if not args.no_sqlite:
        rows = []
        for size in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(measure(f"sqlite:///{Path(tmp) / 'b.sqlite3'}", protocol, size))
        table("SQLite", rows)
    if not args.no_postgres:
        rows = []
        for size in sizes:
            with pg_database() as url:
                if url is None:
                    print("PostgreSQL: unreachable, skipped")
                    break
                rows.append(measure(url, protocol, size))
        if rows:
            table("PostgreSQL", rows)
    if not args.no_servers:
        from _servers import throughput

        with pg_database() as url:
            throughput(url)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
