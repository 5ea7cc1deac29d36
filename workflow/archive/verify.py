"""``bedside archive verify``: every archived record, every file the index does not know.

Every photo signed into an archived case's events is in the photo store, unaltered.

For each index row: the file is there, hashes to its name, its signature is intact, trusted and
covers the whole file, and the events signed into it (``events.json``) agree with the case's
events as the database holds them now (signed_events.py). Each PDF is parsed once: the
signature check hands back the embedded events from the same parse.

Then the archive folder itself: a signed record the index does not know (its rows deleted, a
write cut off before its row) is reported with its case and whether its events agree, and so is
every ``.incoming-*`` leftover of a write cut off before its link.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workflow.core.errors import IntegrityError, NotFound
from workflow.core.events import canonical_json
from workflow.core.photos import photos_of
from workflow.core.signed_events import first_difference
from workflow.records.embed import EVENTS_FILE_NAME, parse_events
from workflow.records.verify import VerificationResult, Verifier
from workflow.store.placeholders import PLACEHOLDER_PATH, placeholder_sha256

if TYPE_CHECKING:
    from workflow.archive import Archive

# A live writer's temporary file is seconds old; one older than this was cut off.
LEFTOVER_AGE_S = 300.0
_CASES_KEPT = 8  # a case's records are listed next to one another (same signing time)


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


def verify_archive(
    archive: Archive, progress: Callable[[int, int], None] | None = None
) -> ArchiveReport:
    verifier = Verifier(archive.trust_roots())
    cases = _CaseEvents(archive)
    failed: list[tuple[str, str]] = []
    indexed: set[str] = set()
    placeholders = compared = n = 0
    photo_cases: set[str] = set()
    total = archive.store.count_archived()
    for rec in archive.iter_records():
        n += 1
        indexed.add(rec.sha256)
        if rec.path == PLACEHOLDER_PATH:
            # Honest only while the key is the placeholder key of that case and kind: a
            # real row relabelled as a placeholder (to hide a lost file) fails here.
            if rec.sha256 == placeholder_sha256(rec.case_id, rec.kind):
                placeholders += 1
            else:
                failed.append((rec.sha256, "marked as a seed placeholder but keyed as a file"))
        elif rec.sha256 not in archive.blobs:
            failed.append((rec.sha256, "file missing from the archive"))
        elif not archive.blobs.verify_blob(rec.sha256):
            failed.append((rec.sha256, "file does not match its SHA-256"))
        else:
            pdf = archive.blobs.get(rec.sha256)
            result = verifier.verify(pdf, rec.sha256, attachment=EVENTS_FILE_NAME)
            if not result.ok:
                failed.append((rec.sha256, _checks_failed(result)))
            else:
                compared += 1
                _, problem = _disagreement(rec.case_id, result, cases)
                if problem is not None:
                    failed.append(
                        (
                            rec.sha256,
                            f"the events signed into this {rec.kind} record of case "
                            f"{rec.case_id} disagree with the database: {problem}",
                        )
                    )
        if progress is not None:
            progress(n, max(total, n))
        if rec.path != PLACEHOLDER_PATH:
            photo_cases.add(rec.case_id)
    failed.extend(_photo_failures(archive, cases, photo_cases))
    unindexed = _unindexed(archive, verifier, cases, indexed)
    leftovers = _leftovers(archive)
    return ArchiveReport(
        n - placeholders,
        tuple(failed),
        placeholders,
        tuple(unindexed),
        tuple(leftovers),
        compared,
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
