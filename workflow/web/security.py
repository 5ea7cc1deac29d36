"""Who is asking: the session cookie, the idle timeout, CSRF tokens and role checks.

Sessions live in the database (the service's web-session commands) so several server
processes share them. CSRF tokens are an HMAC of the session's secret: stateless to check,
different for every session, never the cookie itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import Request

from workflow.core.errors import AuthError, BedsideError
from workflow.service import Bedside
from workflow.service.vocabulary import TabletProof, User, WebSession, tablet_proof

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
    found = bedside.web_session_and_user(token)  # one read for both
    now = bedside.clock.now()
    if found is None or found[0].ended_at is not None:
        raise NotSignedIn("ended")
    session, user = found
    if now - session.last_seen_at > settings.idle_timeout:
        bedside.end_idle_web_session(session.id, settings.idle_timeout)
        minutes = int(settings.idle_timeout.total_seconds() // 60)
        raise NotSignedIn("idle", minutes)
    if user is None:
        raise NotSignedIn("gone")
    if not user.active:
        bedside.end_web_session(session.id)
        raise NotSignedIn("deactivated")
    refreshed = bedside.refresh_signing(session)
    if refreshed is None:
        raise NotSignedIn("ended")
    session = refreshed
    if now - session.last_seen_at >= settings.touch_every:
        bedside.touch_web_session(session.id)
    limits = bedside.signing_continuity()
    lapsed = limits.lapsed(session.signing_started_at, session.signing_last_used_at, now)
    viewer = Viewer(session, user, csrf_token_for(session), lapsed)
    request.state.viewer = viewer
    return viewer


def require(viewer: Viewer, roles: Sequence[str]) -> None:
    if not viewer.has_any(roles):
        raise Forbidden(
            f"{viewer.user.printed_name} holds {', '.join(sorted(viewer.user.roles))}; "
            f"this needs one of: {', '.join(roles)}"
        )


def check_csrf(viewer: Viewer, sent: str | None) -> None:
    if not sent or not hmac.compare_digest(sent, viewer.csrf_token):
        raise CsrfFailed("The form's security token is missing or stale; reload the page.")


def signing_proof(viewer: Viewer, password: str, username: str | None) -> TabletProof:
    """Part 11: every signature asks for the password. Inside a continuous signing session the
    password alone; after the session lapsed (or for a second person at the same tablet, such
    as the blinded second checker) the username as well. The service checks it, appends the
    event and records it in this session in one transaction (workflow/service/tablet_signing.py)."""
    return tablet_proof(viewer.session, password, username)
