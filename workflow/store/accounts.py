"""User accounts and the authentication audit trail (tables ``users`` and ``auth_events``).

All the SQL identity needs, as operations of one transaction each: identity decides (password
checks, lockout policy, roles), this module only reads and writes rows. Failures are recorded
in their own committed transaction before the refusal is raised, so a run of wrong passwords
is on record even though each attempt "fails". No row ever holds a password.

Accounts are never deleted and usernames never reused (21 CFR 11.100); no two active accounts
print the same name (:func:`_same_printed_name`), so a printed name on a record points at one
person.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from workflow.core.errors import InputError, NotFound
from workflow.core.names import name_key

from . import _schema as s
from ._tx import read_tx, write_tx

# Stored words of the trail that this module writes itself (identity names the actions).
# Every signature reads its account (twice) and writes a trail line: statements built once, as
# SQLAlchemy builds and keys a statement made per call again each time (bench/profile_step.py).
_BY_ID = select(s.users).where(s.users.c.id == bindparam("user_id"))
_BY_USERNAME = select(s.users).where(s.users.c.username == bindparam("username"))
_INSERT_TRAIL = insert(s.auth_events)

OK = "ok"
REFUSED = "refused"
LOCKED = "locked"

# pg_advisory_xact_lock key serialising printed-name checks ("BSPN" in ASCII).
_PRINTED_NAME_LOCK = 0x4253504E


@dataclass(frozen=True)
class Account:
    """A ``users`` row as stored, password hash included: identity's, never shown."""

    id: str
    username: str
    printed_name: str
    roles: str  # space-separated, sorted (identity.roles encodes and decodes)
    active: bool
    password_hash: str
    password_changed_at: datetime
    must_change_password: bool
    failed_attempts: int
    locked_until: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class AuthEvent:
    """One line of the authentication trail."""

    at: datetime
    username: str
    user_id: str | None
    action: str
    outcome: str
    reason: str
    by_user_id: str | None = None


