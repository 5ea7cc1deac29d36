"""A write-once, content-addressed file store for signed record PDFs.

A blob lives at ``<root>/<aa>/<sha256>`` (two-character fan-out keeps folders small). Writes go
to a temporary file in the same folder, are fsynced, then hard-linked into place: ``os.link``
fails if the name exists, so a stored blob is never replaced, even by a concurrent writer. The
file is then made read-only (0444). There is deliberately no delete of a record: records are
kept, and a correction is a new record. The one removal, :meth:`BlobStore.withdraw_unindexed`, is
for a file its own writer has just found to be a duplicate that the index refused, before
anyone could have been told of it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from workflow.core.errors import IntegrityError, NotFound

_HEX = frozenset("0123456789abcdef")
_CHUNK = 1 << 20


def _check_sha(sha: str) -> str:
    if len(sha) != 64 or not set(sha) <= _HEX:
        raise NotFound(f"not a SHA-256 hex digest: {sha!r}")
    return sha


def _fsync_dir(folder: Path) -> None:
    # The new name is only durable once its directory entry is on disk.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class BlobStore:
    """``suffix`` (e.g. ``.pdf``) lets people open archived files directly."""

    def __init__(self, root: Path, suffix: str = "") -> None:
        self.root = root
        self.suffix = suffix
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        sha = _check_sha(sha)
        return self.root / sha[:2] / (sha + self.suffix)

    def put(self, data: bytes) -> str:
        """Store ``data``; return its SHA-256. Storing the same bytes again changes nothing."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if target.exists():
            self._check_existing(target, data, sha)
            return sha
        target.parent.mkdir(exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o444)
            try:
                os.link(tmp, target)
            except FileExistsError:
                # Someone stored it between our check and our link; theirs must be the same.
                self._check_existing(target, data, sha)
                return sha
            _fsync_dir(target.parent)
        finally:
            tmp.unlink(missing_ok=True)
        return sha

    def _check_existing(self, target: Path, data: bytes, sha: str) -> None:
        if target.read_bytes() != data:
            raise IntegrityError(f"archive entry {sha} exists with different content")

    def withdraw_unindexed(self, sha: str) -> None:
        """Remove a blob that this process wrote and the index then refused (a lost race).

        Only the archive calls this, and only for a hash it has just stored and failed to
        index because another record with the same events was indexed first: no index row, no
        answer and no export ever named it.
        """
        target = self.path(sha)
        target.unlink(missing_ok=True)
        _fsync_dir(target.parent)

    def get(self, sha: str) -> bytes:
        target = self.path(sha)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no archived record {sha}") from None

    def __contains__(self, sha: str) -> bool:
        try:
            return self.path(sha).is_file()
        except NotFound:
            return False

    def iter_hashes(self) -> Iterator[str]:
        """Every stored hash, sorted (temporary files of unfinished writes are skipped)."""
        for fan in sorted(p for p in self.root.iterdir() if p.is_dir() and len(p.name) == 2):
            for entry in sorted(fan.iterdir()):
                name = entry.name
                if self.suffix:
                    if not name.endswith(self.suffix):
                        continue
                    name = name[: -len(self.suffix)]
                if len(name) == 64 and set(name) <= _HEX and name.startswith(fan.name):
                    yield name

    def leftovers(self) -> Iterator[Path]:
        """Temporary files of writes that never reached their link (``.incoming-*``): a
        process killed mid-write, or a live writer's file (young)."""
        for fan in sorted(p for p in self.root.iterdir() if p.is_dir() and len(p.name) == 2):
            for entry in sorted(fan.iterdir()):
                if entry.name.startswith(".incoming-") and entry.is_file():
                    yield entry

    def complete_leftover(self, leftover: Path) -> str | None:
        """Finish a cut-off write whose temporary file holds a whole blob: link it into place
        under its hash (never replacing a stored blob) and remove the temporary name. Returns
        the hash, or None when the blob was already stored."""
        sha = file_sha256(leftover)
        target = self.path(sha)
        os.chmod(leftover, 0o444)
        try:
            os.link(leftover, target)
        except FileExistsError:
            leftover.unlink(missing_ok=True)
            return None
        _fsync_dir(target.parent)
        leftover.unlink(missing_ok=True)
        return sha

    def verify_blob(self, sha: str) -> bool:
        """True when the stored bytes still hash to their name."""
        target = self.path(sha)
        if not target.is_file():
            raise NotFound(f"no archived record {sha}")
        return file_sha256(target) == sha
