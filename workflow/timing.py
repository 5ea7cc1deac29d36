"""Where a request's time goes, phase by phase, for the ``Server-Timing`` response header.

A neutral module: the service and the store add phases (``with phase("append"): ...``) without
knowing about the web; the web starts a recorder per request (``recording()``) and writes what
was recorded into the header (workflow/web/app.py). Outside a request (the CLI, tests, the
signing worker) nothing records and ``phase`` costs one context-variable lookup.

Phases may nest (``commit`` inside ``append``); a phase entered twice in a request adds up
(``commit`` is every write transaction's commit in the request: the append's, the signing
session's, the security log's).

``count_cpu(True)`` (bench/profile_step.py) also counts each phase's CPU time in the thread that
ran it (``time.thread_time``), written as ``<phase>-cpu`` beside the wall times: on a shared
machine the wall times move with the load, the CPU a phase spends much less. Off by default, so
the header a browser sees is unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Server-Timing metric names are HTTP tokens: letters, digits and a few marks, no spaces.
_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class Timings:
    """Seconds spent per phase in one request, in the order phases were first entered; with
    ``cpu``, also the CPU seconds the thread running each phase spent in it."""

    def __init__(self, cpu: bool = False) -> None:
        self.phases: dict[str, float] = {}
        self.cpu: dict[str, float] | None = {} if cpu else None

    def add(self, name: str, seconds: float) -> None:
        if not name or not set(name) <= _TOKEN:
            raise ValueError(f"phase name {name!r} is not an HTTP token")
        self.phases[name] = self.phases.get(name, 0.0) + seconds

    def header(self, total_s: float | None = None) -> str:
        """The ``Server-Timing`` value: ``auth;dur=41.2, append;dur=3.1, ...`` (milliseconds)."""
        parts = [f"{name};dur={seconds * 1000:.1f}" for name, seconds in self.phases.items()]
        if self.cpu is not None:
            parts += [f"{name}-cpu;dur={seconds * 1000:.1f}" for name, seconds in self.cpu.items()]
        if total_s is not None:
            parts.append(f"total;dur={total_s * 1000:.1f}")
        return ", ".join(parts)


_current: ContextVar[Timings | None] = ContextVar("bedside_timings", default=None)
_count_cpu = False


def count_cpu(on: bool) -> None:
    """Count each phase's CPU time too, in every request recorded from now on (a bench's
    switch: one ``thread_time`` call more per phase)."""
    global _count_cpu
    _count_cpu = on


@contextmanager
def recording() -> Iterator[Timings]:
    """Record the phases of the code run inside (one request)."""
    timings = Timings(cpu=_count_cpu)
    token = _current.set(timings)
    try:
        yield timings
    finally:
        _current.reset(token)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as ``name`` when a request is being recorded; otherwise do nothing."""
    timings = _current.get()
    if timings is None:
        yield
        return
    start = time.perf_counter()
    cpu_start = time.thread_time() if timings.cpu is not None else 0.0
    try:
        yield
    finally:
        timings.add(name, time.perf_counter() - start)
        if timings.cpu is not None:
            timings.cpu[name] = timings.cpu.get(name, 0.0) + time.thread_time() - cpu_start
