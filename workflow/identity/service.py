"""Identity: accounts, password checks, signing sessions and ``sign_as``.

Every decision is recorded in ``auth_events``; the SQL is the store's
(``workflow.store.accounts``), the decisions are made here. Password checks (argon2,
deliberately slow) run outside any database transaction, so a login never holds the SQLite
write lock while hashing.
Times come from the ``now`` argument or, when it is omitted, the store's injected clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from argon2 import PasswordHasher

from workflow.core.clock import utc
from workflow.core.errors import InputError, NotFound
from workflow.core.events import Signer
from workflow.core.names import check_script_mix
from workflow.store import Store, new_id
from workflow.store.accounts import Account, Accounts, AuthEvent

from . import audit
from . import errors as e
from .passwords import Passwords, hasher_for
from .policy import SecurityPolicy
from .roles import ROLES, check_role, check_roles, encode_roles
from .session_proof import SessionVerifier
from .sessions import Credentials, SessionPassword, SigningSession
from .trail_names import unknown_name
from .users import User, clean_printed_name, clean_username, user_from_row


class Identity:
    def __init__(
        self,
        store: Store,
        policy: SecurityPolicy | None = None,
        hasher: PasswordHasher | None = None,
        session_key: bytes | None = None,
    ) -> None:
        self.store = store
        self.accounts = Accounts(store.engine)
        self.policy = policy or SecurityPolicy()
        # An explicit hasher (the tests' cheap one) wins; otherwise the site's cost.
        self.passwords = Passwords(hasher or hasher_for(self.policy.password_hash))
        # Without a site key every signature runs the full argon2id check (session_proof.py),
        # and unknown usernames are kept as unkeyed digests (trail_names.py).
        self.verifier = SessionVerifier(session_key) if session_key else None
        self._site_key = session_key

    def use_session_key(self, key: bytes) -> None:
        """Let continuous signing sessions re-check passwords by their keyed verifier, and key
        the digests the trail keeps for unknown usernames."""
        self.verifier = SessionVerifier(key)
        self._site_key = key

    # --- accounts (administration) ---------------------------------------------------------

    def add_user(
        self,
        username: str,
        printed_name: str,
        roles: Iterable[str],
        password: str,
        *,
        by: str | None = None,
        must_change_password: bool = False,
        confirm_mixed_script: bool = False,
        now: datetime | None = None,
    ) -> User:
        """Create an account. Raises InputError (``username`` taken or malformed,
        ``printed_name`` empty, too long or already printed by another active account,
        ``roles``, ``password`` rules) and MixedScriptName (``printed_name`` mixes look-alike
        scripts and ``confirm_mixed_script`` is not set)."""
        now = self._now(now)
        name = clean_username(username)
        printed = clean_printed_name(printed_name)
        check_script_mix("printed_name", printed, confirmed=confirm_mixed_script)
        values = {
            "id": new_id(),
            "username": name,
            "printed_name": printed,
            "roles": encode_roles(check_roles(roles)),
            "active": True,
            "password_hash": self._new_hash(name, password),
            "password_changed_at": now,
            "must_change_password": must_change_password,
            "failed_attempts": 0,
            "locked_until": None,
            "created_at": now,
        }
        entry = AuthEvent(
            now, name, str(values["id"]), audit.USER_ADDED, audit.OK, audit.OK, by_user_id=by
        )
        return user_from_row(self.accounts.add(values, entry))

    def get_user(self, username: str) -> User:
        """Raises NotFound."""
        account = self.accounts.by_username(username)
        if account is None:
            raise NotFound(f"no user {username!r}")
        return user_from_row(account)

    def get_user_by_id(self, user_id: str) -> User:
        """Raises NotFound."""
        account = self.accounts.by_id(user_id)
        if account is None:
            raise NotFound(f"no user with id {user_id}")
        return user_from_row(account)

    def list_users(self, *, include_inactive: bool = True) -> list[User]:
        return [user_from_row(a) for a in self.accounts.all(include_inactive=include_inactive)]

    def deactivate(self, username: str, *, by: str | None, now: datetime | None = None) -> User:
        """Withdraw an account (lost credentials, leaver: 11.300(c)). It can never sign again
        unless reactivated; its past signatures stay. Never one's own (``by``): an administrator
        who locks themselves out may leave a site with nobody to manage accounts, so another
        administrator does it."""
        if by is not None and by == self.get_user(username).id:
            raise InputError(
                "username",
                "you cannot deactivate your own account; another administrator must do it",
            )
        return self._admin(username, {"active": False}, audit.DEACTIVATED, by, now)

    def reactivate(self, username: str, *, by: str | None, now: datetime | None = None) -> User:
        """Raises InputError (``printed_name``) when an active account now prints its name."""
        return self._admin(username, {"active": True}, audit.REACTIVATED, by, now)

    def set_roles(
        self, username: str, roles: Iterable[str], *, by: str | None, now: datetime | None = None
    ) -> User:
        return self._admin(
            username, {"roles": encode_roles(check_roles(roles))}, audit.ROLES_CHANGED, by, now
        )

    def unlock(self, username: str, *, by: str | None, now: datetime | None = None) -> User:
        return self._admin(
            username, {"locked_until": None, "failed_attempts": 0}, audit.UNLOCKED, by, now
        )

    def reset_password(
        self, username: str, new_password: str, *, by: str | None, now: datetime | None = None
    ) -> User:
        """Set a temporary password (e.g. forgotten); the user must change it at next use."""
        name = clean_username(username)
        changes = {
            "password_hash": self._new_hash(name, new_password),
            "password_changed_at": self._now(now),
            "must_change_password": True,
            "failed_attempts": 0,
            "locked_until": None,
        }
        return self._admin(name, changes, audit.PASSWORD_RESET, by, now)

    def change_password(
        self, username: str, old_password: str, new_password: str, now: datetime | None = None
    ) -> User:
        """The user's own change, proven with the old password (accepted even when expired or
        after a reset: this is how those are cleared). Raises AuthRefused as for a login,
        InputError for a new password that breaks the rules or equals the old one."""
        now = self._now(now)
        user = self._check_password(
            username, None, old_password, now, audit.PASSWORD_CHANGE, allow_stale=True
        )
        if new_password == old_password:
            raise InputError("password", "the new password must differ from the old one")
        new_hash = self._new_hash(user.username, new_password)
        changes = {
            "password_hash": new_hash,
            "password_changed_at": now,
            "must_change_password": False,
            "failed_attempts": 0,
            "locked_until": None,
        }
        entry = AuthEvent(now, user.username, user.id, audit.PASSWORD_CHANGE, audit.OK, audit.OK)
        return user_from_row(self.accounts.succeeded(user.id, changes, entry))

    # --- authentication and signing -------------------------------------------------------

    def authenticate(self, username: str, password: str, now: datetime | None = None) -> User:
        """Both components checked. Returns the user, or raises AuthRefused with reason
        ``bad_credentials`` (unknown user or wrong password: the audit table says which),
        ``account_locked``, ``account_deactivated``, ``password_expired`` or
        ``password_change_required``."""
        return self._check_password(username, None, password, self._now(now), audit.LOGIN)

    def login(self, username: str, password: str, now: datetime | None = None) -> SigningSession:
        """Authenticate with both components and open a continuous signing session (with
        its password verifier when the site has a key)."""
        now = self._now(now)
        session = SigningSession("", "", now, now)
        user = self._check_password(username, None, password, now, audit.LOGIN, session=session)
        session.user_id, session.username = user.id, user.username
        return session

    def end_session(self, session: SigningSession, now: datetime | None = None) -> None:
        """Log out: later signings need both components again."""
        now = self._now(now)
        if session.ended_at is None:
            session.ended_at = now
            self.accounts.record(
                AuthEvent(
                    now, session.username, session.user_id, audit.SESSION_END, audit.OK, audit.OK
                )
            )

    def sign_as(
        self,
        proof: Credentials | SessionPassword,
        role: str | Sequence[str],
        now: datetime | None = None,
    ) -> Signer:
        """Check a signing and return the Signer to put on the event.

        ``Credentials`` (username + password) always work; ``SessionPassword`` (password alone)
        only inside a continuous session, else AuthRefused(``session_ended``). The user must be
        active, unlocked, with a current password, and hold ``role`` (else ``wrong_role``).
        ``role`` may be the roles a step allows, in order: the user signs in the first they
        hold (chosen from the account row the check reads anyway, not from a read of its own).
        """
        now = self._now(now)
        roles = (role,) if isinstance(role, str) else tuple(role)
        if not roles:
            raise InputError("role", "no role to sign as", ", ".join(sorted(ROLES)))
        for r in roles:
            check_role(r)
        if isinstance(proof, Credentials):
            cosigning = proof.cosigning
            if cosigning is not None and self._lapse(cosigning, now) is not None:
                # Lapsed (or new): this full check starts a new period for that person.
                cosigning.verifier, cosigning.started_at, cosigning.ended_at = None, now, None
            user = self._check_password(
                proof.username, None, proof.password, now, audit.SIGN, session=cosigning
            )
            if cosigning is not None:
                cosigning.user_id, cosigning.username = user.id, user.username
                cosigning.last_used_at = now
        else:
            session = proof.session
            self._check_continuity(session, now)
            user = self._check_password(
                session.username, session.user_id, proof.password, now, audit.SIGN, session=session
            )
            session.last_used_at = now
        chosen = next((r for r in roles if r in user.roles), roles[0])
        if chosen not in user.roles:
            self.accounts.record(
                AuthEvent(now, user.username, user.id, audit.SIGN, audit.REFUSED, e.WRONG_ROLE)
            )
            raise e.AuthRefused(
                e.WRONG_ROLE,
                f"{user.printed_name} does not hold the role {chosen} and cannot sign as one",
            )
        return Signer(user.id, user.printed_name, chosen)

    def auth_events(
        self,
        *,
        username: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[audit.AuthEvent]:
        """The auth audit trail, newest first (``outcome="refused"`` shows attempted misuse).

        ``username`` may be a name no account holds: its events are kept under a digest
        (trail_names.py), which this looks up for it."""
        if username is not None:
            typed = username.strip().lower()
            known = self.accounts.by_username(typed) is not None
            username = typed if known else unknown_name(typed, self._site_key)
        return self.accounts.events(username=username, outcome=outcome, since=since, limit=limit)

    # --- internals -----------------------------------------------------------------------

    def _now(self, now: datetime | None) -> datetime:
        return utc(now) if now is not None else self.store.clock.now()

    def _new_hash(self, username: str, password: str) -> str:
        self.policy.check_new_password(username, password)
        return self.passwords.hash(password)

    def _admin(
        self,
        username: str,
        changes: dict[str, Any],
        action: str,
        by: str | None,
        now: datetime | None,
    ) -> User:
        now = self._now(now)
        return user_from_row(self.accounts.change(username, changes, action=action, by=by, at=now))

    def _lapse(self, session: SigningSession, now: datetime) -> str | None:
        """Why ``session`` is no longer 11.200's continuous period, or None while it is."""
        if session.ended_at is not None:
            return "the session was ended"
        if now - session.last_used_at > self.policy.session_idle_limit:
            return "the session was idle too long"
        if now - session.started_at > self.policy.session_max_length:
            return "the session reached its maximum length"
        return None

    def _check_continuity(self, session: SigningSession, now: datetime) -> None:
        why = self._lapse(session, now)
        if why is None:
            return
        session.ended_at = session.ended_at or now
        self.accounts.record(
            AuthEvent(
                now, session.username, session.user_id, audit.SIGN, audit.REFUSED, e.SESSION_ENDED
            )
        )
        raise e.AuthRefused(
            e.SESSION_ENDED, f"Signing session ended ({why}); sign with your username and password."
        )

    def _check_password(
        self,
        username: str,
        user_id: str | None,
        password: str,
        now: datetime,
        action: str,
        *,
        allow_stale: bool = False,
        session: SigningSession | None = None,
    ) -> User:
        """Check one password. With ``session``, its verifier may stand in for argon2id (a
        match only: a mismatch gets the full check), and it leaves with a verifier for the
        hash now stored."""
        typed = (username or "").strip().lower()
        row = self.accounts.by_id(user_id) if user_id else self.accounts.by_username(typed)
        if row is None:
            self._refuse_unknown(typed, password, now, action)
        refuse = _Refusal(self.accounts, now, typed, row.id, action)
        if row.locked_until is not None and row.locked_until > now:
            # No password check while locked: otherwise guessing could go on at full speed.
            refuse(e.ACCOUNT_LOCKED, _locked_message(row.locked_until))
        fast = (
            session is not None
            and session.verifier is not None
            and self.verifier is not None
            and self.verifier.matches(session.verifier, row.id, row.password_hash, password)
        )
        if not fast and not self.passwords.verify(row.password_hash, password):
            failed = self._count_failure(row, typed, action, now)
            raise e.AuthRefused(e.BAD_CREDENTIALS, self.policy.refused_message(failed))
        # From here on the person proved the password, so precise reasons leak nothing.
        self._check_usable(row, now, refuse, allow_stale=allow_stale)
        return self._succeeded(row, password, now, action, session=session, fast=fast)

    def _refuse_unknown(self, typed: str, password: str, now: datetime, action: str) -> NoReturn:
        """A username nobody holds locks after as many guesses as an account does, with the
        same words, or the lockout message would tell which usernames exist. The trail keeps a
        digest of the name, never the text: it may be a password typed in the wrong field."""
        ghost = unknown_name(typed, self._site_key)
        until = self.accounts.unknown_locked_until(ghost, self.policy.lockout, now)
        if until is not None:
            _Refusal(self.accounts, now, ghost, None, action)(
                e.ACCOUNT_LOCKED, _locked_message(until)
            )
        self.passwords.burn(password)  # the same time as a real check
        failed = self.accounts.count_unknown(
            AuthEvent(now, ghost, None, action, audit.REFUSED, e.UNKNOWN_USER),
            self.policy.max_failed_attempts,
        )
        # The same words as for an account, tries left included: lockout tells no names.
        raise e.AuthRefused(e.BAD_CREDENTIALS, self.policy.refused_message(failed))

    def _check_usable(
        self, row: Account, now: datetime, refuse: _Refusal, *, allow_stale: bool
    ) -> None:
        """After the password was proved: a deactivated account, a reset or an expired
        password still stop the signature (a password change is allowed through as stale)."""
        if not row.active:
            refuse(e.ACCOUNT_DEACTIVATED, "This account is deactivated; ask an administrator.")
        if allow_stale:
            return
        if row.must_change_password:
            refuse(
                e.PASSWORD_CHANGE_REQUIRED,
                "Your password was reset; choose a new one before signing.",
            )
        max_age = self.policy.password_max_age
        if max_age is not None and now - row.password_changed_at > max_age:
            refuse(
                e.PASSWORD_EXPIRED,
                f"Your password is older than {max_age.days} days; choose a new one.",
            )

    def _succeeded(
        self,
        row: Account,
        password: str,
        now: datetime,
        action: str,
        *,
        session: SigningSession | None,
        fast: bool,
    ) -> User:
        """Clear the failure count, rehash a hash made with older parameters, give the signing
        session a verifier for the hash now stored, and record the success."""
        changes: dict[str, Any] = {}
        if row.failed_attempts or row.locked_until is not None:
            changes.update(failed_attempts=0, locked_until=None)
        if self.passwords.needs_rehash(row.password_hash):
            changes["password_hash"] = self.passwords.hash(password)
        if session is not None and self.verifier is not None and not fast:
            stored = changes.get("password_hash", row.password_hash)
            session.verifier = self.verifier.make(row.id, stored, password)
        entry = (
            AuthEvent(now, row.username, row.id, action, audit.OK, audit.OK)
            if action != audit.PASSWORD_CHANGE  # the change itself records its success
            else None
        )
        return user_from_row(self.accounts.succeeded(row.id, changes, entry))

    def _count_failure(self, row: Account, typed: str, action: str, now: datetime) -> int:
        """Count a wrong password; returns the failures in a row so far (the tries left)."""
        return self.accounts.count_failure(
            row,
            AuthEvent(now, typed or row.username, row.id, action, audit.REFUSED, e.WRONG_PASSWORD),
            self.policy.max_failed_attempts,
            self.policy.lockout,
        )


class _Refusal:
    """Refuse a signature or sign-in for a reason, writing it to the authentication trail
    first (never the password)."""

    def __init__(
        self, accounts: Accounts, now: datetime, name: str, user_id: str | None, action: str
    ) -> None:
        self.accounts, self.now, self.name = accounts, now, name
        self.user_id, self.action = user_id, action

    def __call__(self, reason: str, message: str) -> NoReturn:
        self.accounts.record(
            AuthEvent(self.now, self.name, self.user_id, self.action, audit.REFUSED, reason)
        )
        raise e.AuthRefused(reason, message)


def _locked_message(until: datetime) -> str:
    shown = until.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"This account is locked until {shown} "
        "after too many wrong passwords; wait or ask an administrator."
    )
