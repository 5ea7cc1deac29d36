"""Durable storage: patients, courses, cases and their hash-chained event log.

Open it with :func:`open_store`; everything else is a method of :class:`Store`. SQLite by default
(one file in the Bedside home), PostgreSQL for a hospital (``BEDSIDE_DATABASE_URL``).
"""

from .backup import backup
from .chain import GENESIS_HASH
from .engine import database_url, home_dir, make_engine, open_store
from .log import CONFLICT_MESSAGE
from .migrations import MIGRATIONS, applied_migrations, migrate
from .models import (
    COURSE_ACTIVE,
    COURSE_COMPLETED,
    COURSE_DISCONTINUED,
    ArchivedRecord,
    CaseRecord,
    ChainProblem,
    ChainReport,
    Cosignature,
    Course,
    InterfaceEntry,
    OrderCase,
    Patient,
    PendingOrder,
    StoredSignature,
)
from .patients import new_id
from .store import Store

__all__ = [
    "CONFLICT_MESSAGE",
    "COURSE_ACTIVE",
    "COURSE_COMPLETED",
    "COURSE_DISCONTINUED",
    "GENESIS_HASH",
    "MIGRATIONS",
    "ArchivedRecord",
    "CaseRecord",
    "ChainProblem",
    "ChainReport",
    "Cosignature",
    "Course",
    "InterfaceEntry",
    "OrderCase",
    "Patient",
    "PendingOrder",
    "Store",
    "StoredSignature",
    "applied_migrations",
    "backup",
    "database_url",
    "home_dir",
    "make_engine",
    "migrate",
    "new_id",
    "open_store",
]
