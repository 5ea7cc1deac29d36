"""Memory of `bedside serve` over a long run: resident memory of the server and of its record
signing worker after every 1,000 signed steps, up to 10,000 (issue 15.6). Growth beyond noise
is a leak: caches that keep every case, every session or every rendered record.

    python bench/bench_memory.py [--steps 10000] [--every 1000] [--db URL]

Same set-up as bench_web.py (a real `bedside serve` subprocess on loopback, real argon2id
password proofs, two signed PDF records per finished case); four clients post steps back to
back. Cases are prepared in batches through the service in this process (not measured).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

# bench/ itself, also when bench/run.py runs this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_web import children_rss_kib, free_port, prepare, rss_kib, run_client

from workflow.records.pki import create_site_pki
from workflow.service import open_bedside

CLIENTS = 4
BATCH_CASES = 20  # 11 steps each from the pre-dose checks


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--db", default=None, help="database URL (default: SQLite in the home)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bedside-memory-bench-"))
    create_site_pki(home / "pki", organisation="Bench site")
    bedside = open_bedside(home, args.db, archive=False)
    port = free_port()
    cmd = [sys.executable, "-m", "workflow.cli", "--home", str(home)]
    if args.db:
        cmd += ["--db", args.db]
    server = subprocess.Popen([*cmd, "serve", "--port", str(port)], stdout=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            if server.poll() is not None:
                raise SystemExit(f"bedside serve exited with {server.returncode}")
            try:
                httpx.get(base + "/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        print(
            f"`bedside serve` resident memory, {args.db or 'SQLite'}; "
            f"at start: server {rss_kib(server.pid) / 1024:.0f} MiB"
        )
        print(f"{'steps':>7} {'server MiB':>11} {'worker MiB':>11} {'steps/s':>8}")
        latencies: list[tuple[str, float]] = []
        errors: list[str] = []
        phases: list[tuple[str, str]] = []
        next_report = args.every
        started = time.perf_counter()
        first: tuple[float, float] | None = None
        while len(latencies) < args.steps and not errors:
            cases = prepare(bedside, BATCH_CASES)
            threads = [
                threading.Thread(
                    target=run_client,
                    args=(base, bedside, cases[i::CLIENTS], latencies, errors, 0.0, i, phases),
                )
                for i in range(CLIENTS)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            phases.clear()  # only the counts matter here
            while len(latencies) >= next_report:
                server_mib = rss_kib(server.pid) / 1024
                worker_mib = children_rss_kib(server.pid) / 1024
                rate = len(latencies) / (time.perf_counter() - started)
                print(f"{len(latencies):>7} {server_mib:>11.0f} {worker_mib:>11.0f} {rate:>8.1f}")
                first = first or (server_mib, worker_mib)
                next_report += args.every
        if first is not None:
            server_mib = rss_kib(server.pid) / 1024
            worker_mib = children_rss_kib(server.pid) / 1024
            print(
                f"growth from the first report to the end: server {server_mib - first[0]:+.0f} "
                f"MiB, signing worker {worker_mib - first[1]:+.0f} MiB; errors {len(errors)}"
            )
        for e in errors[:5]:
            print("  error:", e)
    finally:
        server.terminate()
        server.wait(timeout=10)
        bedside.store.close()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
