"""How much of each case's stored log this process has already proven by walking its chain.

Loading a case checks its chain (every event's hash over its content and signatures, its link
to the one before, no gap, the case's version) so nobody replays a case whose log was altered.
That walk hashed the canonical JSON of every event of the case again on every request, about a
tenth of a step request's CPU (bench/profile_step.py), while a step only adds one event.

The walk goes event by event, and its verdict on events 1..k is a function of their rows alone
(every column of each event row and of its signature rows). So this keeps, per case, the rows
of the events a walk last passed, and a load walks only from the first event whose rows are not,
column for column, the rows proven at that position, starting from the proven hash before it:
after one step that is the new event alone. A changed, removed or inserted row anywhere differs
from the proven one at its position, so the walk starts there and names the break as a full
walk would; the version check is made on every load. Nothing decoded is kept or shared: each
load decodes its own events from the rows it just read. Bounded (least recently used cases);
a lock guards it because requests load cases from many threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence

# Cases remembered: a ward's open doses and then some; each is one case's rows (about 20 KB for
# a whole dose).
SIZE = 256


class ProvenChains:
    """Per case id, the rows (one hashable key per event, in order) a chain walk last passed."""

    def __init__(self, size: int = SIZE) -> None:
        self._rows: OrderedDict[str, tuple[Hashable, ...]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def prefix(self, case_id: str, rows: Sequence[Hashable]) -> int:
        """How many of ``rows``, from the first, equal the rows proven at the same positions."""
        with self._lock:
            known = self._rows.get(case_id, ())
            if known:
                self._rows.move_to_end(case_id)
        n = 0
        for proven, row in zip(known, rows, strict=False):
            if proven != row:
                break
            n += 1
        return n

    def remember(self, case_id: str, rows: Sequence[Hashable]) -> None:
        """Record ``rows`` as proven: only after a walk passed every one of exactly these."""
        with self._lock:
            self._rows[case_id] = tuple(rows)
            self._rows.move_to_end(case_id)
            while len(self._rows) > self._size:
                self._rows.popitem(last=False)

    def forget(self) -> None:
        with self._lock:
            self._rows.clear()

    def __len__(self) -> int:
        return len(self._rows)
