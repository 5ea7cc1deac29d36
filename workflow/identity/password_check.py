"""Checking one password: the account, its lockout, its standing, and the audit trail.

Split out of ``Identity`` (identity/service.py), which builds one ``PasswordCheck`` per check
from its engine, policy, hasher and session verifier. Every refusal is written to the audit
trail before it is raised; a wrong password counts towards the lockout in SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn

from sqlalchemy import Engine, Row, update

from workflow.store import _schema as s
from workflow.store._tx import read_tx, write_tx

from . import audit
from . import errors as e
from .passwords import Passwords
from .policy import SecurityPolicy
from .session_proof import SessionVerifier
from .sessions import SigningSession
from .trail_names import unknown_name
from .users import User, require_row, row_by_id, row_by_username, user_from_row


class PasswordCheck:
    def __init__(
        self,
        engine: Engine,
        policy: SecurityPolicy,
        passwords: Passwords,
        verifier: SessionVerifier | None,
        site_key: bytes | None,
        *,
        allow_stale: bool = False,
        session: SigningSession | None = None,
    ) -> None:
        """``allow_stale``: a reset or expired password still passes (to change it). With
        ``session``, its verifier may stand in for argon2id (a match only: a mismatch gets the
        full check), and it leaves with a verifier for the hash now stored."""
        self.engine = engine
        self.policy = policy
        self.passwords = passwords
        self.verifier = verifier
        self._site_key = site_key
        self.allow_stale = allow_stale
        self.session = session

    def run(self, name: str, user_id: str | None, password: str, at: datetime, action: str) -> User:
        """Check one password for the account ``user_id`` or, without it, the one ``name``
        (as typed), at time ``at``; AuthRefused says why not, after the audit trail has it."""
        session, allow_stale, now = self.session, self.allow_stale, at
        typed = (name or "").strip().lower()
        with read_tx(self.engine) as conn:
            row = row_by_id(conn, user_id) if user_id else row_by_username(conn, typed)
        if row is None:
            self._refuse_unknown(typed, password, now, action)
        if row.locked_until is not None and row.locked_until > now:
            # No password check while locked: otherwise guessing could go on at full speed.
            message = _locked_message(row.locked_until)
            self._refuse(typed, row, now, action, e.ACCOUNT_LOCKED, message)
        fast = (
            session is not None
            and session.verifier is not None
            and self.verifier is not None
            and self.verifier.matches(session.verifier, row.id, row.password_hash, password)
        )
        if not fast and not self.passwords.verify(row.password_hash, password):
            self._count_failure(row, typed, action, now)
            raise e.AuthRefused(e.BAD_CREDENTIALS, e.BAD_CREDENTIALS_MESSAGE)
        # From here on the person proved the password, so precise reasons leak nothing.
        self._check_standing(row, typed, now, action, allow_stale)
        return self._accept(row, password, now, action, None if fast else session)

    def _refuse(
        self,
        typed: str,
        row: Row[Any] | None,
        now: datetime,
        action: str,
        reason: str,
        message: str,
        trail_name: str | None = None,
    ) -> NoReturn:
        """Record the refusal in the audit trail and raise it (``reason`` is also shown)."""
        audit.record_now(
            self.engine,
            at=now,
            username=trail_name or typed,
            user_id=row.id if row else None,
            action=action,
            outcome=audit.REFUSED,
            reason=reason,
        )
        raise e.AuthRefused(reason, message)

    def _refuse_unknown(self, typed: str, password: str, now: datetime, action: str) -> NoReturn:
        """An unknown username locks after as many guesses as an account does, with the same
        words, or the lockout message would tell which usernames exist. The trail keeps a
        digest of the name, never the text: it may be a password typed in the wrong field."""
        engine = self.engine
        ghost = unknown_name(typed, self._site_key)
        until = audit.unknown_locked_until(engine, ghost, self.policy.lockout, now)
        if until is not None:
            self._refuse(typed, None, now, action, e.ACCOUNT_LOCKED, _locked_message(until), ghost)
        self.passwords.burn(password)
        audit.count_unknown(engine, ghost, action, now, self.policy.max_failed_attempts)
        raise e.AuthRefused(e.BAD_CREDENTIALS, e.BAD_CREDENTIALS_MESSAGE)

    def _check_standing(
        self, row: Row[Any], typed: str, now: datetime, action: str, allow_stale: bool
    ) -> None:
        """After a right password: the account is active and its password neither reset nor
        expired (``allow_stale``: the password change itself)."""
        if not row.active:
            message = "This account is deactivated; ask an administrator."
            self._refuse(typed, row, now, action, e.ACCOUNT_DEACTIVATED, message)
        if not allow_stale and row.must_change_password:
            message = "Your password was reset; choose a new one before signing."
            self._refuse(typed, row, now, action, e.PASSWORD_CHANGE_REQUIRED, message)
        max_age = self.policy.password_max_age
        if not allow_stale and max_age is not None and now - row.password_changed_at > max_age:
            message = f"Your password is older than {max_age.days} days; choose a new one."
            self._refuse(typed, row, now, action, e.PASSWORD_EXPIRED, message)

    def _accept(
        self,
        row: Row[Any],
        password: str,
        now: datetime,
        action: str,
        session: SigningSession | None,
    ) -> User:
        """Clear failed attempts, rehash if the policy moved on, give ``session`` (one checked
        in full) a verifier for the hash now stored, and record the success."""
        changes: dict[str, Any] = {}
        if row.failed_attempts or row.locked_until is not None:
            changes.update(failed_attempts=0, locked_until=None)
        if self.passwords.needs_rehash(row.password_hash):
            changes["password_hash"] = self.passwords.hash(password)
        if session is not None and self.verifier is not None:
            stored = changes.get("password_hash", row.password_hash)
            session.verifier = self.verifier.make(row.id, stored, password)
        with write_tx(self.engine) as conn:
            if changes:
                conn.execute(update(s.users).where(s.users.c.id == row.id).values(**changes))
            if action != audit.PASSWORD_CHANGE:  # the change itself records its success
                audit.record(
                    conn,
                    at=now,
                    username=row.username,
                    user_id=row.id,
                    action=action,
                    outcome=audit.OK,
                    reason=audit.OK,
                )
            return user_from_row(require_row(conn, row.username))

    def _count_failure(self, row: Row[Any], typed: str, action: str, now: datetime) -> None:
        with write_tx(self.engine) as conn:
            # Increment in SQL: two wrong passwords at once must both count.
            conn.execute(
                update(s.users)
                .where(s.users.c.id == row.id)
                .values(failed_attempts=s.users.c.failed_attempts + 1)
            )
            audit.record(
                conn,
                at=now,
                username=typed or row.username,
                user_id=row.id,
                action=action,
                outcome=audit.REFUSED,
                reason=e.WRONG_PASSWORD,
            )
            failed = require_row(conn, row.username).failed_attempts
            if failed >= self.policy.max_failed_attempts:
                conn.execute(
                    update(s.users)
                    .where(s.users.c.id == row.id)
                    .values(failed_attempts=0, locked_until=now + self.policy.lockout)
                )
                audit.record(
                    conn,
                    at=now,
                    username=row.username,
                    user_id=row.id,
                    action=audit.LOCKED,
                    outcome=audit.OK,
                    reason=f"{failed}_failed_attempts",
                )


def _locked_message(until: datetime) -> str:
    shown = until.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"This account is locked until {shown} "
        "after too many wrong passwords; wait or ask an administrator."
    )
