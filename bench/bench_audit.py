"""`audit verify` throughput: the whole log walked and every check made, on SQLite and
PostgreSQL, over a log seeded by `bedside dev seed`'s generator. Prints events/s (per wall
second and per CPU second of this process and the database's client work) and the
1,000,000-event projection.

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


def measure(url: str, doses: int, runs: int) -> tuple[int, float, float]:
    """(events, best events per wall second, events per CPU second of that run)."""
    store = open_store(url, clock=FixedClock(END))
    identity = Identity(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    protocol = load_protocol(default_protocol_path())
    seed(
        store,
        protocol,
        patients=max(1, doses // 25),
        doses=doses,
        end=END,
        identity=identity,
        signed_sample=0,
    )
    best = (0.0, 0.0)
    events = 0
    for _ in range(runs):
        before, wall = os.times(), time.perf_counter()
        report = store.verify_chains()
        after, wall = os.times(), time.perf_counter() - wall
        assert report.ok, report.first_problem
        events = report.events_checked
        cpu = sum(after[:4]) - sum(before[:4])
        if events / wall > best[0]:
            best = (events / wall, events / cpu)
    store.close()
    return events, best[0], best[1]


def show(backend: str, events: int, wall_rate: float, cpu_rate: float) -> None:
    print(
        f"{backend:<10} {events:>7} events: {wall_rate:>9,.0f} events/s wall, "
        f"{cpu_rate:>9,.0f} per CPU second; 1,000,000 events: "
        f"{1_000_000 / wall_rate:.1f} s (target >= 100,000 events/s, 10 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--doses", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        show("sqlite", *measure(f"sqlite:///{tmp}/audit.db", args.doses, args.runs))
    if not args.no_postgres:
        with pg_database() as url:
            if url is None:
                print("postgresql: not reachable, skipped")
            else:
                show("postgresql", *measure(url, args.doses, args.runs))


if __name__ == "__main__":
    main()
