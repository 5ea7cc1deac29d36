"""Signed checkpoints of the whole event log, kept outside the database.

The log's two hash chains (store/chain.py) are unkeyed: anyone who can write the database can
edit an event and recompute every hash after it, and ``audit verify`` would pass. A checkpoint
anchors the log's head outside the database: ``(length, chain hash at that length)``, signed
with the site's checkpoint key, an Ed25519 key in ``pki/checkpoint-key.pem`` (0600) that the
database never holds. It is written as one read-only file in ``<home>/checkpoints/``

* by the archive, at every case it archives (with the records it signed), and
* by ``bedside audit verify --checkpoint``, after a walk of the whole log found it intact.

``bedside audit verify`` checks every checkpoint it finds (the home's, and any exported copy
given with ``--checkpoints DIR``) against the chain it recomputes: the chain hash at position
``length`` must be the checkpoint's hash, and a checkpoint longer than the log means events
were deleted. A re-computed chain cannot match a checkpoint signed before the edit.

Why a signature and not an HMAC: an exported copy (a WORM bucket, an auditor's laptop) can be
checked with the public key alone (``checkpoint-key.pub.pem``, written beside the checkpoints
and copied with them), without handing out a key that could make new checkpoints.

Files are named ``<length:012d>-<hash[:16]>-<random>.json`` and created by a hard link from a
fsynced temporary file, so several processes (and several servers sharing a home) never
overwrite or half-write one another's checkpoints.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from workflow.core.events import canonical_json, format_time, parse_time, sha256_hex
from workflow.store.models import ChainReport

CHECKPOINT_DIR = "checkpoints"
KEY_FILE = "checkpoint-key.pem"  # in pki/: the private key, 0600
PUBLIC_FILE = "checkpoint-key.pub.pem"  # beside the checkpoints: copied with them
FORMAT = 1
REASON_ARCHIVE = "archive"
REASON_VERIFY = "audit verify"


@dataclass(frozen=True)
class Checkpoint:
    """One signed statement: "the whole log had ``length`` events and ended in ``hash``"."""

    length: int
    hash: str
    at: datetime
    reason: str
    # The records signed with it (archive checkpoints): case_id, kind, sha256, events_sha256.
    records: tuple[Mapping[str, str], ...]
    path: Path

    def describe(self) -> str:
        what = self.reason
        cases = sorted({r["case_id"] for r in self.records})
        if cases:
            what += " of case " + ", ".join(cases)
        return f"checkpoint {self.path.name} ({what}, signed {format_time(self.at)})"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_hex(raw)[:16]


def _public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _link_into_place(folder: Path, name: str, data: bytes, mode: int) -> bool:
    """Write ``data`` to ``folder/name`` all at once: a fsynced temporary file hard-linked into
    place. False when the name exists already (it is never replaced)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", dir=folder)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, folder / name)
        except FileExistsError:
            return False
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint_key(pki: Path) -> Ed25519PrivateKey:
    """The site's checkpoint key from ``pki/``, made on first use (0600, in a 0700 folder).

    Two processes making it at once: the hard link lets exactly one win, and the other reads
    the winner's complete file."""
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = pki / KEY_FILE
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _link_into_place(pki, KEY_FILE, pem, 0o600)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


class CheckpointWriter:
    """Signs and writes checkpoints into one folder (normally ``<home>/checkpoints``)."""

    def __init__(self, folder: Path, key: Ed25519PrivateKey) -> None:
        self.folder = folder
        self._key = key
        self._key_id = key_id(key.public_key())
        folder.mkdir(parents=True, exist_ok=True)
        public = folder / PUBLIC_FILE
        if not public.exists():
            _link_into_place(folder, PUBLIC_FILE, _public_pem(key.public_key()), 0o444)

    def write(
        self,
        length: int,
        hash_: str,
        at: datetime,
        reason: str,
        records: Sequence[Mapping[str, str]] = (),
    ) -> Path:
        payload = {
            "format": FORMAT,
            "length": length,
            "hash": hash_,
            "at": format_time(at),
            "reason": reason,
            "records": [dict(r) for r in records],
            "host": os.uname().nodename,
            "pid": os.getpid(),
        }
        signature = self._key.sign(canonical_json(payload))
        body = {
            "checkpoint": payload,
            "key": self._key_id,
            "signature": base64.b64encode(signature).decode("ascii"),
        }
        data = json.dumps(body, indent=1, sort_keys=True).encode("utf-8") + b"\n"
        while True:  # the random part makes a clash all but impossible; never overwrite one
            name = f"{length:012d}-{hash_[:16]}-{secrets.token_hex(4)}.json"
            if _link_into_place(self.folder, name, data, 0o444):
                return self.folder / name


