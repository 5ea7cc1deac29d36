"""The authentication audit trail's words: every login, signing and account change is kept
durably in ``auth_events`` (the SQL is ``workflow.store.accounts``).

Failures are written in their own committed transaction before the refusal is raised, so a run
of wrong passwords is on record even though each attempt "fails". No row ever holds a password.
"""

from __future__ import annotations

from workflow.store.accounts import LOCKED, OK, REFUSED, AuthEvent

# Actions (stored words).
LOGIN = "login"
SIGN = "sign"
PASSWORD_CHANGE = "password_change"  # noqa: S105 - an action word
PASSWORD_RESET = "password_reset"  # noqa: S105 - an action word
USER_ADDED = "user_added"
DEACTIVATED = "deactivated"
REACTIVATED = "reactivated"
ROLES_CHANGED = "roles_changed"
UNLOCKED = "unlocked"
SESSION_END = "session_end"

__all__ = [
    "DEACTIVATED",
    "LOCKED",
    "LOGIN",
    "OK",
    "PASSWORD_CHANGE",
    "PASSWORD_RESET",
    "REACTIVATED",
    "REFUSED",
    "ROLES_CHANGED",
    "SESSION_END",
    "SIGN",
    "UNLOCKED",
    "USER_ADDED",
    "AuthEvent",
]
