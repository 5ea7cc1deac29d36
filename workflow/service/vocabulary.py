"""The service's public vocabulary: the data types, words and errors the web and the command line
use with :class:`workflow.service.Bedside`. They are data (frozen records, proofs, constants),
not access: everything that reads or writes goes through the service.

Light to import: the names from storage (SQLAlchemy) load on first use (PEP 562), so
``import workflow.cli`` stays fast (``bedside --help``, ``bedside dose``); mypy reads the
TYPE_CHECKING imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workflow.identity.errors import WRONG_ROLE, AuthRefused
from workflow.identity.roles import ROLES
from workflow.identity.sessions import Credentials, SessionPassword, SigningSession
from workflow.identity.users import User, clean_printed_name
from workflow.service._lazy import lazy_exports

if TYPE_CHECKING:
    from workflow.service.people import SignIn
    from workflow.service.tablet_signing import TabletProof, tablet_proof
    from workflow.store.models import (
        COURSE_ACTIVE,
        COURSE_DISCONTINUED,
        ArchivedRecord,
        CaseRecord,
        Course,
        Patient,
    )
    from workflow.store.web_sessions import Continuity, SessionEnded, Swept, WebSession

_WHERE = {
    "COURSE_ACTIVE": "workflow.store.models",
    "COURSE_DISCONTINUED": "workflow.store.models",
    "ArchivedRecord": "workflow.store.models",
    "CaseRecord": "workflow.store.models",
    "Continuity": "workflow.store.web_sessions",
    "Course": "workflow.store.models",
    "Patient": "workflow.store.models",
    "SessionEnded": "workflow.store.web_sessions",
    "SignIn": "workflow.service.people",
    "Swept": "workflow.store.web_sessions",
    "TabletProof": "workflow.service.tablet_signing",
    "WebSession": "workflow.store.web_sessions",
    "tablet_proof": "workflow.service.tablet_signing",
}


__getattr__ = lazy_exports(__name__, _WHERE, globals())


__all__ = [
    "COURSE_ACTIVE",
    "COURSE_DISCONTINUED",
    "ROLES",
    "WRONG_ROLE",
    "ArchivedRecord",
    "AuthRefused",
    "CaseRecord",
    "Continuity",
    "Course",
    "Credentials",
    "Patient",
    "SessionEnded",
    "SessionPassword",
    "SignIn",
    "SigningSession",
    "Swept",
    "TabletProof",
    "User",
    "WebSession",
    "clean_printed_name",
    "tablet_proof",
]
