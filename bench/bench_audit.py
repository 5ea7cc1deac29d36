"""`audit verify` throughput: the whole log walked and every check made, on SQLite and
PostgreSQL, over a log seeded by `bedside dev seed`'s generator: the full event-by-event walk
alone (the path before the quick pass, the yardstick), the quick pass in this process (`audit
verify --jobs 1`) and in two worker processes (`--jobs 2`). Prints events/s per wall second and
per CPU second of this process and its workers (PostgreSQL's own server processes are not
counted), and the 1,000,000-event projection.

    python bench/bench_audit.py [--doses 1000] [--runs 3] [--no-postgres] [--db URL ...]
    python bench/bench_audit.py --doses 7000 --keep big.db --keep-pg bedside_audit_big
    python bench/bench_audit.py --db sqlite:///big.db --db postgresql://.../bedside_audit_big

Seeding 7,000 doses takes minutes: ``--keep``/``--keep-pg`` keep the seeded logs (a SQLite
file, a PostgreSQL database of that name beside the test one) for ``--db`` to walk again.

Target: >= 100,000 events/s on both databases.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

from argon2 import PasswordHasher

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_scale import END, pg_database  # noqa: E402

from workflow.core.clock import FixedClock  # noqa: E402
from workflow.core.protocol import load_protocol  # noqa: E402
from workflow.dev.seed import seed  # noqa: E402
from workflow.identity import Identity  # noqa: E402
from workflow.resources import default_protocol_path  # noqa: E402
from workflow.store import Store, open_store, verify_quick  # noqa: E402


def measure(url: str, doses: int, runs: int) -> None:
    """Seed a log (``doses`` 0: use the one at ``url``), then walk it each way, best of
    ``runs``: the full walk alone (the old path, the yardstick), the quick pass in this
    process, and in two worker processes."""
    store = open_store(url, clock=FixedClock(END))
    if not doses and store.log_head()[0] == 0:
        store.close()
        refuse(f"{url}: the event log is empty; seed one first (--doses N with --keep PATH)")
    if doses:
        hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        seeded = time.perf_counter()
        seed(
            store,
            load_protocol(default_protocol_path()),
            patients=max(1, doses // 25),
            doses=doses,
            end=END,
            identity=Identity(store, hasher=hasher),
            signed_sample=0,
        )
        print(f"  seeded in {time.perf_counter() - seeded:.0f} s")
    backend = store.dialect
    floors(store, runs)
    for label, jobs, quick in (
        ("full walk", 1, False),
        ("--jobs 1", 1, True),
        ("--jobs 2", 2, True),
    ):
        best = (0.0, 0.0)
        events = 0
        for _ in range(runs):
            before, wall = os.times(), time.perf_counter()
            report = store.verify_chains(jobs=jobs, quick=quick)
            after, wall = os.times(), time.perf_counter() - wall
            assert report.ok, report.first_problem
            events = report.events_checked
            cpu = sum(after[:4]) - sum(before[:4])  # this process and its workers
            if events / wall > best[0]:
                best = (events / wall, events / cpu)
        show(f"{backend} {label}", events, *best)
    store.close()


def refuse(message: str) -> NoReturn:
    """Bad input: the message on stderr, exit 2."""
    print(message, file=sys.stderr)
    sys.exit(2)


def floors(store: Store, runs: int) -> None:
    """The limits the quick pass is compared with, per CPU second: the database driver handing
    over the same columns (events and signatures, no checks), and the three SHA-256 an event
    needs alone (over buffers the size of the average event's inputs)."""
    dialect = store.dialect
    events_sql, sigs_sql = verify_quick.range_sql(dialect)
    length, _ = store.log_head()
    best = 0.0
    for _ in range(runs):
        raw = store.engine.raw_connection()
        try:
            before = time.process_time()
            cur = raw.cursor()
            cur.execute(sigs_sql, (1, length))
            cur.fetchall()
            cur.close()
            cur = raw.driver_connection.cursor()  # type: ignore[union-attr]
            if dialect == "postgresql" and verify_quick._chunked_rows():  # as the pass reads
                rows = cur.stream(events_sql, (1, length), size=verify_quick._FETCH)
            else:
                rows = cur.execute(events_sql, (1, length))
            data_bytes = n = 0
            for row in rows:
                n += 1
                data_bytes += len(row[6])
            cur.close()
            best = max(best, n / (time.process_time() - before))
        finally:
            raw.rollback()
            raw.close()
    average = data_bytes // max(1, n)
    event = b"x" * (average + 330)  # the event's JSON around its data
    record = b"x" * (len(event) + 64 + 130 + 250)  # prev hash, protocol, one signature
    link = b"x" * 140
    sha256 = hashlib.sha256
    before = time.process_time()
    for _ in range(100_000):
        sha256(event).hexdigest()
        sha256(record).hexdigest()
        sha256(link).hexdigest()
    hashing = 100_000 / (time.process_time() - before)
    print(
        f"{dialect} floors, per CPU second: the driver reading the columns {best:,.0f} "
        f"events/s; the three SHA-256 alone {hashing:,.0f} events/s (data {average} bytes)"
    )


def show(label: str, events: int, wall_rate: float, cpu_rate: float) -> None:
    print(
        f"{label:<22} {events:>7} events: {wall_rate:>9,.0f} events/s wall, "
        f"{cpu_rate:>9,.0f} per CPU second; 1,000,000 events: "
        f"{1_000_000 / wall_rate:.1f} s wall, {1_000_000 / cpu_rate:.1f} CPU-s "
        "(target >= 100,000 events/s: 10 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--doses", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--db", action="append", default=[], metavar="URL", help="walk this seeded log instead"
    )
    parser.add_argument(
        "--keep", type=Path, metavar="PATH", help="seed the SQLite log into this new file, kept"
    )
    parser.add_argument(
        "--keep-pg", metavar="NAME", help="seed the PostgreSQL log into this new database, kept"
    )
    args = parser.parse_args()
    if args.db:
        for url in args.db:
            measure(url, 0, args.runs)
        return
    if args.keep is not None:
        if args.keep.exists():
            refuse(f"--keep {args.keep}: the file exists; walk it with --db sqlite:///PATH")
        measure(f"sqlite:///{args.keep.resolve()}", args.doses, args.runs)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            measure(f"sqlite:///{tmp}/audit.db", args.doses, args.runs)
    if not args.no_postgres:
        with pg_database(keep=args.keep_pg) as url:
            if url is None:
                print("postgresql: not reachable, skipped")
            else:
                measure(url, args.doses, args.runs)
                if args.keep_pg:
                    print(f"  kept: {url}")


if __name__ == "__main__":
    main()
