"""Command start-up: wall time of whole `bedside` processes, as a person at a terminal pays it.

Each command runs N times in a fresh subprocess (the installed console script, so the figure
includes the interpreter, site-packages and every import); prints median and p95 wall ms, and
a bare `python -c pass` for the floor. The target (issue 15) is 150 ms for `dose` and `--help`.

An installed wheel carries compiled byte code; a development shell here sets
PYTHONDONTWRITEBYTECODE, which makes every run compile Bedside's sources again. The main rows
therefore run with a byte-code cache in a temporary PYTHONPYCACHEPREFIX (the tree is left
untouched); the last row shows `dose` paying the compile each time, for comparison.

    python bench/run.py startup            # 20 runs each
    python bench/bench_startup.py --runs 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("bedside")

COMMANDS: list[tuple[str, list[str]]] = [
    ("python -c pass (floor)", [sys.executable, "-c", "pass"]),
    ("bedside --help", [str(SCRIPT), "--help"]),
    ("bedside dose --weight-kg 70", [str(SCRIPT), "dose", "--weight-kg", "70"]),
    (
        "bedside checklist validate",
        [str(SCRIPT), "checklist", "validate", str(ROOT / "checklists" / "aldesleukin.yaml")],
    ),
]


def wall_ms(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p95 = samples[max(0, round(len(samples) * 0.95) - 1)]
    return statistics.median(samples), p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as cache:
        bare = {**os.environ, "BEDSIDE_HOME": home}
        bare.pop("BEDSIDE_OVERLAY", None)
        env = {**bare, "PYTHONPYCACHEPREFIX": cache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for _, argv in COMMANDS:  # fill the byte-code cache once, outside the figures
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"{'command':<46} {'median ms':>10} {'p95 ms':>8}   ({runs} runs each)")
        rows = [(name, argv, env) for name, argv in COMMANDS]
        rows.append(("bedside dose, compiling its sources each run", COMMANDS[2][1], bare))
        for name, argv, run_env in rows:
            median, p95 = wall_ms(argv, run_env, runs)
            print(f"{name:<46} {median:>10.0f} {p95:>8.0f}")


if __name__ == "__main__":
    main()
