"""Server-side web sessions (table ``web_sessions``), shared by every ``bedside serve`` process.

The browser holds only a random token; the row is keyed by the token's SHA-256, so a copy of the
database does not hand out live cookies. Each function is one short transaction, except
:func:`mark_signature`, which runs inside the transaction that appends a signed event (a web
signature's event and its session's 11.200 state commit together or not at all).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, update

from workflow.core.errors import AuthError

from . import _schema as s
from ._tx import read_tx, write_tx
from .accounts import Account, account_by_id


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


class SessionEnded(AuthError):
    """The tablet's session ended (signed out, swept as idle, ended by a sign-in) between the
    page and the signature: the signature is refused and nothing of it is written."""

    code = "not_signed_in"

    def __init__(self) -> None:
        super().__init__("Your session has ended; please sign in again.")


@dataclass(frozen=True)
class SignatureMark:
    """What one signature made at a tablet changes in that tablet's web session.

    ``times`` (period start, last use) and ``verifier`` are set when the session's own user
    signed: their 11.200 continuous period goes on (or starts anew after a full check), with a
    new password verifier when the check made one. ``cosigner`` is set when another person
    signed there (the blinded second checker): their own continuity, kept under ``COSIGNERS``.
    """

    session_id: str
    times: tuple[datetime, datetime] | None = None
    verifier: str | None = None
    cosigner: tuple[str, dict[str, Any]] | None = None


# Key in ``data`` of the signing session's password verifier.
VERIFIER = "password_verifier"
# Key in ``data`` of the second signers' continuity at this tablet (SignatureMark.cosigner):
# their user id, period start, last signature and verifier; the most recent MAX_COSIGNERS kept,
# all wiped when the session ends.
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


# Read (and for a signature, written) on every request: built once, as SQLAlchemy builds and
# keys a statement made per call again each time (bench/profile_step.py).
_SESSION = select(s.web_sessions).where(s.web_sessions.c.id == bindparam("session_id"))
_LIVE = (
    s.web_sessions.c.id == bindparam("b_session_id"),
    s.web_sessions.c.ended_at.is_(None),
)
_LIVE_DATA = (
    select(s.web_sessions.c.data)
    .where(s.web_sessions.c.id == bindparam("session_id"), s.web_sessions.c.ended_at.is_(None))
    .with_for_update()
)
_MARK = update(s.web_sessions).where(*_LIVE)


def get(engine: Engine, token: str) -> WebSession | None:
    with read_tx(engine) as conn:
        return _get(conn, token)


def get_with_account(engine: Engine, token: str) -> tuple[WebSession, Account | None] | None:
    """The session a cookie names and its account (None: no such account), in one read
    transaction: every web request reads both, and on PostgreSQL a transaction of its own is
    two round trips more (bench/profile_step.py)."""
    with read_tx(engine) as conn:
        session = _get(conn, token)
        return None if session is None else (session, account_by_id(conn, session.user_id))


def _get(conn: Connection, token: str) -> WebSession | None:
    row = conn.execute(_SESSION, {"session_id": token_key(token)}).first()
    if row is None:
        return None
    m = dict(row._mapping)
    m["data"] = json.loads(m["data"] or "{}")
    return WebSession(**m)


def touch(engine: Engine, session_id: str, now: datetime) -> None:
    _set(engine, session_id, last_seen_at=now)


def mark_signature(conn: Connection, mark: SignatureMark) -> None:
    """Record a signature in its web session, inside the caller's write transaction (the one
    appending the signed event). The session must still be live: an ended or unknown session
    raises SessionEnded, which rolls the event back with it."""
    if mark.times is not None and not mark.verifier and mark.cosigner is None:
        # Only the period's times (a signature in a continuous session, most steps): one
        # statement, its count the liveness check; the data need not be read to be merged.
        start, last = mark.times
        moved = conn.execute(
            _MARK,
            {
                "b_session_id": mark.session_id,
                "signing_started_at": start,
                "signing_last_used_at": last,
            },
        )
        if moved.rowcount != 1:
            raise SessionEnded()
        return
    row = conn.execute(_LIVE_DATA, {"session_id": mark.session_id}).first()
    if row is None:
        raise SessionEnded()
    values: dict[str, Any] = {}
    data = dict(json.loads(row.data or "{}"))
    if mark.times is not None:
        values["signing_started_at"], values["signing_last_used_at"] = mark.times
    if mark.verifier:
        data[VERIFIER] = mark.verifier
    if mark.cosigner is not None:
        _keep_cosigner(data, *mark.cosigner)
    if mark.verifier or mark.cosigner is not None:
        values["data"] = json.dumps(data)
    if values:
        conn.execute(_MARK, {"b_session_id": mark.session_id, **values})


def _keep_cosigner(data: dict[str, Any], username: str, state: dict[str, Any]) -> None:
    cosigners = dict(data.get(COSIGNERS) or {})
    cosigners.pop(username, None)
    cosigners[username] = state
    data[COSIGNERS] = dict(list(cosigners.items())[-MAX_COSIGNERS:])


def end(engine: Engine, session_id: str, now: datetime) -> None:
    with write_tx(engine) as conn:
        conn.execute(
            update(s.web_sessions)
            .where(s.web_sessions.c.id == session_id, s.web_sessions.c.ended_at.is_(None))
            .values(ended_at=now, data="{}")  # an ended session keeps no password verifier
        )


def end_if_idle(engine: Engine, session_id: str, now: datetime, idle: timedelta) -> bool:
    """End the session, wiping its verifiers, if it has not been used for longer than ``idle``.
    The check and the wipe are one statement, so a request that just used the session wins."""
    t = s.web_sessions
    with write_tx(engine) as conn:
        done = conn.execute(
            update(t)
            .where(t.c.id == session_id, t.c.ended_at.is_(None), t.c.last_seen_at < now - idle)
            .values(ended_at=now, data="{}")
        )
        return bool(done.rowcount)


@dataclass(frozen=True)
class Continuity:
    """21 CFR 11.200's limits on one continuous signing period (SecurityPolicy's)."""

    idle: timedelta
    max_length: timedelta

    def lapsed(self, started: datetime, last_used: datetime, now: datetime) -> bool:
        return now - last_used > self.idle or now - started > self.max_length


def wipe_lapsed(data: dict[str, Any], row: Any, now: datetime, limits: Continuity) -> bool:
    """Drop from ``data`` every verifier whose signing period has lapsed: the session's own
    (its signing times) and each co-signer's (their own). True when anything was dropped. A
    lapsed verifier can never be used again (both components are needed), so keeping it would
    only leave a fast guessing target in the database."""
    changed = False
    if VERIFIER in data and limits.lapsed(row.signing_started_at, row.signing_last_used_at, now):
        del data[VERIFIER]
        changed = True
    cosigners = data.get(COSIGNERS)
    if isinstance(cosigners, dict):
        kept = {}
        for name, state in cosigners.items():
            try:
                live = not limits.lapsed(
                    datetime.fromisoformat(state["started_at"]),
                    datetime.fromisoformat(state["last_used_at"]),
                    now,
                )
            except (KeyError, TypeError, ValueError):
                live = False  # unreadable: never usable, so never kept
            if live:
                kept[name] = state
        if len(kept) != len(cosigners):
            changed = True
            if kept:
                data[COSIGNERS] = kept
            else:
                del data[COSIGNERS]
    return changed


def lapse(
    engine: Engine, session_id: str, now: datetime, limits: Continuity
) -> dict[str, Any] | None:
    """Wipe the session's lapsed verifiers in the transaction that finds them lapsed; returns
    the session's data as it now is (None for an ended or unknown session)."""
    t = s.web_sessions
    live = (t.c.id == session_id, t.c.ended_at.is_(None))
    with write_tx(engine) as conn:
        row = conn.execute(
            select(t.c.data, t.c.signing_started_at, t.c.signing_last_used_at).where(*live)
        ).first()
        if row is None:
            return None
        data = dict(json.loads(row.data or "{}"))
        if wipe_lapsed(data, row, now, limits):
            conn.execute(update(t).where(*live).values(data=json.dumps(data)))
        return data


