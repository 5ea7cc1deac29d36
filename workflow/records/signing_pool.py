"""Render and sign records in a worker process, so a sign-off does not stall the server.

Rendering and signing a record is about 50 ms of pure-Python CPU (reportlab, pyHanko). Inside
``bedside serve`` that ran under the process's one GIL, so while a nurse's sign-off rendered
its two records every other tablet's request waited (README, Web UI bench). A worker process
does it on another core instead; under ``bedside serve`` the records writer
(workflow/service/records_later.py) asks for them just after the sign-off has answered.

The worker only turns a :class:`RecordDocument` into signed PDF bytes: it never touches the
database or the archive, so killing it (or the server) at any moment cannot leave anything
half-written. A worker that dies or stops answering is replaced, and the record is made in
the calling process instead: a sign-off never fails because of the pool.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from .document import RecordDocument
from .pki import load_signer
from .render import render
from .sign import sign_pdf

# A record takes well under a second; a worker silent for this long is treated as lost.
RESULT_TIMEOUT_S = 60.0
_PARENT_POLL_S = 1.0

# Below the server's own priority (0): see _init_worker.
WORKER_NICENESS = 10

_worker_pki: Path | None = None


def render_and_sign(document: RecordDocument, pki_dir: Path) -> bytes:
    """One record as signed PDF bytes (PAdES B-B by the site's document-signing key)."""
    signer = load_signer(pki_dir)
    return sign_pdf(render(document), signer, reason=f"{document.kind} record", name=signer.name)


def _watch_parent(parent: int) -> None:
    # A server killed with SIGKILL cannot shut its pool down; its worker must not outlive it.
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_S)
    os._exit(0)


def _init_worker(pki_dir: str, parent: int) -> None:
    global _worker_pki
    _worker_pki = Path(pki_dir)
    # Records are made after their sign-off has answered (service/records_later.py): nobody
    # waits on them, so the worker yields the cores to requests (README, Performance: the
    # paced bench's in-session and sign-off p95 were lower with it, in alternating runs).
    if hasattr(os, "nice"):  # POSIX
        os.nice(WORKER_NICENESS)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _in_worker(document: RecordDocument) -> bytes:
    assert _worker_pki is not None, "the pool's initializer sets the signing folder"
    return render_and_sign(document, _worker_pki)


def _ping() -> int:
    return os.getpid()


class SigningPool:
    """A small pool of signing processes for one site's ``pki/`` folder."""

    def __init__(self, pki_dir: Path, workers: int = 1) -> None:
        self.pki_dir = pki_dir
        self.workers = workers
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self.fallbacks = 0  # records made in the calling process after a worker was lost

    def start(self) -> None:
        """Start the workers now (they import reportlab and pyHanko: about a second), so the
        first sign-off does not pay for it."""
        self._pool().submit(_ping).result(timeout=RESULT_TIMEOUT_S)

    def render_and_sign(self, document: RecordDocument) -> bytes:
        pool = self._pool()
        try:
            future: Future[bytes] = pool.submit(_in_worker, document)
            return future.result(timeout=RESULT_TIMEOUT_S)
        except (BrokenProcessPool, FutureTimeout, CancelledError, RuntimeError, OSError) as exc:
            # RuntimeError / CancelledError: the pool was shut down under this request (the
            # server stopping); the record is still made, here.
            self._replace(pool)
            self.fallbacks += 1
            print(
                f"bedside: the record signing worker was lost ({exc.__class__.__name__}); "
                "signing this record in the server process",
                file=sys.stderr,
                flush=True,
            )
            return render_and_sign(document, self.pki_dir)

    def close(self) -> None:
        with self._lock:
            pool, self._executor = self._executor, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def worker_pids(self) -> list[int]:
        """The live workers' process ids (for tests and diagnostics)."""
        with self._lock:
            pool = self._executor
        procs = getattr(pool, "_processes", None) or {}
        return sorted(int(pid) for pid in procs)

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                # spawn, never fork: the server has threads and open database connections.
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker,
                    initargs=(str(self.pki_dir), os.getpid()),
                )
            return self._executor

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                self._executor = None
        broken.shutdown(wait=False, cancel_futures=True)
