"""Cases as last replayed, so a load replays only the events added since.

Replaying re-judges every event of a case (items, rules, the double check: core/case_replay.py),
the biggest share of a step request's CPU after the framework's (bench/profile_step.py), while
a step adds one event. Replay is a function of the protocol and the events alone, so this keeps,
per case, the Case its last load replayed with the protocol object it replayed on and the chain
hash of its last event, and a load whose events up to that position have that hash (the store
walked the chain: the hash of event n stands for events 1..n, their content and signatures)
applies only the events after it, through the same ``apply`` a full replay uses.

Safety: what a load returns is the caller's own copy (Case.copy: nothing mutable shared, its
events the ones the caller's load decoded); the kept case is changed only by the thread that
took it out of the cache (``_take`` removes it under the lock; it is put back after), so no
two threads ever touch one Case. Any difference in the rows (an edit, a removal, another
protocol object: a new site formulary) misses and replays in full, and a kept case that fails
to take the new events is dropped and the load replays in full, so its error is the one a load
without this cache raises. Bounded: least recently used cases go first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from workflow.core.case_copy import copied
from workflow.core.events import Event
from workflow.core.machine import Case
from workflow.core.protocol import Protocol

# Cases kept: a ward's open doses and then some (a whole dose's case is some tens of KB).
SIZE = 256


@dataclass
class _Kept:
    protocol: Protocol
    case: Case  # owned by the cache, or by the one thread that took it out
    last_hash: str  # the chain hash of case.events[-1]


class ReplayedCases:
    def __init__(self, size: int = SIZE) -> None:
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self.hits = 0  # loads that replayed only new events (for tests and benches)

    def replay(
        self, protocol: Protocol, case_id: str, events: Sequence[Event], hashes: Sequence[str]
    ) -> Case:
        """``Case.replay(protocol, case_id, events)``; ``hashes``: each event's chain hash as
        the store's checked walk read it."""
        if len(hashes) != len(events):
            raise ValueError(f"{len(hashes)} chain hashes for {len(events)} events")
        kept = self._take(case_id)
        if kept is not None and self._extends(kept, protocol, hashes):
            try:
                # Copies: the kept case's events must not be the caller's.
                for event in events[len(kept.case.events) :]:
                    kept.case.apply(copied(event, {}))
            except Exception:  # the full replay below raises what a load without the cache raises
                kept = None
            else:
                kept.last_hash = hashes[-1]
                mine = kept.case.copy(events)  # before it is put back: then others may take it
                self._put(case_id, kept, hit=True)
                return mine
        case = Case.replay(protocol, case_id, events)
        if events:
            self._put(case_id, _Kept(protocol, case.copy(), hashes[-1]))
        return case

    @staticmethod
    def _extends(kept: _Kept, protocol: Protocol, hashes: Sequence[str]) -> bool:
        n = len(kept.case.events)
        return (
            kept.protocol is protocol and 0 < n <= len(hashes) and hashes[n - 1] == kept.last_hash
        )

    def _take(self, case_id: str) -> _Kept | None:
        with self._lock:
            return self._kept.pop(case_id, None)

    def _put(self, case_id: str, kept: _Kept, hit: bool = False) -> None:
        with self._lock:
            self.hits += hit
            self._kept[case_id] = kept  # another thread's, put meanwhile, is as good: replaced
            self._kept.move_to_end(case_id)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)

    def forget(self) -> None:
        with self._lock:
            self._kept.clear()

    def __len__(self) -> int:
        return len(self._kept)
