"""Server-side web sessions (table ``web_sessions``), shared by every ``bedside serve`` process.

The browser holds only a random token; the row is keyed by the token's SHA-256, so a copy of the
database does not hand out live cookies. Each function is one short transaction.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from . import _schema as s
from ._tx import read_tx, write_tx


@dataclass(frozen=True)
class WebSession:
    id: str  # sha256 of the cookie token
    user_id: str
    username: str
    created_at: datetime
    last_seen_at: datetime
    signing_started_at: datetime
    signing_last_used_at: datetime
    csrf_secret: str
    ended_at: datetime | None
    data: dict[str, Any]


# Key in ``data`` of the signing session's password verifier.
VERIFIER = "password_verifier"
# Key in ``data`` of the second signers' continuity at this tablet (remember_cosigner).
COSIGNERS = "cosigners"
MAX_COSIGNERS = 8  # people who co-sign at one tablet in one session, most recent kept


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create(
    engine: Engine, user_id: str, username: str, now: datetime, verifier: str | None = None
) -> tuple[str, WebSession]:
    """A new session; returns the cookie token (shown once, never stored) and the row.
    ``verifier`` is the signing session's password verifier (identity.session_proof)."""
    token = secrets.token_urlsafe(32)
    data = {VERIFIER: verifier} if verifier else {}
    values: dict[str, Any] = {
        "id": token_key(token),
        "user_id": user_id,
        "username": username,
        "created_at": now,
        "last_seen_at": now,
        "signing_started_at": now,
        "signing_last_used_at": now,
        "csrf_secret": secrets.token_hex(32),
        "ended_at": None,
        "data": json.dumps(data),
    }
    with write_tx(engine) as conn:
        conn.execute(insert(s.web_sessions).values(**values))
    values["data"] = data
    return token, WebSession(**values)


def get(engine: Engine, token: str) -> WebSession | None:
    with read_tx(engine) as conn:
        row = conn.execute(
            select(s.web_sessions).where(s.web_sessions.c.id == token_key(token))
        ).first()
    if row is None:
        return None
    m = dict(row._mapping)
    m["data"] = json.loads(m["data"] or "{}")
    return WebSession(**m)


def touch(engine: Engine, session_id: str, now: datetime) -> None:
    _set(engine, session_id, last_seen_at=now)


def signed(
    engine: Engine,
    session_id: str,
    last_used: datetime,
    started: datetime,
    verifier: str | None = None,
) -> None:
    """Record the 11.200 continuous signing session's new times after a signature, and its
    new password verifier when the signature made one (after a password change)."""
    values: dict[str, Any] = {"signing_started_at": started, "signing_last_used_at": last_used}
    if verifier:
        _change_data(engine, session_id, lambda data: data.update({VERIFIER: verifier}), **values)
    else:
        _set(engine, session_id, **values)


def remember_cosigner(
    engine: Engine, session_id: str, username: str, state: dict[str, Any]
) -> None:
    """Keep a second signer's continuity at this tablet (identity.sessions.Credentials):
    their user id, period start, last signature and password verifier, under ``COSIGNERS``.
    The most recent ``MAX_COSIGNERS`` are kept; ending the session wipes them all."""

    def keep(data: dict[str, Any]) -> None:
        cosigners = dict(data.get(COSIGNERS) or {})
        cosigners.pop(username, None)
        cosigners[username] = state
        data[COSIGNERS] = dict(list(cosigners.items())[-MAX_COSIGNERS:])

    _change_data(engine, session_id, keep)


def _change_data(
    engine: Engine, session_id: str, change: Callable[[dict[str, Any]], None], **values: Any
) -> None:
    """Change a live session's ``data`` (and set ``values``) in one transaction: the session's
    verifier and its co-signers' live side by side there, so it is read, changed and written
    back, never replaced whole. An ended session is left as its end wiped it."""
    t = s.web_sessions
    live = (t.c.id == session_id, t.c.ended_at.is_(None))
    with write_tx(engine) as conn:
        raw = conn.execute(select(t.c.data).where(*live)).scalar()
        if raw is None:
            return
        data = dict(json.loads(raw or "{}"))
        change(data)
        conn.execute(update(t).where(*live).values(data=json.dumps(data), **values))


def end(engine: Engine, session_id: str, now: datetime) -> None:
    with write_tx(engine) as conn:
        conn.execute(
            update(s.web_sessions)
            .where(s.web_sessions.c.id == session_id, s.web_sessions.c.ended_at.is_(None))
            .values(ended_at=now, data="{}")  # an ended session keeps no password verifier
        )


def purge_ended(engine: Engine, before: datetime) -> int:
    """Delete sessions that ended (or were last seen) before ``before``."""
    t = s.web_sessions
    with write_tx(engine) as conn:
        result = conn.execute(delete(t).where(t.c.last_seen_at < before))
        return int(result.rowcount or 0)


def _set(engine: Engine, session_id: str, **values: Any) -> None:
    with write_tx(engine) as conn:
        conn.execute(
            update(s.web_sessions).where(s.web_sessions.c.id == session_id).values(**values)
        )
