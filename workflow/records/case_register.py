"""Which signed records were made for which case, kept in the archive folder, not the database.

The archive index (a database table) says which record belongs to which case, but a database
writer can delete its rows; the signed PDFs would then lie in ``archive/`` unnamed, and a
catch-up would sign new records for whatever the database now says. So before a record's file
is stored, the archive notes it here, as an empty read-only file::

    archive/by-case/<case id>/<record sha256>.<kind>

Anything that archives a case first reads this folder (one small directory) and compares the
events signed into every record listed with the case's stored events (archive.py). The note is
written before the file, so a crash can leave a note without its file (ignored: no record was
stored) but never a stored record without its note.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_SAFE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Noted:
    case_id: str
    sha256: str
    kind: str


def _folder_name(case_id: str) -> str:
    # Case ids are uuid hex; anything else (an id from another system, a hostile row) is
    # named by its digest, so no id can reach outside the register.
    if _SAFE.match(case_id):
        return case_id
    return "sha256-" + hashlib.sha256(case_id.encode("utf-8")).hexdigest()


class CaseRegister:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, case_id: str) -> Path:
        return self.root / _folder_name(case_id)

    def note(self, case_id: str, sha256: str, kind: str, *, durable: bool = True) -> None:
        """Record that a record of ``kind`` with this hash is being stored for the case.
        ``durable=False`` leaves the fsyncs to the caller (a back-fill of many, synced once)."""
        if not _SAFE.match(kind) or len(sha256) != 64 or not set(sha256) <= _HEX:
            raise ValueError(f"not a record name: {sha256}.{kind}")
        folder = self.folder(case_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{sha256}.{kind}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            return
        if not durable:
            os.close(fd)
            return
        os.fsync(fd)
        os.close(fd)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @property
    def complete_stamp(self) -> Path:
        """Present once every record indexed before the register existed has been noted."""
        return self.root / ".complete"

    def withdraw(self, case_id: str, sha256: str, kind: str) -> None:
        """Only for a record its own writer withdrew (a lost race, blobstore.withdraw_unindexed)."""
        (self.folder(case_id) / f"{sha256}.{kind}").unlink(missing_ok=True)

    def noted(self, case_id: str) -> list[Noted]:
        folder = self.folder(case_id)
        if not folder.is_dir():
            return []
        out = []
        for entry in sorted(folder.iterdir()):
            sha, dot, kind = entry.name.partition(".")
            if dot and len(sha) == 64 and set(sha) <= _HEX:
                out.append(Noted(case_id, sha, kind))
        return out

    def kinds_by_sha(self) -> Iterator[tuple[str, str]]:
        """(sha256, kind) of every note, for the rare sweeps that need all of them."""
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if folder.is_dir():
                for entry in folder.iterdir():
                    sha, dot, kind = entry.name.partition(".")
                    if dot and len(sha) == 64:
                        yield sha, kind
