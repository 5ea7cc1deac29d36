"""``bedside archive verify``: every archived record, every file the index does not know.

Every photo signed into an archived case's events is in the photo store, unaltered.

For each index row: the file is there, hashes to its name, its signature is intact, trusted and
covers the whole file, and the events signed into it (``events.json``) agree with the case's
events as the database holds them now (signed_events.py). Each PDF is parsed once: the
signature check hands back the embedded events from the same parse.

Each file's own checks (present, hash, signature, trust, coverage, the embedded events read)
need nothing but the file and the trust roots, so they run in ``jobs`` worker processes, a
chunk of records at a time, in index order; the comparison with the database stays in this
process (one connection, a few cases' events kept). The signature checks take the quick path
of records/fast_verify.py where they can (each worker validates each signer certificate once
with pyHanko, and re-validates a sample in full: ``cross_checked``, ``disagreements``).

Then the archive folder itself: a signed record the index does not know (its rows deleted, a
write cut off before its row) is reported with its case and whether its events agree, and so is
every ``.incoming-*`` leftover of a write cut off before its link.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workflow.core.errors import IntegrityError, NotFound
from workflow.core.events import canonical_json
from workflow.core.photos import photos_of
from workflow.core.signed_events import first_difference
from workflow.records.embed import EVENTS_FILE_NAME, parse_events
from workflow.records.verify import (
    VerificationResult,
    Verifier,
    VerifierStats,
    certificate_der,
)
from workflow.store.placeholders import PLACEHOLDER_PATH, placeholder_sha256

if TYPE_CHECKING:
    from workflow.archive import Archive

# A live writer's temporary file is seconds old; one older than this was cut off.
LEFTOVER_AGE_S = 300.0
_CASES_KEPT = 8  # a case's records are listed next to one another (same signing time)
_CHUNK = 64  # records per task handed to a worker: large enough to hide the hand-over


@dataclass(frozen=True)
class ArchiveReport:
    checked: int
    failed: tuple[tuple[str, str], ...]  # (sha256, what failed)
    # Index rows ``bedside dev seed`` wrote without a file: counted apart, never "verified".
    placeholders: int = 0
    # Signed files in the archive that no index row names: (path in the home, what they are).
    unindexed: tuple[tuple[str, str], ...] = ()
    # ``.incoming-*`` files of cut-off writes: (path in the home, age in seconds).
    leftovers: tuple[tuple[str, float], ...] = ()
    # Records whose embedded events were compared with the database's.
    compared: int = 0
    # How the signatures were checked (records/verify.py VerifierStats, summed over workers).
    quick: int = 0
    full: int = 0
    cross_checked: int = 0
    # Quick answers pyHanko's full validation did not give (its answer was used): (sha, what).
    disagreements: tuple[tuple[str, str], ...] = field(default=())

    @property
    def stale_leftovers(self) -> tuple[tuple[str, float], ...]:
        return tuple(item for item in self.leftovers if item[1] >= LEFTOVER_AGE_S)

    @property
    def ok(self) -> bool:
        # A leftover is reported, not failed: it was never named or indexed, and the case it
        # belonged to is MISSING its records until a catch-up signs or indexes them.
        return not self.failed and not self.unindexed


class _CaseEvents:
    """The stored events of the few cases being looked at: as ``Event.to_json`` gives them,
    and each as canonical JSON (a record's ``events.json`` is exactly these joined, so an
    agreeing record is recognised by one bytes comparison)."""

    def __init__(self, archive: Archive) -> None:
        self._store = archive.store
        self._kept: OrderedDict[str, _Stored | None] = OrderedDict()

    def get(self, case_id: str) -> _Stored | None:
        if case_id in self._kept:
            self._kept.move_to_end(case_id)
            return self._kept[case_id]
        stored: _Stored | None
        try:
            # The chain itself is `audit verify`'s to check; here the content is compared.
            events = [e.to_json() for e in self._store.load_events(case_id, verify=False)]
            stored = _Stored(events, [canonical_json(e) for e in events])
        except NotFound:
            stored = None
        self._kept[case_id] = stored
        if len(self._kept) > _CASES_KEPT:
            self._kept.popitem(last=False)
        return stored


@dataclass(frozen=True)
class _Stored:
    events: list[dict[str, Any]]
    canonical: list[bytes]

    def prefix_json(self, n: int) -> bytes:
        return b"[" + b",".join(self.canonical[:n]) + b"]"


def _disagreement(
    case_id: str | None, result: VerificationResult, cases: _CaseEvents
) -> tuple[str | None, str | None]:
    """(the case the record's events belong to, what disagrees with the database or None)."""
    if result.attachment is None:
        return case_id, f"no readable {EVENTS_FILE_NAME} ({result.attachment_problem})"
    try:
        signed = parse_events(result.attachment)
    except IntegrityError as exc:
        return case_id, exc.message
    first = signed[0] if signed and isinstance(signed[0], Mapping) else {}
    embedded_case = first.get("case_id")
    case_id = case_id or (str(embedded_case) if embedded_case is not None else None)
    if case_id is None:
        return None, f"its {EVENTS_FILE_NAME} names no case"
    stored = cases.get(case_id)
    if stored is None:
        return case_id, f"case {case_id} is not in the database"
    if len(signed) <= len(stored.events) and result.attachment == stored.prefix_json(len(signed)):
        return case_id, None  # the usual answer, without comparing event by event
    try:
        return case_id, first_difference(signed, stored.events) or "its events are not canonical"
    except (TypeError, ValueError) as exc:  # a hand-made file: floats or odd shapes
        return case_id, f"its {EVENTS_FILE_NAME} cannot be compared ({exc})"


def _checks_failed(result: VerificationResult) -> str:
    return "; ".join(f"{c.name}: {c.message}" for c in result.failed)


@dataclass(frozen=True)
class _FileAnswer:
    """One indexed record's own checks, as a worker found them."""

    sha256: str
    problem: str | None  # missing, or not matching its hash (no signature check then)
    result: VerificationResult | None


# A worker process's verifier, built once by ``_start_worker`` (trust roots as DER).
_worker_verifier: Verifier | None = None


def _start_worker(roots: list[bytes]) -> None:
    global _worker_verifier
    _worker_verifier = Verifier(roots)


def _check_files(
    items: list[tuple[str, str]], verifier: Verifier | None = None
) -> tuple[list[_FileAnswer], VerifierStats]:
    """Check (sha256, path) files; returns the answers and what the verifier did for them."""
    verifier = verifier or _worker_verifier
    assert verifier is not None
    before = VerifierStats(
        verifier.stats.quick,
        verifier.stats.full,
        verifier.stats.cross_checked,
        list(verifier.stats.disagreements),
    )
    answers = []
    for sha, path in items:
        try:
            pdf = Path(path).read_bytes()
        except FileNotFoundError:
            answers.append(_FileAnswer(sha, "file missing from the archive", None))
            continue
        # One read, one hash: the blob's name, then the signature checks, on the same bytes.
        digest = hashlib.sha256(pdf).hexdigest()
        if digest != sha:
            answers.append(_FileAnswer(sha, "file does not match its SHA-256", None))
            continue
        answers.append(
            _FileAnswer(
                sha, None, verifier.verify(pdf, sha, attachment=EVENTS_FILE_NAME, sha256=digest)
            )
        )
    now = verifier.stats
    done = VerifierStats(
        now.quick - before.quick,
        now.full - before.full,
        now.cross_checked - before.cross_checked,
        now.disagreements[len(before.disagreements) :],
    )
    return answers, done


def _chunks(items: Iterable[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    chunk: list[tuple[str, str]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _answers(
    items: Iterable[tuple[str, str]], roots: list[bytes], jobs: int, stats: VerifierStats
) -> Iterator[_FileAnswer]:
    """Every file's answer, in the order given: in this process (``jobs`` 1) or in ``jobs``
    worker processes with a bounded number of chunks in flight (memory stays flat)."""

    def add(done: VerifierStats) -> None:
        stats.quick += done.quick
        stats.full += done.full
        stats.cross_checked += done.cross_checked
        stats.disagreements += done.disagreements

    chunks = _chunks(items, _CHUNK)
    head = list(itertools.islice(chunks, 2))
    if jobs <= 1 or len(head) < 2:  # one chunk: starting workers would cost more than it
        verifier = Verifier(roots)
        for chunk in itertools.chain(head, chunks):
            answers, done = _check_files(chunk, verifier)
            add(done)
            yield from answers
        return
    with ProcessPoolExecutor(
        jobs, mp_context=_start_method(), initializer=_start_worker, initargs=(roots,)
    ) as pool:
        pending: deque[Future[tuple[list[_FileAnswer], VerifierStats]]] = deque()
        for chunk in itertools.chain(head, chunks):
            pending.append(pool.submit(_check_files, chunk))
            if len(pending) >= 3 * jobs:
                answers, done = pending.popleft().result()
                add(done)
                yield from answers
        while pending:
            answers, done = pending.popleft().result()
            add(done)
            yield from answers


def _start_method() -> BaseContext:
    """Fork where there is one: a worker then starts with pyHanko already imported (a spawned
    one spends a second or more importing it). The workers touch no database connection or
    thread of the parent: they read files and run the verifier built by ``_start_worker``."""
    if "fork" in get_all_start_methods():
        return get_context("fork")
    return get_context("spawn")


def default_jobs() -> int:
    """All the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def verify_archive(
    archive: Archive,
    progress: Callable[[int, int], None] | None = None,
    jobs: int = 1,
) -> ArchiveReport:
    roots = [certificate_der(c) for c in archive.trust_roots()]  # a worker gets DER
    cases = _CaseEvents(archive)
    failed: list[tuple[str, str]] = []
    indexed: set[str] = set()
    placeholders = compared = n = 0
    photo_cases: set[str] = set()
    total = archive.store.count_archived()
    kinds: dict[str, tuple[str, str]] = {}  # sha -> (case, kind) of records sent to the workers
    stats = VerifierStats()

    def files() -> Iterator[tuple[str, str]]:
        """Index rows in order; placeholders are judged here, files go to the workers."""
        nonlocal placeholders, n
        for rec in archive.iter_records():
            indexed.add(rec.sha256)
            if rec.path == PLACEHOLDER_PATH:
                n += 1
                # Honest only while the key is the placeholder key of that case and kind: a
                # real row relabelled as a placeholder (to hide a lost file) fails here.
                if rec.sha256 == placeholder_sha256(rec.case_id, rec.kind):
                    placeholders += 1
                else:
                    failed.append((rec.sha256, "marked as a seed placeholder but keyed as a file"))
                if progress is not None:
                    progress(n, max(total, n))
                continue
            kinds[rec.sha256] = (rec.case_id, rec.kind)
            photo_cases.add(rec.case_id)  # its photo files are checked after the records
            yield rec.sha256, str(archive.blobs.path(rec.sha256))

    for answer in _answers(files(), roots, jobs, stats):
        n += 1
        case_id, kind = kinds.pop(answer.sha256)
        result = answer.result
        if answer.problem is not None or result is None:
            failed.append((answer.sha256, answer.problem or "not checked"))
        elif not result.ok:
            failed.append((answer.sha256, _checks_failed(result)))
        else:
            compared += 1
            _, problem = _disagreement(case_id, result, cases)
            if problem is not None:
                failed.append(
                    (
                        answer.sha256,
                        f"the events signed into this {kind} record of case "
                        f"{case_id} disagree with the database: {problem}",
                    )
                )
        if progress is not None:
            progress(n, max(total, n))
    failed.extend(_photo_failures(archive, cases, photo_cases))
    verifier = Verifier(roots)
    unindexed = _unindexed(archive, verifier, cases, indexed)
    leftovers = _leftovers(archive)
    return ArchiveReport(
        n - placeholders,
        tuple(failed),
        placeholders,
        tuple(unindexed),
        tuple(leftovers),
        compared,
        stats.quick + verifier.stats.quick,
        stats.full + verifier.stats.full,
        stats.cross_checked + verifier.stats.cross_checked,
        tuple(stats.disagreements + verifier.stats.disagreements),
    )


def _photo_failures(
    archive: Archive, cases: _CaseEvents, case_ids: set[str]
) -> list[tuple[str, str]]:
    """Every photo the archived cases' events name is in the photo store and hashes to its
    name: the hash is signed into the event (and the record), the file is not."""
    out: list[tuple[str, str]] = []
    for case_id in sorted(case_ids):
        stored = cases.get(case_id)
        if stored is None:
            continue
        for event in stored.events:
            for ref in photos_of(event.get("data") or {}):
                what = f"photo '{ref.id}' of step {event.get('step')} of case {case_id}"
                if ref.sha256 not in archive.photos:
                    out.append((ref.sha256, f"{what}: file missing from the archive"))
                elif not archive.photos.verify_blob(ref.sha256):
                    out.append((ref.sha256, f"{what}: file does not match its SHA-256"))
    return out


def _unindexed(
    archive: Archive, verifier: Verifier, cases: _CaseEvents, indexed: set[str]
) -> Sequence[tuple[str, str]]:
    out = []
    for sha in archive.blobs.iter_hashes():
        if sha in indexed or archive.store.is_archived(sha):
            continue  # the second look: a record indexed while this walk ran
        where = str(archive.blobs.path(sha).relative_to(archive.home))
        result = verifier.verify(archive.blobs.get(sha), None, attachment=EVENTS_FILE_NAME)
        case_id, problem = _disagreement(None, result, cases)
        what = f"a record of case {case_id}" if case_id else "a file"
        signature = "signature ok" if result.ok else f"signature FAILED ({_checks_failed(result)})"
        agreement = (
            "its events agree with the database"
            if problem is None
            else f"its events DISAGREE with the database: {problem}"
        )
        unknown = f"{what} that the archive index does not know"
        out.append((where, f"{unknown}; {signature}; {agreement}"))
    return out


def _leftovers(archive: Archive) -> Sequence[tuple[str, float]]:
    now = time.time()
    out = []
    for path in archive.blobs.leftovers():
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:  # its writer finished meanwhile
            continue
        out.append((str(Path(path).relative_to(archive.home)), age))
    return out
