"""A signature made at a web tablet: its proof, and what it changes in the tablet's session.

Part 11 (21 CFR 11.200): every signature asks for the password. Inside a continuous signing
session the password alone; after the period lapsed (or for a second person at the same
tablet, such as the blinded second checker) the username as well. The web builds a
:class:`TabletProof` from its session with :func:`tablet_proof` and hands it to the service
like any other proof; the service checks it and then appends the signed event and records the
signature in the session (:meth:`TabletProof.mark`) in ONE database transaction
(``Store.append(..., session=...)``): the event and the session's new state commit together or
not at all, and a session ended meanwhile refuses the signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from workflow.identity.sessions import Credentials, SessionPassword, SigningSession
from workflow.store.web_sessions import COSIGNERS, VERIFIER, SignatureMark, WebSession


@dataclass(frozen=True)
class TabletProof:
    """A signature's proof as typed at a tablet, with the session it was typed in."""

    proof: Credentials | SessionPassword
    session_id: str
    own: bool  # the session's own user signs (continuity is theirs to extend)
    # The session's verifier when the proof was built: a signature that renews it stores the
    # new one, one that used it leaves it as it is.
    known_verifier: str | None = None
    cosigner: SigningSession | None = None  # another person's continuity at this tablet

    def mark(self, now: datetime) -> SignatureMark:
        """What the signature just checked (``Identity.sign_as`` updated the proof's signing
        session in place) changes in the tablet's session."""
        if not self.own:
            cos = self.cosigner
            if cos is None or not cos.verifier:
                return SignatureMark(self.session_id)
            state: dict[str, Any] = {
                "user_id": cos.user_id,
                "started_at": cos.started_at.isoformat(),
                "last_used_at": cos.last_used_at.isoformat(),
                "verifier": cos.verifier,
            }
            return SignatureMark(self.session_id, cosigner=(cos.username, state))
        if isinstance(self.proof, Credentials):
            # Both components typed: a new continuous period starts now, with the verifier
            # that full check made.
            fresh = self.proof.cosigning
            return SignatureMark(
                self.session_id, times=(now, now), verifier=fresh.verifier if fresh else None
            )
        sess = self.proof.session
        renewed = sess.verifier if sess.verifier != self.known_verifier else None
        return SignatureMark(
            self.session_id, times=(sess.started_at, sess.last_used_at), verifier=renewed
        )


def tablet_proof(session: WebSession, password: str, username: str | None) -> TabletProof:
    """The proof for a signature typed in ``session``: the password alone (the session's own
    continuous period), or the username too (a new period, or another person)."""
    typed = (username or "").strip().lower()
    verifier = session.data.get(VERIFIER)
    known = verifier if isinstance(verifier, str) else None
    if typed and typed != session.username:
        # Both components, always. If this person co-signed at this tablet recently, the
        # verifier that full check left re-checks the password without another argon2id run.
        cosigner = _cosigner(session, typed)
        return TabletProof(
            Credentials(typed, password, cosigning=cosigner),
            session.id,
            own=False,
            known_verifier=known,
            cosigner=cosigner,
        )
    if typed:
        # Both components typed by the session's own user: a new continuous period starts,
        # with a new verifier from this full check (the old one may have been wiped).
        return TabletProof(
            Credentials(typed, password, cosigning=_new_period(typed)),
            session.id,
            own=True,
            known_verifier=known,
        )
    signing = SigningSession(
        session.user_id,
        session.username,
        session.signing_started_at,
        session.signing_last_used_at,
        id=session.id,
        verifier=known,
    )
    return TabletProof(
        SessionPassword(signing, password), session.id, own=True, known_verifier=known
    )


def _cosigner(session: WebSession, username: str) -> SigningSession:
    kept: dict[str, Any] = (session.data.get(COSIGNERS) or {}).get(username) or {}
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
