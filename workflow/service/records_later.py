"""The records writer: a closing step's records are made just after it, not inside its request.

Rendering and signing a case's two records takes the signing worker ~50 ms of CPU each, and
under load sign-offs queued for that one worker inside their requests (README, the #15 table:
a sign-off's p95 was a second). The closing step is committed before its records are made, and
"ended without records" is already a known, durable state (``Bedside.unarchived_cases``, made
by ``archive catch-up`` and every server start), so a server hands the case id to this writer
and answers at once; the page says the records are being made.

One daemon thread per server takes case ids from a queue (a case queued twice is made once)
and archives each with the archiver the inline path uses (archiving is idempotent). The store
is safe to use from this thread while FastAPI's pool uses it: every store call takes a pooled
connection of its own (a transaction bound by ``Store.atomic`` is per thread, a ContextVar).

- A refusal (BedsideError) is logged loudly and remembered: the case stays "ended without
  records" for ``archive catch-up`` or the next start, as an inline failure leaves it.
- ``close`` (a clean shutdown) drains what is queued within a bounded time; what is left, and
  everything a kill leaves, the start-up catch-up makes (workflow/cli/_serve.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from workflow.core.errors import BedsideError

log = logging.getLogger("bedside")

# Failures remembered for the pages (a case archived since is shown archived: the index wins).
FAILURES_KEPT = 10_000

# How long a clean shutdown waits for the queued records. A case takes well under a second
# (two records in the signing worker); this covers a busy ward's backlog, and stays inside
# what a service manager allows a stopping server (systemd: 90 s) before it kills it.
DRAIN_S = 20.0


class RecordsWriter:
    """Makes the records of ended cases, by id, one at a time in a thread of its own.

    ``make(case_id)`` archives one case's records or raises BedsideError (Bedside.archive_case).
    Case ids may be submitted before :meth:`start`: they wait (tests use this to see a case
    whose records are not yet made)."""

    def __init__(self, make: Callable[[str], object], *, drain_s: float = DRAIN_S) -> None:
        self._make = make
        self.drain_s = drain_s
        self._lock = threading.Condition()
        self._queue: deque[str] = deque()
        # Queued or being made now, in the order submitted (a dict keeps it; a set would not).
        self._held: dict[str, None] = {}
        self._failed: dict[str, str] = {}  # case id -> why its records were not made
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- what the service asks -------------------------------------------------------------
    def submit(self, case_id: str) -> None:
        """Make this case's records soon. A case already waiting is not queued twice."""
        with self._lock:
            if case_id in self._held:
                return
            self._failed.pop(case_id, None)  # tried again (a later closing event of it)
            self._held[case_id] = None
            self._queue.append(case_id)
            self._lock.notify_all()

    def holds(self, case_id: str) -> bool:
        """True while this case's records wait in the queue or are being made, and the writer
        will make them (not once it was stopped: a stopped writer makes nothing more)."""
        with self._lock:
            return case_id in self._held and not self._stopping

    def failure(self, case_id: str) -> str | None:
        """Why this writer could not make the case's records (None: it did not fail them)."""
        with self._lock:
            return self._failed.get(case_id)

    def note_failures(self, refused: dict[str, str]) -> None:
        """Cases whose records were refused elsewhere in this server (the start-up catch-up),
        so the pages say so instead of "being made"."""
        with self._lock:
            self._failed.update(refused)

    def queued(self) -> list[str]:
        """The case ids waiting or being made now, oldest first."""
        with self._lock:
            return list(self._held)

    # -- running ---------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="bedside-records", daemon=True)
            self._thread.start()

    def drain(self, timeout: float) -> bool:
        """Wait until every case submitted so far is made (or failed); False if ``timeout``
        seconds passed first. Tests wait on this instead of sleeping."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._held:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._lock.wait(left)
            return True

    def close(self) -> list[str]:
        """A clean shutdown: make what is queued within ``drain_s`` seconds, then stop. Returns
        the case ids left (the next start's catch-up makes them), logged."""
        self.drain(self.drain_s)
        left = self.stop()
        if left:
            log.warning(
                "records of %d ended case(s) not made before shutdown; the next start makes "
                "them (or `bedside archive catch-up`): %s",
                len(left),
                ", ".join(left),
            )
        return left

    def stop(self) -> list[str]:
        """Stop after the case being made now, leaving the rest queued: what a kill leaves
        (the start-up catch-up makes them). Returns the case ids left."""
        with self._lock:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._lock.notify_all()
        if thread is not None:
            thread.join(timeout=self.drain_s)
        with self._lock:
            return list(self._held)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                case_id = self._queue.popleft()
            failure = self._make_one(case_id)
            with self._lock:
                if failure is not None:
                    if len(self._failed) >= FAILURES_KEPT:
                        self._failed.pop(next(iter(self._failed)))
                    self._failed[case_id] = failure
                self._held.pop(case_id, None)
                self._lock.notify_all()

    def _make_one(self, case_id: str) -> str | None:
        try:
            self._make(case_id)
        except BedsideError as exc:
            # The closing step stands; the case is "ended without records", as after an inline
            # failure: `archive catch-up` (or the next start) makes them, `archive verify`
            # reports them meanwhile.
            log.error("case %s ended but its records were not made: %s", case_id, exc.message)
            return exc.message
        except Exception as exc:  # a bug must not end the thread: later cases still get records
            log.exception("case %s ended but making its records failed", case_id)
            return f"{exc.__class__.__name__}: {exc}"
        return None
