"""Racing writers and a writer killed mid-stream: nothing half-written, every ack durable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from workflow.core.clock import FixedClock
from workflow.core.errors import ConflictError
from workflow.core.events import STEP_SIGNED, Event, Signer
from workflow.store import Store

from .helpers import PROTOCOL_HASH, PROTOCOL_VERSION, course_for_new_patient, open_case

WRITERS = 4
ROUNDS = 5


def test_racing_writers_exactly_one_wins(store: Store, clock: FixedClock) -> None:
    case = open_case(store, course_for_new_patient(store))
    for round_ in range(ROUNDS):
        version = store.get_case(case.id).version
        barrier = threading.Barrier(WRITERS)
        outcomes: dict[int, str] = {}

        def write(
            writer: int,
            version: int = version,
            barrier: threading.Barrier = barrier,
            outcomes: dict[int, str] = outcomes,
        ) -> None:
            who = Signer(f"u{writer}", f"Writer {writer}", "nurse")
            batch = [
                Event(
                    case.id,
                    version + k,
                    STEP_SIGNED,
                    clock.now(),
                    who,
                    {"writer": writer, "k": k},
                    step="s",
                    meaning="performed",
                )
                for k in (1, 2, 3)  # three events: all or none must land
            ]
            barrier.wait()
            try:
                store.append(
                    case.id,
                    version,
                    batch,
                    protocol_version=PROTOCOL_VERSION,
                    protocol_hash=PROTOCOL_HASH,
                )
                outcomes[writer] = "won"
            except ConflictError as exc:
                outcomes[writer] = "conflict: " + exc.message

        threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        winners = [w for w, o in outcomes.items() if o == "won"]
        assert len(outcomes) == WRITERS, outcomes
        assert len(winners) == 1, (round_, outcomes)
        assert all(
            o == "conflict: this case changed, reload"
            for w, o in outcomes.items()
            if w != winners[0]
        )
        events = store.load_events(case.id)
        assert len(events) == version + 3
        assert {e.data["writer"] for e in events[version:]} == {winners[0]}
    assert store.verify_chains().ok
    assert len(store.load_signatures(case.id)) == 3 * ROUNDS


def test_killed_writer_loses_no_acknowledged_append(store: Store, db_url: str) -> None:
    """Kill a writer three times in a row; each new writer resumes after the last commit."""
    case = open_case(store, course_for_new_patient(store))
    acked: list[int] = []
    for _ in range(3):
        acked += _run_and_kill(db_url, case.id, acks=30)
        events = store.load_events(case.id)  # verifies the case's chain while loading
        seqs = [e.seq for e in events]
        assert seqs == list(range(1, len(seqs) + 1))
        assert set(acked) <= set(seqs)
        # At most the append in flight at each kill may have committed without its ack.
        assert acked[-1] <= seqs[-1] <= acked[-1] + 1
        assert store.verify_chains().ok


def _run_and_kill(db_url: str, case_id: str, acks: int) -> list[int]:
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("crash_child.py")), db_url, case_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.stdout is not None
    acked: list[int] = []
    deadline = time.monotonic() + 20
    try:
        while len(acked) < acks and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked.append(int(line))
    finally:
        child.send_signal(signal.SIGKILL)  # mid-append, most likely: it never stops writing
        rest, err = child.communicate(timeout=20)
    acked += [int(x) for x in rest.split()]  # printed before the kill: committed too
    assert len(acked) >= acks, err
    return acked
