"""Where a step request's CPU goes: the JSON API's step POSTs, in process, one at a time.

bench_web.py measures latency under 20 clients on a shared machine, where wall time moves with
everyone else's load. This harness measures what one request costs the server instead: the
same app `bedside serve` builds (site key for in-session signatures, the signing worker for the
sign-off's records, default argon2id), driven through FastAPI's TestClient with the bodies
bench_web.py posts, one request at a time, so the process's CPU time around a POST is that
request's (the client's share, TestClient encoding and decoding, is included; the signing
worker's and the database server's are not: they are other processes). It prints per step
kind the CPU ms per request (median / p95) and each phase's CPU (``<phase>-cpu`` from
workflow.timing.count_cpu), then a cProfile (process CPU time, cumulative) of a further batch
of cases, the in-session steps' and the sign-offs' apart, posted through the ASGI app in this
thread so that one profiler sees the whole request.

    python bench/profile_step.py [--cases 20] [--profile-cases 6] [--db sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import io
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastapi.dependencies.utils
import fastapi.routing
import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_web import PG_URL, SIGNER, _p95, prepare

from workflow import timing
from workflow.dev.demo import DEMO_PASSWORD
from workflow.dev.walk import values_for
from workflow.records.pki import create_site_pki
from workflow.records.signing_pool import SigningPool
from workflow.service import Bedside, open_bedside
from workflow.web import WebSettings, create_app

HEAVY = {"double_check_second", "record_sign_off"}
KINDS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("in-session steps", lambda s: s not in HEAVY),
    ("second checker (id + password)", lambda s: s == "double_check_second"),
    ("record sign-off", lambda s: s == "record_sign_off"),
)


class Run:
    """One request's step, its CPU seconds and its Server-Timing header."""

    def __init__(self, step: str, cpu_s: float, header: str) -> None:
        self.step, self.cpu_s, self.header = step, cpu_s, header


# How a step is posted: (path, JSON body, CSRF token, cookies) -> (status, text, Server-Timing).
Post = Callable[[str, dict[str, Any], str, dict[str, str]], tuple[int, str, str]]
# What runs around each POST: (step id, the POST) -> that POST's CPU seconds.
Around = Callable[[str, Callable[[], tuple[int, str, str]]], tuple[tuple[int, str, str], float]]


def serve_like(home: Path, db_url: str | None) -> tuple[Bedside, FastAPI, SigningPool]:
    """The app `bedside serve` runs (workflow/cli/_serve.py), without uvicorn: the sign-off's
    records are made by the records writer just after its answer."""
    bedside = open_bedside(home, db_url)
    pool = SigningPool(home / "pki")
    archive = bedside.open_archive(home, signing=pool)
    bedside.use_site_key(home)
    pool.start()
    bedside.archiver = archive.archive_case
    bedside.write_records_later()
    app = create_app(bedside, WebSettings.for_site(bedside.settings), archive=archive)
    return bedside, app, pool


class Writer:
    """Waits, untimed, after each sign-off for the records writer to make its records, so its
    thread's CPU never lands in the next request's figure; this process's CPU meanwhile is
    what making them costs the server after the answer (the signing worker's is not in it)."""

    def __init__(self, bedside: Bedside) -> None:
        self.bedside = bedside
        self.cpu_s: list[float] = []

    def __call__(self, step: str) -> None:
        writer = self.bedside.records_later
        if step != "record_sign_off" or writer is None:
            return
        c0 = time.process_time()
        if not writer.drain(60):
            raise SystemExit("the records writer did not make a case's records in 60 s")
        self.cpu_s.append(time.process_time() - c0)

    def report(self) -> None:
        if self.cpu_s:
            ms = sorted(x * 1000 for x in self.cpu_s)
            print(
                f"  records made after the sign-off's answer (writer thread): {len(ms)} cases, "
                f"server CPU per case median {statistics.median(ms):.1f} ms, p95 {_p95(ms):.1f} ms"
            )


