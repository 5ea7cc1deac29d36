"""Child process for the crash test: append to one case forever, print each seq once its commit
has returned. The parent kills it with SIGKILL at an arbitrary moment."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from workflow.core.events import STEP_SIGNED, Event, Signer
from workflow.store import open_store

PROTOCOL_HASH = "ab" * 32


def main(url: str, case_id: str) -> None:
    signer = Signer("u-crash", "Crash Tester", "nurse")
    store = open_store(url, upgrade=False)
    version = store.get_case(case_id).version
    at = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    while True:
        seq = version + 1
        at += timedelta(seconds=1)
        event = Event(
            case_id,
            seq,
            STEP_SIGNED,
            at,
            signer,
            {"n": seq, "pad": "x" * 200},
            step="s",
            meaning="performed",
        )
        store.append(
            case_id, version, [event], protocol_version="1.0.0", protocol_hash=PROTOCOL_HASH
        )
        version = seq
        print(seq, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
