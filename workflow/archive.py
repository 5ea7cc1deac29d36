"""The write-once archive of signed records, joined to the store's search index.

A finished case's record documents are rendered, signed with the site's document-signing
certificate (PAdES B-B), stored by SHA-256 in a content-addressed folder that is never
overwritten, and indexed (patient, MRN, dose, lots, signers, state) for search. Archiving the
same events twice is a no-op. Verification needs only the PDF and the site's CA certificate.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .case_records import record_documents
from .errors import ConflictError, InputError, IntegrityError, NotFound
from .machine import Case
from .records.blobstore import BlobStore
from .records.embed import extract_events
from .records.pki import (
    PkiPaths,
    describe_incomplete,
    load_signer,
    load_trust_roots,
    pki_state,
)
from .records.signing_pool import SigningPool, render_and_sign
from .records.verify import VerificationResult, Verifier
from .seed import PLACEHOLDER_PATH, placeholder_sha256
from .store import ArchivedRecord, Store

PKI_DIR = "pki"
ARCHIVE_DIR = "archive"


@dataclass(frozen=True)
class ArchiveReport:
    checked: int
    failed: tuple[tuple[str, str], ...]  # (sha256, what failed)
    # Index rows ``bedside dev seed`` wrote without a file: counted apart, never "verified".
    placeholders: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


class Archive:
    def __init__(self, home: Path, store: Store, signing: SigningPool | None = None) -> None:
        self.home = home
        self.store = store
        # ``bedside serve`` passes a pool so records render and sign on another core, not under
        # the server's GIL; everything else renders in its own process.
        self.signing = signing
        self.pki_dir = home / PKI_DIR
        self.blobs = BlobStore(home / ARCHIVE_DIR, suffix=".pdf")

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

    # -- writing ---------------------------------------------------------------------------------
    def archive_case(self, case: Case, chain_hash: str) -> list[str]:
        """Render, sign, store and index the case's records; returns their SHA-256s.

        Safe to run from several processes at once for one case: the index keeps one record
        per case, kind and embedded events (migration 0007), and a process that loses that race
        withdraws the file it wrote and answers with the winner's record.
        """
        load_signer(self.pki_dir)  # refuse missing or exposed signing material before any work
        out: list[str] = []
        existing = self.store.search_archive(case_id=case.case_id, limit=500)
        for document in record_documents(case, chain_hash):
            events_sha = hashlib.sha256(document.events_json).hexdigest()
            same = self._already_archived(existing, document.kind, document.events_json, events_sha)
            if same is not None:
                out.append(same)
                continue
            if self.signing is not None:
                pdf = self.signing.render_and_sign(document)
            else:
                pdf = render_and_sign(document, self.pki_dir)
            sha = self.blobs.put(pdf)
            lots = _lots(case)
            signers = sorted({s.signer for s in document.signatures})
            assert case.patient is not None
            record = ArchivedRecord(
                sha256=sha,
                case_id=case.case_id,
                kind=document.kind,
                patient_name=case.patient.name,
                mrn=case.patient.mrn,
                dose_label=f"cycle {case.cycle} dose {case.dose_in_cycle} "
                f"(course dose {case.dose_in_course})",
                cycle=case.cycle,
                signed_at=case.events[-1].at,
                lots=", ".join(lots),
                signers="; ".join(signers),
                state=case.state,
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
                    sha = winner.sha256
                # Otherwise this file is indexed already: a retry after a crash between
                # storing the file and indexing it.
            out.append(sha)
        return out

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
            from .events import canonical_json

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

    def verify_all(self, progress: Callable[[int, int], None] | None = None) -> ArchiveReport:
        """Every indexed record: the blob's hash, its signature and trust, whole-file coverage."""
        records = list(self.iter_records())
        verifier = Verifier(self.trust_roots())
        failed: list[tuple[str, str]] = []
        placeholders = 0
        for n, rec in enumerate(records, 1):
            if rec.path == PLACEHOLDER_PATH:
                # Honest only while the key is the placeholder key of that case and kind: a
                # real row relabelled as a placeholder (to hide a lost file) fails here.
                if rec.sha256 == placeholder_sha256(rec.case_id, rec.kind):
                    placeholders += 1
                else:
                    failed.append((rec.sha256, "marked as a seed placeholder but keyed as a file"))
            elif rec.sha256 not in self.blobs:
                failed.append((rec.sha256, "file missing from the archive"))
            elif not self.blobs.verify_blob(rec.sha256):
                failed.append((rec.sha256, "file does not match its SHA-256"))
            else:
                result = verifier.verify(self.blobs.get(rec.sha256), rec.sha256)
                if not result.ok:
                    failed.append(
                        (rec.sha256, "; ".join(f"{c.name}: {c.message}" for c in result.failed))
                    )
            if progress is not None:
                progress(n, len(records))
        return ArchiveReport(len(records) - placeholders, tuple(failed), placeholders)

    def export(self, folder: Path, records: Sequence[ArchivedRecord]) -> Path:
        """PDFs, a SHA-256 manifest and the CA certificate, for checking offline."""
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
        (folder / "SHA256SUMS").write_text("\n".join(lines) + ("\n" if lines else ""))
        shutil.copyfile(PkiPaths(self.pki_dir).ca_cert, folder / "bedside-ca.pem")
        return folder


def _lots(case: Case) -> list[str]:
    lots = []
    for step_id, keys in (
        (step.id, tuple(f"{scan.kind}_lot" for scan in step.scans))
        for step in case.protocol.steps
        if step.scans
    ):
        entry = case.current.get(step_id)
        if entry is None:
            continue
        for key in keys:
            value = entry.values.get(key)
            if value:
                lots.append(str(value))
    return lots
