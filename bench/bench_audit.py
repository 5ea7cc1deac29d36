"""`audit verify` throughput: the whole log walked and every check made, on SQLite and
PostgreSQL, over a log seeded by `bedside dev seed`'s generator: the full event-by-event walk
alone (the path before the quick pass, the yardstick), the quick pass in this process (`audit
verify --jobs 1`) and in two worker processes (`--jobs 2`). Prints events/s per wall second and
per CPU second of this process and its workers (PostgreSQL's own server processes are not
counted), and the 1,000,000-event projection.

    python bench/bench_audit.py [--doses 1000] [--runs 3] [--no-postgres]

Target: >= 100,000 events/s on both databases.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

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
from workflow.store import open_store  # noqa: E402


def measure(url: str, doses: int, runs: int) -> None:
    """Seed a log, then walk it each way, best of ``runs``: the full walk alone (the old path,
    the yardstick), the quick pass in this process, and in two worker processes."""
    store = open_store(url, clock=FixedClock(END))
    identity = Identity(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    protocol = load_protocol(default_protocol_path())
    seeded = time.perf_counter()
    seed(
        store,
        protocol,
        patients=max(1, doses // 25),
        doses=doses,
        end=END,
        identity=identity,
        signed_sample=0,
    )
    print(f"  seeded in {time.perf_counter() - seeded:.0f} s")
    backend = store.dialect
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure(f"sqlite:///{tmp}/audit.db", args.doses, args.runs)
    if not args.no_postgres:
        with pg_database() as url:
            if url is None:
                print("postgresql: not reachable, skipped")
            else:
                measure(url, args.doses, args.runs)


if __name__ == "__main__":
    main()