@dataclass(frozen=True)
class CheckpointSet:
    """Checkpoints read from a folder, and what was wrong with any file there."""

    checkpoints: tuple[Checkpoint, ...]
    problems: tuple[str, ...]


def checkpoint_files(folder: Path) -> Iterator[Path]:
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        if path.suffix == ".json" and not path.name.startswith("."):
            yield path


def folder_key(folder: Path) -> Ed25519PublicKey | None:
    """The public key kept beside the checkpoints of ``folder`` (an exported copy), if any."""
    public = folder / PUBLIC_FILE
    return load_public_key(public) if public.exists() else None


def read_checkpoints(folder: Path, key: Ed25519PublicKey | None) -> CheckpointSet:
    """Every checkpoint in ``folder``, each checked against ``key``. A file that does not
    parse or whose signature does not verify is a problem, never skipped quietly."""
    files = list(checkpoint_files(folder))
    if not files:
        return CheckpointSet((), ())
    if key is None:
        return CheckpointSet(
            (), (f"{folder}: {len(files)} checkpoint(s) but no key to check them with",)
        )
    found: list[Checkpoint] = []
    problems: list[str] = []
    for path in files:
        try:
            found.append(_read_one(path, key))
        except _Unreadable as exc:
            problems.append(f"{path}: {exc}")
    return CheckpointSet(tuple(found), tuple(problems))


class _Unreadable(Exception):
    pass


def _read_one(path: Path, key: Ed25519PublicKey) -> Checkpoint:
    try:
        body = json.loads(path.read_bytes())
        payload: dict[str, Any] = body["checkpoint"]
        signature = base64.b64decode(body["signature"], validate=True)
        named_key = str(body["key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _Unreadable(f"not a checkpoint file ({exc})") from None
    if named_key != key_id(key):
        raise _Unreadable(f"signed by another key ({named_key}, expected {key_id(key)})")
    try:
        key.verify(signature, canonical_json(payload))
    except (InvalidSignature, TypeError, ValueError):
        raise _Unreadable("its signature does not verify (the file was changed)") from None
    try:
        records = tuple({str(k): str(v) for k, v in r.items()} for r in payload["records"])
        return Checkpoint(
            int(payload["length"]),
            str(payload["hash"]),
            parse_time(str(payload["at"])),
            str(payload["reason"]),
            records,
            path,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _Unreadable(f"signed but malformed ({exc})") from None


def check_against(checkpoints: Iterable[Checkpoint], report: ChainReport) -> list[str]:
    """What each checkpoint says that the log (walked into ``report``) contradicts."""
    problems = []
    for cp in sorted(checkpoints, key=lambda c: (c.length, c.path.name)):
        if cp.length > report.log_length:
            problems.append(
                f"{cp.describe()} covers {cp.length} events, but the log holds only "
                f"{report.log_length}: events were deleted after it was signed"
            )
            continue
        stored = report.chain_at.get(cp.length)
        if stored != cp.hash:
            problems.append(
                f"{cp.describe()}: the log's chain hash at position {cp.length} is "
                f"{stored or 'missing'}, the checkpoint says {cp.hash}: an event at or before "
                f"position {cp.length} was changed, removed or inserted after it was signed "
                "(the chain was recomputed)"
            )
    return problems


def where_changed(checkpoints: Iterable[Checkpoint], report: ChainReport) -> str | None:
    """Between which log positions the change lies: after the longest checkpoint the log still
    matches, at or before the shortest one it contradicts (None when none is contradicted)."""
    held = [cp.length for cp in checkpoints if report.chain_at.get(cp.length) == cp.hash]
    broken = [cp.length for cp in checkpoints if report.chain_at.get(cp.length) != cp.hash]
    if not broken:
        return None
    first_bad = min(broken)
    last_good = max((n for n in held if n < first_bad), default=0)
    return (
        f"the log matches the checkpoints up to position {last_good}; the change lies in "
        f"positions {last_good + 1}-{first_bad}"
    )
