"""Ward board and pharmacy queue (issue 12): how long one reading takes on a seeded ward.

    python bench/bench_board.py [--patients N] [--doses M] [--runs R]

Seeds a fresh SQLite database with the development seeder (patients with a year of doses,
one dose open per patient at a random step), then times ``Bedside.ward_board`` and
``Bedside.pharmacy_queue`` (every open dose replayed from its hash-checked events) and the
pages and JSON that show them (``/ward``, ``/api/ward``, ``/pharmacy``) through FastAPI's test
client, signed in. Prints the rows shown and the median and 95th percentile per reading.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from workflow.core.clock import FixedClock
from workflow.core.protocol import load_protocol
from workflow.dev.demo import DEMO_PASSWORD, ensure_demo_people
from workflow.dev.seed import seed
from workflow.identity import Identity
from workflow.resources import default_protocol_path
from workflow.service import Bedside
from workflow.store import open_store
from workflow.web import WebSettings, create_app


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and p95 in milliseconds over ``runs`` calls (after one warm-up)."""
    fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.95 * len(samples)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--doses", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clock = FixedClock(datetime.now(UTC).replace(microsecond=0))
        store = open_store(f"sqlite:///{Path(tmp) / 'board.sqlite3'}", clock=clock)
        hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        identity = Identity(store, hasher=hasher)
        protocol = load_protocol(default_protocol_path())
        t0 = time.perf_counter()
        report = seed(store, protocol, patients=args.patients, doses=args.doses, identity=identity)
        print(
            f"seeded {args.patients} patients, {args.doses} doses in "
            f"{time.perf_counter() - t0:.1f} s ({report})"
        )
        bedside = Bedside(store, protocol, clock=clock, identity=identity)
        ensure_demo_people(bedside)
        rows = bedside.ward_board()
        queue = bedside.pharmacy_queue()
        print(f"ward board: {len(rows)} doses; pharmacy queue: {len(queue.rows)} doses")
        for label, fn in (
            ("Bedside.ward_board", bedside.ward_board),
            ("Bedside.pharmacy_queue", bedside.pharmacy_queue),
        ):
            med, p95 = timed(fn, args.runs)
            print(f"{label:<24} median {med:7.1f} ms  p95 {p95:7.1f} ms")
        app = create_app(bedside, WebSettings())
        with TestClient(app) as client:
            for who, paths in (
                ("n.alvarez", ("/ward", "/api/ward")),
                ("p.lindqvist", ("/pharmacy", "/api/pharmacy")),
            ):
                r = client.post("/api/session", json={"username": who, "password": DEMO_PASSWORD})
                assert r.status_code == 200, r.text
                for path in paths:
                    med, p95 = timed(lambda p=path: client.get(p).raise_for_status(), args.runs)
                    print(f"GET {path:<20} median {med:7.1f} ms  p95 {p95:7.1f} ms")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