class Accounts:
    """The accounts and the trail of one database. Each method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- reading ---------------------------------------------------------------------------

    def by_username(self, username: str) -> Account | None:
        with read_tx(self.engine) as conn:
            return _by_username(conn, username)

    def by_id(self, user_id: str) -> Account | None:
        with read_tx(self.engine) as conn:
            return account_by_id(conn, user_id)

    def all(self, *, include_inactive: bool = True) -> list[Account]:
        query = select(s.users).order_by(s.users.c.username)
        if not include_inactive:
            query = query.where(s.users.c.active.is_(True))
        with read_tx(self.engine) as conn:
            return [_account(r) for r in conn.execute(query)]

    # --- writing ---------------------------------------------------------------------------

    def add(self, values: Mapping[str, Any], entry: AuthEvent) -> Account:
        """Insert a new account and its trail line. Raises InputError (``username`` taken,
        ``printed_name`` already printed by an active account)."""
        name = str(values["username"])
        taken = InputError("username", f"{name!r} is already taken (usernames are never reused)")
        with write_tx(self.engine) as conn:
            if _by_username(conn, name) is not None:
                raise taken
            holder = _same_printed_name(conn, str(values["printed_name"]))
            if holder is not None:
                raise _printed_name_taken(str(values["printed_name"]), holder)
            try:
                conn.execute(insert(s.users).values(**values))
            except DBIntegrityError:
                raise taken from None
            _record(conn, entry)
            return _require(conn, name)

    def change(
        self,
        username: str,
        changes: Mapping[str, Any],
        *,
        action: str,
        by: str | None,
        at: datetime,
    ) -> Account:
        """An administrator's change to an account, with its trail line. Raises NotFound, and
        InputError (``printed_name``) when reactivating an account whose printed name an active
        account now prints."""
        with write_tx(self.engine) as conn:
            row = _require(conn, username)
            if changes.get("active") is True and not row.active:
                holder = _same_printed_name(conn, row.printed_name, other_than=row.id)
                if holder is not None:
                    raise _printed_name_taken(row.printed_name, holder)
            conn.execute(update(s.users).where(s.users.c.id == row.id).values(**changes))
            _record(
                conn,
                AuthEvent(at, row.username, row.id, action, OK, OK, by_user_id=by),
            )
            return _require(conn, row.username)

    def succeeded(
        self, user_id: str, changes: Mapping[str, Any], entry: AuthEvent | None
    ) -> Account:
        """A proven password: apply ``changes`` (a cleared failure count, a rehash, a new
        password) and write ``entry``, in one transaction; the account as it now is."""
        with write_tx(self.engine) as conn:
            if changes:
                conn.execute(update(s.users).where(s.users.c.id == user_id).values(**changes))
            if entry is not None:
                _record(conn, entry)
            row = conn.execute(_BY_ID, {"user_id": user_id}).first()
            if row is None:
                raise NotFound(f"no user with id {user_id}")
            return _account(row)

    def count_failure(
        self, account: Account, entry: AuthEvent, max_attempts: int, lockout: timedelta
    ) -> int:
        """A wrong password for ``account``: count it (in SQL: two at once must both count),
        write ``entry``, and lock the account for ``lockout`` at ``max_attempts``. Returns the
        failures in a row so far (the refusal turns it into the tries left)."""
        with write_tx(self.engine) as conn:
            conn.execute(
                update(s.users)
                .where(s.users.c.id == account.id)
                .values(failed_attempts=s.users.c.failed_attempts + 1)
            )
            _record(conn, entry)
            failed = _require(conn, account.username).failed_attempts
            if failed >= max_attempts:
                conn.execute(
                    update(s.users)
                    .where(s.users.c.id == account.id)
                    .values(failed_attempts=0, locked_until=entry.at + lockout)
                )
                _record(
                    conn,
                    AuthEvent(
                        entry.at,
                        account.username,
                        account.id,
                        LOCKED,
                        OK,
                        f"{failed}_failed_attempts",
                    ),
                )
        return int(failed)

    # --- the trail -------------------------------------------------------------------------

    def record(self, entry: AuthEvent) -> None:
        """Write one trail line in a transaction of its own (committed before a refusal)."""
        with write_tx(self.engine) as conn:
            _record(conn, entry)

    def events(
        self,
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
        with read_tx(self.engine) as conn:
            return [
                AuthEvent(r.at, r.username, r.user_id, r.action, r.outcome, r.reason, r.by_user_id)
                for r in conn.execute(query)
            ]

    def unknown_locked_until(
        self, username: str, lockout: timedelta, now: datetime
    ) -> datetime | None:
        """When a username nobody holds stops being "locked", or None if it is not."""
        with read_tx(self.engine) as conn:
            lock = _unknown_lock(conn, username)
        if lock is None or lock[1] + lockout <= now:
            return None
        return lock[1] + lockout

    def count_unknown(self, entry: AuthEvent, max_attempts: int) -> int:
        """Record a guess at a username nobody holds (``entry``, its reason the trail's word
        for an unknown user) and, after ``max_attempts`` of them since its last lock, lock it
        as an account would be (same counting, same trail), so lockout does not tell which
        usernames exist."""
        t = s.auth_events
        with write_tx(self.engine) as conn:
            _record(conn, entry)
            lock = _unknown_lock(conn, entry.username)
            query = (
                select(func.count())
                .select_from(t)
                .where(
                    t.c.username == entry.username[:64],
                    t.c.user_id.is_(None),
                    t.c.outcome == REFUSED,
                    t.c.reason == entry.reason,
                )
            )
            if lock is not None:
                query = query.where(t.c.id > lock[0])
            failed = int(conn.execute(query).scalar_one())
            if failed >= max_attempts:
                _record(
                    conn,
                    AuthEvent(
                        entry.at, entry.username, None, LOCKED, OK, f"{failed}_failed_attempts"
                    ),
                )
        return failed


def account_by_id(conn: Connection, user_id: str) -> Account | None:
    """The account ``user_id``, read in the caller's transaction (a web request's session and
    its account in one snapshot: web_sessions.get_with_account)."""
    row = conn.execute(_BY_ID, {"user_id": user_id}).first()
    return _account(row) if row is not None else None


def _account(row: Row[Any]) -> Account:
    return Account(
        id=row.id,
        username=row.username,
        printed_name=row.printed_name,
        roles=row.roles,
        active=row.active,
        password_hash=row.password_hash,
        password_changed_at=row.password_changed_at,
        must_change_password=row.must_change_password,
        failed_attempts=row.failed_attempts,
        locked_until=row.locked_until,
        created_at=row.created_at,
    )


def _by_username(conn: Connection, username: str) -> Account | None:
    row = conn.execute(_BY_USERNAME, {"username": username.strip().lower()}).first()
    return _account(row) if row is not None else None


def _require(conn: Connection, username: str) -> Account:
    account = _by_username(conn, username)
    if account is None:
        raise NotFound(f"no user {username!r}")
    return account


def _record(conn: Connection, entry: AuthEvent) -> None:
    conn.execute(
        _INSERT_TRAIL,
        {
            "at": entry.at,
            "username": entry.username[:64],
            "user_id": entry.user_id,
            "action": entry.action,
            "outcome": entry.outcome,
            "reason": entry.reason,
            "by_user_id": entry.by_user_id,
        },
    )


def _same_printed_name(
    conn: Connection, name: str, *, other_than: str | None = None
) -> Account | None:
    """An active account whose printed name is ``name`` as records compare names
    (NFKC, case and spaces ignored), other than the account ``other_than``.

    On PostgreSQL the caller's transaction first takes an advisory lock, so two registrations
    of one name at the same instant are decided one after the other (SQLite's write
    transactions already are).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PRINTED_NAME_LOCK})
    key = name_key(name)
    rows = conn.execute(select(s.users).where(s.users.c.active.is_(True)))
    for row in rows:
        if row.id != other_than and name_key(row.printed_name) == key:
            return _account(row)
    return None


def _printed_name_taken(name: str, holder: Account) -> InputError:
    return InputError(
        "printed_name",
        f"{name!r} is already the printed name of the active account {holder.username!r} "
        f"({holder.id}); records must tell the two apart",
        "a name no active account prints (add a middle initial, a credential or a number)",
    )


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
