"""User accounts: the stored row, its public view, and the administrator's operations.

Accounts are never deleted and usernames never reused (21 CFR 11.100: a signature belongs to one
person only); leaving staff are deactivated. Usernames are lower-cased so "Ann" and "ann" cannot
be two people, and no two active accounts print the same name (``same_printed_name``), so a
printed name on a record points at one person; records also print the account id beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, text

from workflow.core.errors import InputError, NotFound
from workflow.core.names import name_key
from workflow.store import _schema as s

from .roles import decode_roles

USERNAME_PATTERN = re.compile(r"[a-z][a-z0-9._-]{1,63}")
# pg_advisory_xact_lock key serialising printed-name checks ("BSPN" in ASCII).
_PRINTED_NAME_LOCK = 0x4253504E


@dataclass(frozen=True)
class User:
    """A person who can sign. Holds no password or hash."""

    id: str
    username: str
    printed_name: str
    roles: frozenset[str]
    active: bool
    password_changed_at: datetime
    must_change_password: bool
    failed_attempts: int
    locked_until: datetime | None
    created_at: datetime

    def is_locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


def user_from_row(row: Row[Any]) -> User:
    return User(
        id=row.id,
        username=row.username,
        printed_name=row.printed_name,
        roles=decode_roles(row.roles),
        active=row.active,
        password_changed_at=row.password_changed_at,
        must_change_password=row.must_change_password,
        failed_attempts=row.failed_attempts,
        locked_until=row.locked_until,
        created_at=row.created_at,
    )


def clean_username(username: str) -> str:
    value = (username or "").strip().lower()
    if not USERNAME_PATTERN.fullmatch(value):
        raise InputError(
            "username",
            f"{username!r} is not a valid username",
            "2-64 of a-z, 0-9, '.', '_', '-', starting with a letter",
        )
    return value


def clean_printed_name(name: str) -> str:
    value = " ".join((name or "").split())
    if not value:
        raise InputError("printed_name", "is required (it is shown with every signature)")
    if len(value) > 200:
        raise InputError("printed_name", "is longer than 200 characters")
    return value


def same_printed_name(
    conn: Connection, name: str, *, other_than: str | None = None
) -> Row[Any] | None:
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
            return row
    return None


def printed_name_taken(name: str, holder: Row[Any]) -> InputError:
    return InputError(
        "printed_name",
        f"{name!r} is already the printed name of the active account {holder.username!r} "
        f"({holder.id}); records must tell the two apart",
        "a name no active account prints (add a middle initial, a credential or a number)",
    )


def row_by_username(conn: Connection, username: str) -> Row[Any] | None:
    return conn.execute(
        select(s.users).where(s.users.c.username == username.strip().lower())
    ).first()


def row_by_id(conn: Connection, user_id: str) -> Row[Any] | None:
    return conn.execute(select(s.users).where(s.users.c.id == user_id)).first()


def require_row(conn: Connection, username: str) -> Row[Any]:
    row = row_by_username(conn, username)
    if row is None:
        raise NotFound(f"no user {username!r}")
    return row
