"""The service's commands for people: accounts (administration, passwords) and the web's
sign-in sessions. Part of :class:`workflow.service.Bedside`, the one door the web and the command
line use: they never reach ``workflow.identity`` or the session table themselves.

A web signature's session bookkeeping is not here: the service's signing commands take a
:class:`workflow.service.tablet_signing.TabletProof` and record it with the signed event, in one
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from workflow.core.clock import Clock
from workflow.identity import Identity, User
from workflow.identity.users import user_from_row
from workflow.store import Store, web_sessions
from workflow.store.web_sessions import Continuity, Swept, WebSession


@dataclass(frozen=True)
class SignIn:
    """A successful sign-in: the cookie token (shown once, never stored), its session, the
    person."""

    token: str
    session: WebSession
    user: User


class People:
    """Mixed into :class:`workflow.service.Bedside` (which sets these attributes)."""

    store: Store
    identity: Identity
    clock: Clock

    # -- accounts ----------------------------------------------------------------------------
    def get_user(self, username: str) -> User:
        """Raises NotFound."""
        return self.identity.get_user(username)

    def get_user_by_id(self, user_id: str) -> User:
        """Raises NotFound."""
        return self.identity.get_user_by_id(user_id)

    def list_users(self, *, include_inactive: bool = True) -> list[User]:
        return self.identity.list_users(include_inactive=include_inactive)

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
    ) -> User:
        """Create an account (see Identity.add_user for the InputErrors, naming the field)."""
        return self.identity.add_user(
            username,
            printed_name,
            roles,
            password,
            by=by,
            must_change_password=must_change_password,
            confirm_mixed_script=confirm_mixed_script,
        )

    def deactivate_user(self, username: str, *, by: str | None) -> User:
        """Withdraw an account (11.300(c)); its past signatures stay."""
        return self.identity.deactivate(username, by=by)

    def reset_password(self, username: str, new_password: str, *, by: str | None) -> User:
        """A temporary password the user must change at next use."""
        return self.identity.reset_password(username, new_password, by=by)

    def change_password(self, username: str, old_password: str, new_password: str) -> User:
        """The user's own change, proven with the old password."""
        return self.identity.change_password(username, old_password, new_password)

    def use_site_key(self, home: Path) -> None:
        """Key continuous signing sessions' password verifiers (and the trail's digests of
        unknown usernames) with the home's site key, ``pki/session-verifier.key``."""
        from workflow.identity.session_proof import load_session_key

        self.identity.use_session_key(load_session_key(home / "pki"))

    # -- web sessions ------------------------------------------------------------------------
    def sign_in(self, username: str, password: str, *, replacing: str | None = None) -> SignIn:
        """Both components checked (AuthRefused otherwise), then a new web session with the
        signing period the sign-in started. The session whose cookie ``replacing`` the browser
        presented is ended first (OWASP ASVS 3.2.1, a new token on every authentication): a
        second person signing in at a shared tablet must not find the old one alive."""
        signing = self.identity.login(username, password)
        user = self.identity.get_user_by_id(signing.user_id)
        engine, now = self.store.engine, self.clock.now()
        if replacing:
            old = web_sessions.get(engine, replacing)
            if old is not None and old.ended_at is None:
                web_sessions.end(engine, old.id, now)
        token, session = web_sessions.create(
            engine, signing.user_id, signing.username, now, verifier=signing.verifier
        )
        return SignIn(token, session, user)

    def web_session(self, token: str) -> WebSession | None:
        """The session a cookie names (ended ones too: ``ended_at`` says), or None."""
        return web_sessions.get(self.store.engine, token)

    def web_session_and_user(self, token: str) -> tuple[WebSession, User | None] | None:
        """:meth:`web_session` and its user (None: the account is gone), read together."""
        found = web_sessions.get_with_account(self.store.engine, token)
        if found is None:
            return None
        session, account = found
        return session, user_from_row(account) if account is not None else None

    def end_web_session(self, session_id: str) -> None:
        """Sign out: the session and every verifier it kept are wiped."""
        web_sessions.end(self.store.engine, session_id, self.clock.now())

    def end_idle_web_session(self, session_id: str, idle: timedelta) -> bool:
        """End the session if unused for longer than ``idle`` (one statement: a request that
        just used it wins). True when it was ended."""
        return web_sessions.end_if_idle(self.store.engine, session_id, self.clock.now(), idle)

    def touch_web_session(self, session_id: str) -> None:
        web_sessions.touch(self.store.engine, session_id, self.clock.now())

    def signing_continuity(self) -> Continuity:
        """The site's 11.200 continuity limits (SecurityPolicy), as sessions keep them."""
        policy = self.identity.policy
        return Continuity(policy.session_idle_limit, policy.session_max_length)

    def refresh_signing(self, session: WebSession) -> WebSession | None:
        """``session`` with every verifier whose signing period lapsed wiped, in the database
        too (in the transaction that finds it lapsed: never left behind as a fast guessing
        target). None when the session ended meanwhile."""
        limits = self.signing_continuity()
        now = self.clock.now()
        if not web_sessions.wipe_lapsed(dict(session.data), session, now, limits):
            return session
        data = web_sessions.lapse(self.store.engine, session.id, now, limits)
        return None if data is None else replace(session, data=data)

    def sweep_web_sessions(self, idle: timedelta, retention: timedelta) -> Swept:
        """The scheduled clean-up: end sessions idle past ``idle``, drop lapsed verifiers,
        delete sessions ended longer ago than ``retention`` (one transaction)."""
        return web_sessions.sweep(
            self.store.engine, self.clock.now(), idle, self.signing_continuity(), retention
        )
