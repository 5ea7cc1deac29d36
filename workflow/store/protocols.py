"""Protocol texts by content hash: what a case was opened under, kept for replay forever."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from workflow.core.errors import IntegrityError, NotFound
from workflow.core.events import sha256_hex

from . import _schema as s


def save_protocol_text(
    conn: Connection, *, text: bytes, protocol_id: str, version: str, kind: str, now: datetime
) -> str:
    """Store a protocol file's bytes under their SHA-256 (once; the same text again is a
    no-op). Returns the hash."""
    sha = sha256_hex(text)
    row = conn.execute(select(s.protocols.c.text).where(s.protocols.c.sha256 == sha)).first()
    decoded = text.decode("utf-8")
    if row is not None:
        if row.text != decoded:
            raise IntegrityError(f"protocol {sha} is stored with different text")
        return sha
    # Two processes saving the same new text at once (two first orders, two servers' first
    # doses): the second insert meets the first's row; in a savepoint, so the caller's
    # transaction goes on, and the row is then checked like one found above.
    try:
        with conn.begin_nested():
            conn.execute(
                insert(s.protocols).values(
                    sha256=sha,
                    protocol_id=protocol_id,
                    version=version,
                    kind=kind,
                    text=decoded,
                    created_at=now,
                )
            )
    except DBIntegrityError:
        row = conn.execute(select(s.protocols.c.text).where(s.protocols.c.sha256 == sha)).one()
        if row.text != decoded:
            raise IntegrityError(f"protocol {sha} is stored with different text") from None
    return sha


def load_protocol_text(conn: Connection, sha: str) -> tuple[str, bytes]:
    """(kind, bytes) of a stored protocol; the bytes hash to ``sha``."""
    row = conn.execute(select(s.protocols).where(s.protocols.c.sha256 == sha)).first()
    if row is None:
        raise NotFound(f"no stored protocol {sha}")
    data = str(row.text).encode("utf-8")
    if sha256_hex(data) != sha:
        raise IntegrityError(f"stored protocol {sha} no longer matches its hash")
    return str(row.kind), data
