"""The authentication audit trail: every login, signing and account change, kept durably.

Failures are written in their own committed transaction before the refusal is raised, so a run
of wrong passwords is on record even though each attempt "fails". No row ever holds a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, func, insert, select

from workflow.store import _schema as s
from workflow.store._tx import read_tx, write_tx

from .errors import UNKNOWN_USER

# Actions (stored words).
LOGIN = "login"
SIGN = "sign"
PASSWORD_CHANGE = "password_change"  # noqa: S105 - an action word
PASSWORD_RESET = "password_reset"  # noqa: S105 - an action word
USER_ADDED = "user_added"
DEACTIVATED = "deactivated"
REACTIVATED = "reactivated"
ROLES_CHANGED = "roles_changed"
LOCKED = "locked"
UNLOCKED = "unlocked"
SESSION_END = "session_end"

OK = "ok"
REFUSED = "refused"


@dataclass(frozen=True)
class AuthEvent:
    at: datetime
    username: str
    user_id: str | None
    action: str
    outcome: str
    reason: str
    by_user_id: str | None


def record(
    conn: Connection,
    *,
    at: datetime,
    username: str,
    user_id: str | None,
    action: str,
    outcome: str,
    reason: str,
    by_user_id: str | None = None,
) -> None:
    conn.execute(
        insert(s.auth_events).values(
            at=at,
            username=username[:64],
            user_id=user_id,
            action=action,
            outcome=outcome,
            reason=reason,
            by_user_id=by_user_id,
        )
    )


def record_now(engine: Engine, **fields: object) -> None:
    """Record in a transaction of its own (committed before the caller raises)."""
    with write_tx(engine) as conn:
        record(conn, **fields)  # type: ignore[arg-type]


def list_events(
    engine: Engine,
    *,
    username: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[AuthEvent]:
    """Newest first."""
    t = s.auth_events
    query = select(t)
    if username is not None:
        query = query.where(t.c.username == username)
    if outcome is not None:
        query = query.where(t.c.outcome == outcome)
    if since is not None:
        query = query.where(t.c.at >= since)
    query = query.order_by(t.c.at.desc(), t.c.id.desc()).limit(limit)
    with read_tx(engine) as conn:
        return [
            AuthEvent(r.at, r.username, r.user_id, r.action, r.outcome, r.reason, r.by_user_id)
            for r in conn.execute(query)
        ]


def _unknown_lock(conn: Connection, username: str) -> tuple[int, datetime] | None:
    """The latest lock recorded for a username no account holds: (event id, time)."""
    t = s.auth_events
    row = conn.execute(
        select(t.c.id, t.c.at)
        .where(t.c.username == username[:64], t.c.user_id.is_(None), t.c.action == LOCKED)
        .order_by(t.c.id.desc())
        .limit(1)
    ).first()
    return (int(row.id), row.at) if row is not None else None


def unknown_locked_until(
    engine: Engine, username: str, lockout: timedelta, now: datetime
) -> datetime | None:
    """When a username nobody holds stops being "locked", or None if it is not."""
    with read_tx(engine) as conn:
        lock = _unknown_lock(conn, username)
    if lock is None or lock[1] + lockout <= now:
        return None
    return lock[1] + lockout


def count_unknown(
    engine: Engine, username: str, action: str, now: datetime, max_attempts: int
) -> int:
    """Record a guess at a username nobody holds and, after ``max_attempts`` of them since its
    last lock, lock it as an account would be (same counting, same trail), so lockout does not
    tell which usernames exist. The trail keeps the true reason, ``unknown_user``. Returns the
    guesses counted since the last lock (as an account's failed attempts are counted)."""
    t = s.auth_events
    with write_tx(engine) as conn:
        record(
            conn,
            at=now,
            username=username,
            user_id=None,
            action=action,
            outcome=REFUSED,
            reason=UNKNOWN_USER,
        )
        lock = _unknown_lock(conn, username)
        query = (
            select(func.count())
            .select_from(t)
            .where(
                t.c.username == username[:64],
                t.c.user_id.is_(None),
                t.c.outcome == REFUSED,
                t.c.reason == UNKNOWN_USER,
            )
        )
        if lock is not None:
            query = query.where(t.c.id > lock[0])
        failed = int(conn.execute(query).scalar_one())
        if failed >= max_attempts:
            record(
                conn,
                at=now,
                username=username,
                user_id=None,
                action=LOCKED,
                outcome=OK,
                reason=f"{failed}_failed_attempts",
            )
        return failed
