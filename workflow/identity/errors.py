"""Why an authentication or signing was refused, as a stable word the edges can act on.

This is the one subclass of :class:`~workflow.core.errors.AuthError` Bedside needs: the web and CLI
must tell "change your password now" and "locked, wait" apart from a plain refusal. For an
unknown user and a wrong password the reason shown is the same (``bad_credentials``) so nobody
can probe which usernames exist; the precise reason goes only to the auth audit table.
"""

from __future__ import annotations

from workflow.core.errors import AuthError

# Reasons shown to the person (``AuthRefused.reason``).
BAD_CREDENTIALS = "bad_credentials"
ACCOUNT_LOCKED = "account_locked"
ACCOUNT_DEACTIVATED = "account_deactivated"
PASSWORD_EXPIRED = "password_expired"  # noqa: S105 - a reason code
PASSWORD_CHANGE_REQUIRED = "password_change_required"  # noqa: S105 - a reason code
WRONG_ROLE = "wrong_role"
SESSION_ENDED = "session_ended"

# Reasons recorded in ``auth_events`` only (never shown): they tell the two apart.
UNKNOWN_USER = "unknown_user"
WRONG_PASSWORD = "wrong_password"  # noqa: S105 - a reason code, not a password

BAD_CREDENTIALS_MESSAGE = "Wrong username or password."


class AuthRefused(AuthError):
    """Authentication or signing refused; ``reason`` is one of the shown reason words."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def code(self) -> str:  # type: ignore[override]
        return self.reason