def client_post(client: TestClient) -> Post:
    def post(
        path: str, body: dict[str, Any], csrf: str, cookies: dict[str, str]
    ) -> tuple[int, str, str]:
        client.cookies.clear()
        for name, value in cookies.items():
            client.cookies.set(name, value)
        r = client.post(path, json=body, headers={"X-CSRF-Token": csrf})
        return r.status_code, r.text, r.headers.get("Server-Timing", "")

    return post


def logins(client: TestClient) -> dict[str, tuple[str, dict[str, str]]]:
    """Each signer's CSRF token and session cookie, as bench_web.py's clients hold them."""
    out = {}
    for user in ("n.alvarez", "t.mensah", "p.lindqvist"):
        client.cookies.clear()
        r = client.post("/api/session", json={"username": user, "password": DEMO_PASSWORD})
        r.raise_for_status()
        out[user] = (str(r.json()["csrf_token"]), dict(client.cookies.items()))
    client.cookies.clear()
    return out


def timed(
    step: str, call: Callable[[], tuple[int, str, str]]
) -> tuple[tuple[int, str, str], float]:
    c0 = time.process_time()
    answer = call()
    return answer, time.process_time() - c0


def walk(
    reader: Bedside,
    post: Post,
    sessions: dict[str, tuple[str, dict[str, str]]],
    cases: list[str],
    around: Around = timed,
    after: Callable[[str], None] = lambda step: None,
) -> list[Run]:
    """Post every step of ``cases`` to the sign-off, as bench_web.py's clients post them."""
    runs = []
    for cid in cases:
        while True:
            view = reader.load(cid)  # the bench client's own read: not timed
            step = view.case.next_step()
            if step is None:
                break
            who = SIGNER[step.id]
            values = values_for(view.case, step.id, datetime.now(UTC) - timedelta(seconds=30))
            body: dict[str, Any] = {
                "expected_version": view.version,
                "values": values,
                "password": DEMO_PASSWORD,
            }
            at = who if who in sessions else "n.alvarez"
            if who not in sessions:
                body["username"] = who  # the second checker signs at the same tablet
            csrf, cookies = sessions[at]
            path = f"/api/cases/{cid}/steps/{step.id}"
            (status, answer, header), cpu = around(
                step.id, functools.partial(post, path, body, csrf, cookies)
            )
            if status != 200:
                raise SystemExit(f"{step.id}: {status} {answer[:300]}")
            runs.append(Run(step.id, cpu, header))
            after(step.id)  # untimed
    return runs


def _phases(header: str) -> dict[str, float]:
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur)
    return out


def report(label: str, runs: list[Run]) -> None:
    print(f"{label}: {len(runs)} step POSTs, one at a time")
    for kind, wanted in KINDS:
        group = [r for r in runs if wanted(r.step)]
        if not group:
            continue
        ms = sorted(r.cpu_s * 1000 for r in group)
        print(
            f"  {kind}: {len(ms)} POSTs, server CPU per request median {statistics.median(ms):.1f}"
            f" ms, p95 {_p95(ms):.1f} ms"
        )
        by_phase: dict[str, list[float]] = {}
        for r in group:
            for name, dur in _phases(r.header).items():
                by_phase.setdefault(name, []).append(dur)
        for title, cpu in (("CPU", True), ("wall", False)):
            print(
                f"    phases' {title} median / p95 ms: "
                + ", ".join(
                    f"{n.removesuffix('-cpu')} {statistics.median(v):.1f} / {_p95(sorted(v)):.1f}"
                    for n, v in by_phase.items()
                    if n.endswith("-cpu") == cpu
                )
            )


