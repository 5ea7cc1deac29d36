"""People and credentials: users with roles, argon2id passwords, lockout, password aging,
continuous signing sessions (21 CFR 11.200) and ``sign_as`` → :class:`workflow.core.events.Signer`.

Start with ``Identity(store)``; see :mod:`workflow.identity.policy` for the local security
policy and its defaults.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each name loads its module on first use (PEP 562): the audit trail and the service bring
# SQLAlchemy, which `bedside dose` and `bedside --help` never need (start-up, issue 15). The
# names and types are the ones above; mypy reads the TYPE_CHECKING imports.
_WHERE = {
    "ACCOUNT_DEACTIVATED": ".errors",
    "ACCOUNT_LOCKED": ".errors",
    "ADMIN": ".roles",
    "AUDITOR": ".roles",
    "AuthEvent": ".audit",
    "AuthRefused": ".errors",
    "BAD_CREDENTIALS": ".errors",
    "Credentials": ".sessions",
    "Identity": ".service",
    "NURSE": ".roles",
    "PASSWORD_CHANGE_REQUIRED": ".errors",
    "PASSWORD_EXPIRED": ".errors",
    "PHARMACIST": ".roles",
    "PHARMACY_TECHNICIAN": ".roles",
    "PRESCRIBER": ".roles",
    "ROLES": ".roles",
    "SESSION_ENDED": ".errors",
    "SecurityPolicy": ".policy",
    "SessionPassword": ".sessions",
    "SigningSession": ".sessions",
    "User": ".users",
    "WRONG_ROLE": ".errors",
    "default_hasher": ".passwords",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


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
