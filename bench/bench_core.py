"""Core costs: protocol load and validation, the dose plan, a whole dose walk, and replay."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from workflow.core.dosing import plan_dose
from workflow.core.machine import Case
from workflow.core.protocol import load_protocol
from workflow.dev.demo import run_in_memory
from workflow.resources import default_protocol_path


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.95) - 1] * 1000


def main() -> None:
    path = default_protocol_path()
    protocol = load_protocol(path)
    start = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    cases = run_in_memory(protocol, 1, start)
    events = cases[0].events
    rows = [
        ("protocol load + full validation", timed(lambda: load_protocol(path), 30)),
        ("dose plan (70 kg)", timed(lambda: plan_dose(protocol, "70"), 2000)),
        ("case machine construction", timed(lambda: Case(protocol, "x"), 200)),
        (
            f"replay one dose ({len(events)} events)",
            timed(lambda: Case.replay(protocol, cases[0].case_id, events), 100),
        ),
        ("walk one complete dose in memory", timed(lambda: run_in_memory(protocol, 1, start), 30)),
    ]
    print(f"{'operation':<40} {'median ms':>10} {'p95 ms':>10}")
    for name, (median, p95) in rows:
        print(f"{name:<40} {median:>10.3f} {p95:>10.3f}")


if __name__ == "__main__":
    main()
