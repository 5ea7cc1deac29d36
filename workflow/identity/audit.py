"""The authentication audit trail: every login, signing and account change, kept durably.

Failures are written in their own committed transaction before the refusal is raised, so a run
of wrong passwords is on record even though each attempt "fails". No row ever holds a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, insert, select

from workflow.store import _schema as s
from workflow.store._tx import read_tx, write_tx

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
