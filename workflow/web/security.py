"""Who is asking: the session cookie, the idle timeout, CSRF tokens and role checks.

Sessions live in the database (``workflow.store.web_sessions``) so several server processes
share them. CSRF tokens are an HMAC of the session's secret: stateless to check, different for
every session, never the cookie itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from fastapi import Request

from workflow.core.errors import AuthError, BedsideError, NotFound
from workflow.identity import Credentials, SessionPassword, SigningSession, User
from workflow.service import Bedside
from workflow.store import web_sessions
from workflow.store.web_sessions import WebSession

from .settings import WebSettings

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LOGIN_CSRF_COOKIE = "bedside_login_csrf"


class NotSignedIn(BedsideError):
    """No live session: pages redirect to the login, the API answers 401. ``why`` is a word
    from ``SIGNED_OUT``: the sign-in page shows only its own texts, never one from the URL."""

    code = "not_signed_in"

    def __init__(self, why: str = "sign_in", minutes: int = 0) -> None:
        self.why = why if why in SIGNED_OUT else "sign_in"
        super().__init__(SIGNED_OUT[self.why].format(minutes=minutes))


SIGNED_OUT = {
    "sign_in": "Please sign in.",
    "ended": "Your session has ended; please sign in again.",
    "idle": "Signed out after {minutes} minutes without use; please sign in.",
    "gone": "Your account is gone; please sign in.",
    "deactivated": "This account is deactivated.",
    "signed_out": "Signed out.",
}


class Forbidden(AuthError):
    code = "forbidden"


class CsrfFailed(AuthError):
    code = "csrf_failed"


@dataclass
class Viewer:
    """The signed-in person for one request."""

    session: WebSession
    user: User
    csrf_token: str
    signing_lapsed: bool  # 11.200: both components needed again for the next signature

    def has_any(self, roles: Sequence[str]) -> bool:
        return bool(self.user.roles.intersection(roles))


def csrf_token_for(session: WebSession) -> str:
    return hmac.new(session.csrf_secret.encode(), b"csrf", hashlib.sha256).hexdigest()


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def current_viewer(request: Request, bedside: Bedside, settings: WebSettings) -> Viewer:
    """The live session's viewer, or NotSignedIn. Ends the session when idle too long."""
    cached = getattr(request.state, "viewer", None)
    if isinstance(cached, Viewer):
        return cached
    token = request.cookies.get(settings.cookie_name)
    if not token:
        raise NotSignedIn()
    engine = bedside.store.engine
    session = web_sessions.get(engine, token)
    now = bedside.clock.now()
    if session is None or session.ended_at is not None:
        raise NotSignedIn("ended")
    if now - session.last_seen_at > settings.idle_timeout:
        web_sessions.end_if_idle(engine, session.id, now, settings.idle_timeout)
        minutes = int(settings.idle_timeout.total_seconds() // 60)
        raise NotSignedIn("idle", minutes)
    try:
        user = bedside.identity.get_user_by_id(session.user_id)
    except NotFound:
        raise NotSignedIn("gone") from None
    if not user.active:
        web_sessions.end(engine, session.id, now)
        raise NotSignedIn("deactivated")
    limits = continuity(bedside)
    if web_sessions.wipe_lapsed(dict(session.data), session, now, limits):
        # A verifier whose signing period lapsed can never be used again: wipe it now, in the
        # transaction that finds it lapsed, rather than leave a fast guessing target behind.
        data = web_sessions.lapse(engine, session.id, now, limits)
        if data is None:
            raise NotSignedIn("ended")
        session = replace(session, data=data)
    if now - session.last_seen_at >= settings.touch_every:
        web_sessions.touch(engine, session.id, now)
    lapsed = limits.lapsed(session.signing_started_at, session.signing_last_used_at, now)
    viewer = Viewer(session, user, csrf_token_for(session), lapsed)
    request.state.viewer = viewer
    return viewer


def continuity(bedside: Bedside) -> web_sessions.Continuity:
    """The site's 11.200 continuity limits (SecurityPolicy), as the session store takes them."""
    policy = bedside.identity.policy
    return web_sessions.Continuity(policy.session_idle_limit, policy.session_max_length)


def require(viewer: Viewer, roles: Sequence[str]) -> None:
    if not viewer.has_any(roles):
        raise Forbidden(
            f"{viewer.user.printed_name} holds {', '.join(sorted(viewer.user.roles))}; "
            f"this needs one of: {', '.join(roles)}"
        )


def check_csrf(viewer: Viewer, sent: str | None) -> None:
    if not sent or not hmac.compare_digest(sent, viewer.csrf_token):
        raise CsrfFailed("The form's security token is missing or stale; reload the page.")


@dataclass
class Proof:
    """A signature's proof and what to record in the session once it succeeds."""

    proof: Credentials | SessionPassword
    own: bool  # the session's own user signs (continuity is theirs to extend)
    cosigner: SigningSession | None = None  # another person's continuity at this tablet


def signing_proof(viewer: Viewer, password: str, username: str | None) -> Proof:
    """Part 11: every signature asks for the password. Inside a continuous signing session the
    password alone; after the session lapsed (or for a second person at the same tablet, such
    as the blinded second checker) the username as well."""
    typed = (username or "").strip().lower()
    if typed and typed != viewer.user.username:
        # Both components, always. If this person co-signed at this tablet recently, the
        # verifier that full check left re-checks the password without another argon2id run.
        cosigner = _cosigner(viewer.session, typed)
        return Proof(Credentials(typed, password, cosigning=cosigner), own=False, cosigner=cosigner)
    if typed:
        # Both components typed by the session's own user: a new continuous period starts,
        # with a new verifier from this full check (the old one may have been wiped).
        return Proof(Credentials(typed, password, cosigning=_new_period(typed)), own=True)
    s = viewer.session
    verifier = s.data.get(web_sessions.VERIFIER)
    signing = SigningSession(
        s.user_id,
        s.username,
        s.signing_started_at,
        s.signing_last_used_at,
        id=s.id,
        verifier=verifier if isinstance(verifier, str) else None,
    )
    return Proof(SessionPassword(signing, password), own=True)


def _cosigner(session: WebSession, username: str) -> SigningSession:
    kept: dict[str, Any] = (session.data.get(web_sessions.COSIGNERS) or {}).get(username) or {}
    try:
        return SigningSession(
            str(kept["user_id"]),
            username,
            datetime.fromisoformat(kept["started_at"]),
            datetime.fromisoformat(kept["last_used_at"]),
            verifier=str(kept["verifier"]),
        )
    except (KeyError, TypeError, ValueError):  # none kept (or unreadable): a new period
        return _new_period(username)


def _new_period(username: str) -> SigningSession:
    """A signing period that has lapsed already: the full check that follows starts a new one
    (Identity.sign_as) and leaves its verifier in it."""
    epoch = datetime.min.replace(tzinfo=UTC)
    return SigningSession("", username, epoch, epoch)


def after_signature(bedside: Bedside, viewer: Viewer, proof: Proof) -> None:
    if not proof.own:
        cos = proof.cosigner
        if cos is not None and cos.verifier:
            web_sessions.remember_cosigner(
                bedside.store.engine,
                viewer.session.id,
                cos.username,
                {
                    "user_id": cos.user_id,
                    "started_at": cos.started_at.isoformat(),
                    "last_used_at": cos.last_used_at.isoformat(),
                    "verifier": cos.verifier,
                },
            )
        return
    now = bedside.clock.now()
    engine = bedside.store.engine
    if isinstance(proof.proof, Credentials):
        fresh = proof.proof.cosigning
        web_sessions.signed(
            engine, viewer.session.id, now, now, verifier=fresh.verifier if fresh else None
        )
    else:
        sess = proof.proof.session
        renewed = (
            sess.verifier
            if sess.verifier != viewer.session.data.get(web_sessions.VERIFIER)
            else None
        )
        web_sessions.signed(
            engine, viewer.session.id, sess.last_used_at, sess.started_at, verifier=renewed
        )
