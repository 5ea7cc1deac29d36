from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from workflow.core.errors import IntegrityError, NotFound
from workflow.records.blobstore import BlobStore


def test_put_get_is_content_addressed_and_read_only(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "archive")
    sha = store.put(b"%PDF-1.7 record one")
    assert sha == hashlib.sha256(b"%PDF-1.7 record one").hexdigest()
    assert store.get(sha) == b"%PDF-1.7 record one"
    assert store.path(sha) == tmp_path / "archive" / sha[:2] / sha
    assert stat.S_IMODE(store.path(sha).stat().st_mode) == 0o444
    assert sha in store
    assert store.verify_blob(sha)


def test_same_bytes_twice_is_a_no_op(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    sha = store.put(b"same")
    before = store.path(sha).stat()
    assert store.put(b"same") == sha
    after = store.path(sha).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert list(store.iter_hashes()) == [sha]
    assert not [p for p in store.path(sha).parent.iterdir() if p.name.startswith(".")]


def test_different_content_at_a_hash_path_is_an_integrity_error(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    sha = store.put(b"original")
    target = store.path(sha)
    # Simulate disk corruption or tampering behind the store's back.
    os.chmod(target, 0o644)
    target.write_bytes(b"tampered")
    assert not store.verify_blob(sha)
    with pytest.raises(IntegrityError, match=sha):
        store.put(b"original")
    assert target.read_bytes() == b"tampered"  # never overwritten, not even to repair


def test_iter_hashes_and_missing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    shas = sorted(store.put(bytes([i]) * 10) for i in range(20))
    (tmp_path / shas[0][:2] / ".incoming-leftover").write_bytes(b"half")
    assert list(store.iter_hashes()) == shas
    with pytest.raises(NotFound):
        store.get("0" * 64)
    with pytest.raises(NotFound):
        store.path("../../etc/passwd")
    with pytest.raises(NotFound):
        store.verify_blob("f" * 64)
    assert "nonsense" not in store


def test_no_delete_api() -> None:
    public = [n for n in dir(BlobStore) if not n.startswith("_")]
    assert not [n for n in public if any(w in n for w in ("del", "remove", "unlink", "drop"))]
