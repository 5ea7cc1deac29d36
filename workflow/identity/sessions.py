"""The two ways to prove who is signing (21 CFR 11.200(a)(1)).

* :class:`Credentials`: username and password, both components. Needed for the first signing
  and whenever there is no continuous session.
* :class:`SessionPassword`: the password alone, inside a :class:`SigningSession` that began with
  a full login and has stayed continuous (used within the idle limit, not past its maximum
  length, not ended). The password is still checked every time; only the username is implied.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    # For a second person signing at someone else's tablet (the blinded second checker): their
    # own recent signings there. Both components are still typed and checked every time; a
    # verifier made by an earlier full check within the continuity limits only lets the
    # password be re-checked without another argon2id run (session_proof.py). Updated in place
    # by Identity.sign_as; the caller keeps it for the next signature.
    cosigning: SigningSession | None = field(default=None, repr=False, compare=False)


@dataclass
class SigningSession:
    """One person's continuous period of use. Created by ``Identity.login``; keep it server-side
    (the web keeps it in its session store, never in a cookie's contents)."""

    user_id: str
    username: str
    started_at: datetime
    last_used_at: datetime
    id: str = field(default_factory=lambda: secrets.token_hex(16))
    ended_at: datetime | None = None
    # session_proof.SessionVerifier's keyed check of the password this session proved; never
    # shown, never logged.
    verifier: str | None = field(default=None, repr=False)

    @property
    def ended(self) -> bool:
        return self.ended_at is not None


@dataclass(frozen=True)
class SessionPassword:
    session: SigningSession
    password: str = field(repr=False)
