"""User accounts: their public view and the rules for usernames and printed names.

Accounts are never deleted and usernames never reused (21 CFR 11.100: a signature belongs to one
person only); leaving staff are deactivated. Usernames are lower-cased so "Ann" and "ann" cannot
be two people, and no two active accounts print the same name (``workflow.store.accounts``
checks it), so a printed name on a record points at one person; records also print the account
id beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from workflow.core.errors import InputError

from .roles import decode_roles

if TYPE_CHECKING:
    from workflow.store.accounts import Account

USERNAME_PATTERN = re.compile(r"[a-z][a-z0-9._-]{1,63}")


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


def user_from_row(row: Account) -> User:
    """The public view of a stored account (workflow.store.accounts): no password hash."""
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
