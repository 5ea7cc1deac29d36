"""The write-once archive of signed records, joined to the store's search index.

A finished case's record documents are rendered, signed with the site's document-signing
certificate (PAdES B-B), stored by SHA-256 in a content-addressed folder that is never
overwritten, and indexed (patient, MRN, dose, lots, signers, state) for search. Archiving the
same events twice is a no-op. Verification needs only the PDF and the site's CA certificate.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from pathlib import Path

from workflow.archive.checkpoints import (
    CHECKPOINT_DIR,
    REASON_ARCHIVE,
    CheckpointWriter,
    load_checkpoint_key,
)
from workflow.archive.index_row import index_row
from workflow.archive.verify import LEFTOVER_AGE_S, ArchiveReport, verify_archive
from workflow.core.errors import ConflictError, InputError, IntegrityError, NotFound
from workflow.core.events import canonical_json
from workflow.core.machine import Case
from workflow.core.signed_events import first_difference
from workflow.records.blobstore import BlobStore, file_sha256
from workflow.records.case_records import record_documents
from workflow.records.case_register import CaseRegister
from workflow.records.document import RecordDocument
from workflow.records.embed import extract_events
from workflow.records.photos import photo_store, thumbnail_jpeg
from workflow.records.pki import (
    PkiPaths,
    describe_incomplete,
    load_signer,
    load_trust_roots,
    pki_state,
)
from workflow.records.signing_pool import SigningPool, render_and_sign
from workflow.records.verify import VerificationResult, Verifier
from workflow.store import ArchivedRecord, Store
from workflow.store.placeholders import PLACEHOLDER_PATH

__all__ = ["ARCHIVE_DIR", "PKI_DIR", "Archive", "ArchiveReport", "Sweep"]

PKI_DIR = "pki"
ARCHIVE_DIR = "archive"
REGISTER_DIR = "by-case"


@dataclass(frozen=True)
class Sweep:
    """What :meth:`Archive.sweep` did: records completed (hashes), leftovers removed (paths)."""

    completed: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class _Signed:
    """A record already signed for a case, with the canonical events signed into it."""

    sha256: str
    kind: str
    events_json: bytes


class Archive:
    def __init__(
        self,
        home: Path,
        store: Store,
        signing: SigningPool | None = None,
        tz: tzinfo = UTC,
    ) -> None:
        self.home = home
        self.store = store
        self.tz = tz  # the site's zone: records show times as people there read them
        # ``bedside serve`` passes a pool so records render and sign on another core, not under
        # the server's GIL; everything else renders in its own process.
        self.signing = signing
        self.pki_dir = home / PKI_DIR
        self.blobs = BlobStore(home / ARCHIVE_DIR, suffix=".pdf")
        self.register = CaseRegister(home / ARCHIVE_DIR / REGISTER_DIR)
        self.photos = photo_store(home / ARCHIVE_DIR)

    @property
    def ready(self) -> bool:
        """Signing material exists (``bedside init`` makes it).

        Part of a set (an interrupted ``bedside init``: keys and no certificates) is an
        IntegrityError, not "not ready": every path that would end doses must refuse, rather
        than complete them and sign nothing (issue 13.6).
        """
        state = pki_state(self.pki_dir)
        if state == "incomplete":
            raise IntegrityError(describe_incomplete(self.pki_dir))
        return state == "complete"

    def trust_roots(self) -> list[object]:
        return list(load_trust_roots(self.pki_dir))

    def thumbnail(self, sha256: str) -> bytes | None:
        """The record's small JPEG of a stored photo; None when its file is missing or altered
        (the record then says so beside the hash, and ``archive verify`` reports it)."""
        if sha256 not in self.photos or not self.photos.verify_blob(sha256):
            return None
        return thumbnail_jpeg(self.photos.get(sha256))

    # -- writing ---------------------------------------------------------------------------------
    def archive_case(self, case: Case, chain_hash: str) -> list[str]:
        """Render, sign, store and index the case's records; returns their SHA-256s.

        Safe to run from several processes at once for one case: the index keeps one record
        per case, kind and embedded events (migration 0007), and a process that loses that race
        withdraws the file it wrote and answers with the winner's record.

        Refuses (IntegrityError, nothing signed) when the case's events disagree with a record
        already signed for it, found in the index or in the archive's own register of records
        by case (records/case_register.py): the database was changed after that record was
        signed, and signing again would put the site's signature on the changed events.
        Every call that stores a record ends with a signed checkpoint of the whole log
        (checkpoints.py).
        """
        load_signer(self.pki_dir)  # refuse missing or exposed signing material before any work
        documents = record_documents(case, chain_hash, self.tz, self.thumbnail)
        existing = self.store.search_archive(case_id=case.case_id, limit=500)
        out: list[str | None] = []
        for document in documents:
            events_sha = hashlib.sha256(document.events_json).hexdigest()
            out.append(
                self._already_archived(existing, document.kind, document.events_json, events_sha)
            )
        if all(sha is not None for sha in out):
            return [sha for sha in out if sha is not None]  # archived before: a no-op
        signed = self._signed_for(case, existing)
        made: list[dict[str, str]] = []
        for n, document in enumerate(documents):
            if out[n] is not None:
                continue
            sha = self._store_document(case, document, existing, signed)
            out[n] = sha
            made.append(
                {
                    "case_id": case.case_id,
                    "kind": document.kind,
                    "sha256": sha,
                    "events_sha256": hashlib.sha256(document.events_json).hexdigest(),
                }
            )
        self._checkpoint(made)
        return [sha for sha in out if sha is not None]

    def _store_document(
        self,
        case: Case,
        document: RecordDocument,
        existing: Sequence[ArchivedRecord],
        signed: Sequence[_Signed],
    ) -> str:
        events_sha = hashlib.sha256(document.events_json).hexdigest()
        indexed = {rec.sha256 for rec in existing}
        adopt = next(
            (
                s
                for s in signed
                if s.kind == document.kind
                and s.sha256 not in indexed
                and s.events_json == document.events_json
            ),
            None,
        )
        if adopt is not None:
            # A record this archive signed and stored for exactly these events, whose index row
            # a crash cut off: index it rather than sign a second copy.
            sha = adopt.sha256
        else:
            if self.signing is not None:
                pdf = self.signing.render_and_sign(document)
            else:
                pdf = render_and_sign(document, self.pki_dir)
            sha = hashlib.sha256(pdf).hexdigest()
            # Noted before the file is stored: no stored record is ever missing from the
            # register, whatever the database later says.
            self.register.note(case.case_id, sha, document.kind)
            self.blobs.put(pdf)
        record = index_row(
            case,
            kind=document.kind,
            sha256=sha,
            signers=sorted({s.signer for s in document.signatures}),
            path=str(self.blobs.path(sha).relative_to(self.home)),
            created_at=self.store.clock.now(),
            events_sha256=events_sha,
        )
        try:
            self.store.add_archived_record(record)
        except ConflictError:
            winner = self.store.find_archived_record(case.case_id, document.kind, events_sha)
            if winner is not None and winner.sha256 != sha:
                # Another process archived these events first. Our file was never indexed,
                # so nothing refers to it: withdraw it rather than leave a second signed
                # copy of the same record lying in a write-once archive.
                self.blobs.withdraw_unindexed(sha)
                self.register.withdraw(case.case_id, sha, document.kind)
                sha = winner.sha256
            # Otherwise this file is indexed already: a retry after a crash between
            # storing the file and indexing it.
        return sha

    def _signed_for(self, case: Case, existing: Sequence[ArchivedRecord]) -> list[_Signed]:
        """Every record already signed for the case (its index rows and the archive's own
        register), each with the events signed into it; IntegrityError when any disagrees
        with the case's events as stored now."""
        shas: dict[str, str] = {rec.sha256: rec.kind for rec in existing}
        for noted in self.register.noted(case.case_id):
            shas.setdefault(noted.sha256, noted.kind)
        current = [e.to_json() for e in case.events]
        out: list[_Signed] = []
        for sha, kind in sorted(shas.items()):
            if sha not in self.blobs:
                continue  # a note whose file a crash cut off, or a lost file (verify reports it)
            where = self.blobs.path(sha).relative_to(self.home)
            try:
                if not self.blobs.verify_blob(sha):
                    raise IntegrityError("the file does not match its SHA-256")
                embedded = extract_events(self.blobs.get(sha))
                problem = first_difference(embedded, current)
            except (IntegrityError, TypeError, ValueError) as exc:
                message = exc.message if isinstance(exc, IntegrityError) else str(exc)
                raise IntegrityError(
                    f"case {case.case_id}: refusing to sign its records: the {kind} record "
                    f"already signed for it ({where}) cannot be read ({message}); check it "
                    "with `bedside archive verify`"
                ) from None
            if problem is not None:
                raise IntegrityError(
                    f"case {case.case_id}: REFUSING TO SIGN its records: its stored events "
                    f"disagree with the {kind} record already signed for it ({where}): "
                    f"{problem}. The database was changed after that record was signed; "
                    "nothing was signed. Run `bedside audit verify` and `bedside archive "
                    "verify`, and restore the events from a backup."
                )
            out.append(_Signed(sha, kind, canonical_json(embedded)))
        return out

    def _checkpoint(self, records: Sequence[Mapping[str, str]]) -> None:
        if not records:
            return
        length, head = self.store.log_head()
        writer = CheckpointWriter(self.home / CHECKPOINT_DIR, load_checkpoint_key(self.pki_dir))
        writer.write(length, head, self.store.clock.now(), REASON_ARCHIVE, records)

    def _already_archived(
        self,
        existing: Sequence[ArchivedRecord],
        kind: str,
        events_json: bytes,
        events_sha: str,
    ) -> str | None:
        for rec in existing:
            if rec.kind == kind and rec.events_sha256 == events_sha and rec.sha256 in self.blobs:
                return rec.sha256
        # Rows from before migration 0007 carry no events key: compare what the PDF embeds.
        for rec in existing:
            if rec.kind != kind or rec.events_sha256 is not None or rec.sha256 not in self.blobs:
                continue
            try:
                embedded = extract_events(self.blobs.get(rec.sha256))
            except Exception:  # noqa: S112 - a damaged blob is verify's to report
                continue
            if canonical_json(embedded) == events_json:
                return rec.sha256
        return None

    # -- reading and checking -------------------------------------------------------------------
    def get(self, sha: str) -> tuple[ArchivedRecord, bytes]:
        record = self.store.get_archived_record(sha)
        return record, self.blobs.get(sha)

    def verify_bytes(self, pdf: bytes, trust: Sequence[object] | None = None) -> VerificationResult:
        """Check a PDF against our CA (or ``trust``) and, if archived here, its archived hash."""
        roots = list(trust) if trust is not None else self.trust_roots()
        sha = hashlib.sha256(pdf).hexdigest()
        expected: str | None = None
        try:
            self.store.get_archived_record(sha)
            expected = sha
        except NotFound:
            expected = None
        result = Verifier(roots).verify(pdf, expected)
        return result

    def iter_records(self, batch: int = 500) -> Iterator[ArchivedRecord]:
        # Keyset pages: the last page costs what the first does, however big the archive.
        return self.store.iter_archive(batch)

    def verify_all(
        self, progress: Callable[[int, int], None] | None = None, jobs: int = 1
    ) -> ArchiveReport:
        """Every indexed record (the blob's hash, its signature and trust, whole-file coverage,
        and its signed events against the database's), then every file the index does not
        know and every cut-off write (archive/verify.py). ``jobs`` worker processes check the
        files (1: in this process)."""
        return verify_archive(self, progress, jobs)

    def sweep(self, min_age_s: float = LEFTOVER_AGE_S) -> Sweep:
        """Clear what cut-off writes left (``bedside archive catch-up`` and ``serve`` run it).

        A ``.incoming-*`` file older than ``min_age_s`` (a live writer's is seconds old) that
        holds a whole record this archive noted for a case is linked into place, so the case's
        catch-up indexes it instead of signing a second copy; any other is removed. Old
        temporary files of checkpoints go too.
        """
        self.note_indexed_records()
        now = time.time()
        noted: set[str] | None = None
        completed: list[str] = []
        removed: list[str] = []
        leftovers = [*self.blobs.leftovers(), *self._checkpoint_leftovers()]
        for path in leftovers:
            try:
                if now - path.stat().st_mtime < min_age_s:
                    continue
                where = str(path.relative_to(self.home))
                if path.parent.parent == self.blobs.root:
                    sha = file_sha256(path)
                    if noted is None:
                        noted = {sha for sha, _ in self.register.kinds_by_sha()}
                    if sha in noted and path.parent.name == sha[:2] and sha not in self.blobs:
                        self.blobs.complete_leftover(path)
                        completed.append(sha)
                        continue
                path.unlink()
                removed.append(where)
            except FileNotFoundError:  # its writer finished (or another sweep) meanwhile
                continue
        return Sweep(tuple(completed), tuple(removed))

    def note_indexed_records(self) -> int:
        """Once per archive: note by case every record indexed before the register existed
        (archives made by an earlier Bedside), so the refusal to sign over a disagreeing record
        does not depend on index rows for them either. Returns how many were noted."""
        stamp = self.register.complete_stamp
        if stamp.exists():
            return 0
        n = 0
        for rec in self.iter_records():
            if rec.path != PLACEHOLDER_PATH and rec.sha256 in self.blobs:
                self.register.note(rec.case_id, rec.sha256, rec.kind, durable=False)
                n += 1
        os.sync()  # every note on disk before the stamp says so
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
        return n

    def _checkpoint_leftovers(self) -> list[Path]:
        folder = self.home / CHECKPOINT_DIR
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.name.startswith(".incoming-"))

    def export(
        self,
        folder: Path,
        records: Sequence[ArchivedRecord],
        on_record: Callable[[ArchivedRecord], None] | None = None,
    ) -> Path:
        """PDFs, a SHA-256 manifest and the CA certificate, for checking offline; ``on_record``
        is told of each record written (progress)."""
        folder = folder.resolve()
        if folder.exists() and any(folder.iterdir()):
            raise InputError("folder", f"{folder} is not empty; export into a new folder")
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for rec in records:
            name = f"{rec.sha256}.pdf"
            target = (folder / name).resolve()
            if target.parent != folder:  # never write outside the export folder
                raise InputError("sha256", f"unsafe record name {rec.sha256!r}")
            target.write_bytes(self.blobs.get(rec.sha256))
            lines.append(f"{rec.sha256}  {name}")
            if on_record is not None:
                on_record(rec)
        (folder / "SHA256SUMS").write_text("\n".join(lines) + ("\n" if lines else ""))
        shutil.copyfile(PkiPaths(self.pki_dir).ca_cert, folder / "bedside-ca.pem")
        return folder