async def _inline(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


def inline_post(app: FastAPI) -> tuple[Post, Callable[[], None]]:
    """Posts through the ASGI app in this thread, FastAPI's thread pool hops made calls, so one
    cProfile sees a whole request (the TestClient runs the app in threads a profiler enabled
    here does not see). For the profile only: the CPU figures come from ``client_post``."""
    saved = fastapi.routing.run_in_threadpool, fastapi.dependencies.utils.run_in_threadpool
    fastapi.routing.run_in_threadpool = _inline  # type: ignore[assignment]
    fastapi.dependencies.utils.run_in_threadpool = _inline  # type: ignore[assignment]
    loop = asyncio.new_event_loop()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")

    def post(
        path: str, body: dict[str, Any], csrf: str, cookies: dict[str, str]
    ) -> tuple[int, str, str]:
        client.cookies.clear()
        for name, value in cookies.items():
            client.cookies.set(name, value)
        coro = client.post(path, json=body, headers={"X-CSRF-Token": csrf})
        r = loop.run_until_complete(coro)
        return r.status_code, r.text, r.headers.get("Server-Timing", "")

    def close() -> None:
        loop.run_until_complete(client.aclose())
        loop.close()
        fastapi.routing.run_in_threadpool, fastapi.dependencies.utils.run_in_threadpool = saved

    return post, close


def print_profile(label: str, prof: cProfile.Profile, top: int, dump: str | None) -> None:
    if dump:  # for pstats or snakeviz: the whole profile, not only its top lines
        prof.dump_stats(f"{dump}-{label.replace(' ', '_').replace(',', '')}.prof")
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        # Only the app's and the libraries' frames: the event loop's and this harness's wrap
        # every request and would fill the top of the cumulative list.
        pstats.Stats(prof, stream=out).sort_stats(order).print_stats(r"workflow|site-packages", top)
        text_ = out.getvalue()
        print(f"--- cProfile, {label} (CPU time, {order}) ---")
        print(text_[text_.index("ncalls") :] if "ncalls" in text_ else text_)


def bench(
    label: str, db_url: str | None, n_cases: int, n_profiled: int, top: int, dump: str | None
) -> None:
    home = Path(tempfile.mkdtemp(prefix="bedside-profile-"))
    create_site_pki(home / "pki", organisation="Bench site")
    setup = open_bedside(home, db_url, archive=False)
    cases = prepare(setup, 1 + n_cases + n_profiled)
    # The bench's clients read each case (for the next step's values) through a store of their
    # own, as bench_web.py's do from another process: the server's store sees only its loads.
    reader = setup
    bedside, app, pool = serve_like(home, db_url)
    try:
        with TestClient(app) as client:
            sessions = logins(client)
            post = client_post(client)
            writer = Writer(bedside)
            walk(reader, post, sessions, cases[:1], after=writer)  # warm: imports, argon2
            writer.cpu_s.clear()
            timing.count_cpu(True)
            report(label, walk(reader, post, sessions, cases[1 : n_cases + 1], after=writer))
            timing.count_cpu(False)
            writer.report()
        if n_profiled:
            steps, signoffs = (cProfile.Profile(time.process_time) for _ in range(2))

            def around(
                step: str, call: Callable[[], tuple[int, str, str]]
            ) -> tuple[tuple[int, str, str], float]:
                prof = signoffs if step == "record_sign_off" else steps
                if step == "double_check_second":  # argon2id: known, and not in-session
                    return call(), 0.0
                prof.enable()
                try:
                    return call(), 0.0
                finally:
                    prof.disable()

            inline, close = inline_post(app)
            try:
                walk(reader, inline, sessions, cases[n_cases + 1 :], around, Writer(bedside))
            finally:
                close()
            print_profile(f"{label}, in-session steps of {n_profiled} cases", steps, top, dump)
            print_profile(f"{label}, {n_profiled} record sign-offs", signoffs, top, dump)
    finally:
        if bedside.records_later is not None:
            bedside.records_later.close()
        pool.close()
        bedside.store.close()
        reader.store.close()
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=20, help="cases timed (11 steps each)")
    parser.add_argument("--profile-cases", type=int, default=6, help="cases under cProfile")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--top", type=int, default=35, help="cProfile lines printed")
    parser.add_argument("--dump", help="also write each profile to <DUMP>-<label>.prof")
    args = parser.parse_args()
    if args.db in ("sqlite", "both"):
        bench("SQLite", None, args.cases, args.profile_cases, args.top, args.dump)
    if args.db in ("postgres", "both"):
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        name = f"bedside_profile_{uuid.uuid4().hex[:8]}"
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:
            print(f"PostgreSQL: skipped ({exc.__class__.__name__})")
            return 0
        try:
            url = make_url(PG_URL).set(database=name).render_as_string(False)
            bench("PostgreSQL", url, args.cases, args.profile_cases, args.top, args.dump)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
