"""People and credentials: users with roles, argon2id passwords, lockout, password aging,
continuous signing sessions (21 CFR 11.200) and ``sign_as`` → :class:`workflow.events.Signer`.

Start with ``Identity(store)``; see :mod:`workflow.identity.policy` for the local security
policy and its defaults.
"""

from .audit import AuthEvent
from .errors import (
    ACCOUNT_DEACTIVATED,
    ACCOUNT_LOCKED,
    BAD_CREDENTIALS,
    PASSWORD_CHANGE_REQUIRED,
    PASSWORD_EXPIRED,
    SESSION_ENDED,
    WRONG_ROLE,
    AuthRefused,
)
from .passwords import default_hasher
from .policy import SecurityPolicy
from .roles import ADMIN, AUDITOR, NURSE, PHARMACIST, PHARMACY_TECHNICIAN, PRESCRIBER, ROLES
from .service import Identity
from .sessions import Credentials, SessionPassword, SigningSession
from .users import User

__all__ = [
    "ACCOUNT_DEACTIVATED",
    "ACCOUNT_LOCKED",
    "ADMIN",
    "AUDITOR",
    "BAD_CREDENTIALS",
    "NURSE",
    "PASSWORD_CHANGE_REQUIRED",
    "PASSWORD_EXPIRED",
    "PHARMACIST",
    "PHARMACY_TECHNICIAN",
    "PRESCRIBER",
    "ROLES",
    "SESSION_ENDED",
    "WRONG_ROLE",
    "AuthEvent",
    "AuthRefused",
    "Credentials",
    "Identity",
    "SecurityPolicy",
    "SessionPassword",
    "SigningSession",
    "User",
    "default_hasher",
]
