"""``audit verify``: walk the whole log and say where it was first altered.

Checked, in log order: every log position present; each event's stored content matches its hash
(event fields, protocol, signature rows); each event links to its case's previous event; each
signature is bound to its event's content; each link of the whole-log chain; and at the end the
log head (length and last hash) and every case's recorded version. A deleted event leaves a gap;
where the same gap shows up in a case (a missing event number) the report names that case and
event.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, select

from workflow.core.events import format_time

from . import _schema as s
from ._rows import event_from_row, signature_from_row
from .chain import GENESIS_HASH, event_hash, link_hash
from .models import ChainProblem, ChainReport
from .verify_quick import quick_verify

MAX_PROBLEMS = 100


@dataclass
class _CaseWalk:
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    last_position: int = 0


@dataclass
class _Walk:
    problems: list[ChainProblem] = field(default_factory=list)
    gaps: list[tuple[int, int, int]] = field(default_factory=list)  # (first, last, problem #)

    def add(self, problem: ChainProblem) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def gap(self, first: int, last: int, message: str) -> None:
        self.gaps.append((first, last, len(self.problems)))
        self.add(ChainProblem(first, None, None, message))

    def missing(self, case_id: str, seq: int, after: int, before: int | None) -> None:
        """Case ``case_id`` lacks event ``seq``, which sat between log positions ``after`` and
        ``before``: name it in the matching log gap, or report it on its own."""
        for first, last, index in self.gaps:
            if after < first and (before is None or last < before) and index < len(self.problems):
                gap = self.problems[index]
                if gap.case_id is None:
                    self.problems[index] = replace(
                        gap,
                        case_id=case_id,
                        seq=seq,
                        message=f"was deleted ({gap.message})",
                    )
                return
        self.add(ChainProblem(before, case_id, seq, "is missing from the log (deleted)"))


def verify_chains(
    conn: Connection, positions: Collection[int] = (), jobs: int = 1, quick: bool = True
) -> ChainReport:
    """Walk the whole log once. ``positions`` are log positions whose whole-log chain hash the
    caller wants back (``report.chain_at``): signed checkpoints name a position and the hash
    it had, and are checked against these (workflow/archive/checkpoints.py).

    First the quick pass (verify_quick.py, in ``jobs`` processes) tries to prove the log
    intact; anything it cannot prove is walked here, one event after another, which finds and
    names every problem (``quick=False`` walks here straight away: the benchmarks' yardstick)."""
    if quick:
        proven = quick_verify(conn, set(positions), jobs)
        if proven is not None:
            return proven
    walk = _Walk()
    log = _walk_log(conn, walk, set(positions))
    head = conn.execute(select(s.log_head).where(s.log_head.c.id == 1)).first()
    _check_head(walk, head, log)
    n_cases = _check_case_versions(conn, walk, log.cases)
    problems = sorted(walk.problems, key=lambda p: (p.position is None, p.position or 0))
    head_hash = head.head_hash if head is not None else GENESIS_HASH
    length = head.event_count if head is not None else log.next_position - 1
    return ChainReport(log.count, n_cases, head_hash, tuple(problems), log.chain_at, length)


@dataclass
class _Log:
    """What one pass over the events found: the count, where the log ends and its last chain
    hash (None when a gap broke it), the wanted chain hashes and each case's last event."""

    count: int = 0
    next_position: int = 1
    chain: str | None = GENESIS_HASH
    chain_at: dict[int, str] = field(default_factory=dict)
    cases: dict[str, _CaseWalk] = field(default_factory=lambda: defaultdict(_CaseWalk))


def _walk_log(conn: Connection, walk: _Walk, wanted: set[int]) -> _Log:
    """Every event in log order: gaps, each event within its case, and the whole-log chain."""
    log = _Log(chain_at={0: GENESIS_HASH} if 0 in wanted else {})
    sigs = _signature_rows(conn)
    rows = conn.execution_options(yield_per=1000).execute(
        select(s.events).order_by(s.events.c.log_seq)
    )
    for row in rows:
        log.count += 1
        position = row.log_seq
        if position > log.next_position:
            walk.gap(
                log.next_position,
                position - 1,
                _positions(log.next_position, position - 1) + " missing from the log",
            )
            log.chain = None  # the link into this event cannot be checked: its predecessor is gone
        case = log.cases[row.case_id]
        sig_rows = sigs.get(row.id, [])
        # The quick check proves the usual event right; anything it cannot prove gets the full
        # check, which gives the verdict and the words (so no problem is reported differently).
        problem = (
            None if _event_ok(row, case, sig_rows) else _check_event(row, case, sig_rows, walk)
        )
        if (
            problem is None
            and log.chain is not None
            and _link(log.chain, position, row.hash) != row.chain_hash
            and link_hash(log.chain, position, row.hash) != row.chain_hash
        ):
            problem = "the whole-log chain is broken here (an event was changed, moved or "
            problem += "removed just before it)"
        if problem is not None:
            walk.add(ChainProblem(position, row.case_id, row.seq, problem))
        case.last_seq, case.last_hash, case.last_position = row.seq, row.hash, position
        log.chain = row.chain_hash
        if position in wanted:
            log.chain_at[position] = row.chain_hash
        log.next_position = position + 1
    return log


def _check_head(walk: _Walk, head: Any, log: _Log) -> None:
    """The log head row names the last event and its chain hash."""
    if head is None:
        walk.add(ChainProblem(None, None, None, "the log head row is missing"))
    elif head.event_count > log.next_position - 1:
        walk.gap(
            log.next_position,
            head.event_count,
            _positions(log.next_position, head.event_count) + " missing at the end of the log",
        )
    elif head.event_count < log.next_position - 1 or head.head_hash != log.chain:
        walk.add(
            ChainProblem(
                log.next_position - 1,
                None,
                None,
                "the log head does not match the last event of the log",
            )
        )


def _check_case_versions(conn: Connection, walk: _Walk, cases: dict[str, _CaseWalk]) -> int:
    """Each case's recorded version against its last event; returns how many cases there are."""
    case_rows = conn.execute(select(s.cases.c.id, s.cases.c.version).order_by(s.cases.c.id))
    n_cases = 0
    for case_row in case_rows:
        n_cases += 1
        case = cases.get(case_row.id, _CaseWalk())
        if case.last_seq < case_row.version:
            walk.missing(case_row.id, case.last_seq + 1, case.last_position, None)
        elif case.last_seq > case_row.version:
            walk.add(
                ChainProblem(
                    case.last_position,
                    case_row.id,
                    case.last_seq,
                    f"is beyond the case's recorded version {case_row.version}",
                )
            )
    return n_cases


# The hashes are over canonical JSON (sorted keys, no spaces, UTF-8): what
# workflow.core.events.canonical_json gives, built here from the row's columns without making
# an Event, and with the event's data as stored (the writer stores exactly its canonical JSON).
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
# The string encoder that encoder uses (ensure_ascii=False): quotes, escapes " \\ and controls.
_quote = json.encoder.encode_basestring


def _text(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _event_json(row: Any) -> bytes:
    """canonical_json(Event.to_json()) of the row, its keys in sorted order."""
    if row.actor_user_id is None:
        actor = "null"
    else:
        actor = (
            f'{{"name":{_quote(row.actor_name or "")},"role":{_quote(row.actor_role or "")},'
            f'"user_id":{_quote(row.actor_user_id)}}}'
        )
    corrects = "null" if row.corrects is None else str(int(row.corrects))
    return (
        f'{{"actor":{actor},"at":"{format_time(row.at)}","case_id":{_quote(row.case_id)},'
        f'"corrects":{corrects},"data":{row.data},"meaning":{_text(row.meaning)},'
        f'"seq":{int(row.seq)},"step":{_text(row.step)},"type":{_quote(row.type)}}}'
    ).encode()


def _event_ok(row: Any, case: _CaseWalk, sig_rows: list[Any]) -> bool:
    """True when the event is provably right within its case (the quick path of
    ``_check_event``): content matches its hash, next in its case, linked to the case's
    previous event, every signature bound to its content. False: let ``_check_event`` judge.

    A row whose data is stored as JSON that is not canonical cannot pass here unless its hash
    was computed over exactly those bytes, which only a forger recomputing hashes does; and
    such a forger could as well have recomputed them over canonical JSON (chain.py)."""
    if row.seq != case.last_seq + 1 or row.prev_hash != case.last_hash:
        return False
    event = _event_json(row)
    content = hashlib.sha256(event).hexdigest()
    signatures = []
    for sig in sig_rows:
        if sig.content_hash != content:
            return False
        signatures.append(
            f'{{"content_hash":{_quote(sig.content_hash)},"meaning":{_text(sig.meaning)},'
            f'"printed_name":{_quote(sig.printed_name)},"role":{_quote(sig.role)},'
            f'"signed_at":"{format_time(sig.signed_at)}","user_id":{_quote(sig.user_id)}}}'
        )
    tail = (
        f',"protocol":{{"hash":{_quote(row.protocol_hash)},'
        f'"version":{_quote(row.protocol_version)}}},"signatures":[{",".join(signatures)}]}}'
    )
    record = b"".join((row.prev_hash.encode("ascii"), b'{"event":', event, tail.encode()))
    return bool(hashlib.sha256(record).hexdigest() == row.hash)


def _link(prev_chain_hash: str, log_seq: int, hash_: str) -> str:
    """chain.link_hash for the usual hex hashes, without the general JSON encoder (a hash
    that is not plain hex gives another answer here, and then link_hash decides)."""
    text = f'["{prev_chain_hash}",{log_seq},"{hash_}"]'
    return hashlib.sha256(text.encode()).hexdigest()


def _check_event(row: Any, case: _CaseWalk, sig_rows: list[Any], walk: _Walk) -> str | None:
    """What is wrong with this one event within its case, or None."""
    event = event_from_row(row)
    signatures = [signature_from_row(r, row.case_id, row.seq) for r in sig_rows]
    recomputed = event_hash(
        row.prev_hash, event, row.protocol_version, row.protocol_hash, signatures
    )
    if row.hash != recomputed:
        # Checked first: when the content is forged, its seq cannot be trusted either.
        return "its stored content does not match its hash (changed after it was written)"
    if row.seq <= case.last_seq:
        return f"appears in the log after event {case.last_seq} of its case (reordered)"
    if row.seq > case.last_seq + 1:
        for seq in range(case.last_seq + 1, row.seq):
            walk.missing(row.case_id, seq, case.last_position, row.log_seq)
    elif row.prev_hash != case.last_hash:
        return "does not link to the previous event of its case (that event was changed)"
    content = event.content_hash()
    for sig in signatures:
        if sig.content_hash != content:
            return f"the signature of {sig.printed_name} is not bound to this event's content"
    return None


def _signature_rows(conn: Connection) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = defaultdict(list)
    for r in conn.execute(select(s.signatures).order_by(s.signatures.c.id)):
        out[r.event_id].append(r)
    return out


def _positions(first: int, last: int) -> str:
    return f"log position {first} is" if first == last else f"log positions {first}-{last} are"