@dataclass(frozen=True)
class Swept:
    ended: int  # sessions idle past the web timeout, ended and wiped
    wiped: int  # live sessions whose lapsed verifiers were dropped
    purged: int  # ended sessions older than the retention, deleted


def sweep(
    engine: Engine, now: datetime, idle: timedelta, limits: Continuity, retention: timedelta
) -> Swept:
    """The scheduled clean-up (``bedside serve`` runs it every few minutes): end sessions
    nobody came back to (their verifiers go with them), drop lapsed verifiers from live ones,
    and delete sessions that ended longer ago than ``retention``. One transaction."""
    t = s.web_sessions
    with write_tx(engine) as conn:
        ended = conn.execute(
            update(t)
            .where(t.c.ended_at.is_(None), t.c.last_seen_at < now - idle)
            .values(ended_at=now, data="{}")
        ).rowcount
        wiped = 0
        rows = conn.execute(
            select(t.c.id, t.c.data, t.c.signing_started_at, t.c.signing_last_used_at).where(
                t.c.ended_at.is_(None), t.c.data != "{}"
            )
        ).all()
        for row in rows:
            data = dict(json.loads(row.data or "{}"))
            if wipe_lapsed(data, row, now, limits):
                conn.execute(update(t).where(t.c.id == row.id).values(data=json.dumps(data)))
                wiped += 1
        purged = conn.execute(
            delete(t).where(t.c.ended_at.is_not(None), t.c.ended_at < now - retention)
        ).rowcount
        return Swept(int(ended or 0), wiped, int(purged or 0))


def _set(engine: Engine, session_id: str, **values: Any) -> None:
    with write_tx(engine) as conn:
        conn.execute(
            update(s.web_sessions).where(s.web_sessions.c.id == session_id).values(**values)
        )
