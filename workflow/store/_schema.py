"""The tables, as SQLAlchemy Core objects (no ORM).

This is the schema as the newest migration leaves it. Migrations (``migrations.py``) create these
tables by name; once a table is altered by a later migration, the earlier migration must keep a
frozen copy of the old definition instead of pointing here.

Every time column is :class:`UTCDateTime`: aware UTC in Python, ``timestamptz`` on PostgreSQL and
fixed-width text on SQLite (so ``ORDER BY`` sorts by time on both).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from workflow.core.clock import utc


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = utc(value)
        # SQLite has no zone type: store the UTC wall time; results get UTC re-attached below.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A 64-bit key that is still SQLite's autoincrementing rowid.
_BIGID = BigInteger().with_variant(Integer(), "sqlite")
_ID = String(64)  # uuid4 hex by default; room for ids chosen by callers
_HASH = String(64)  # sha256 hex

metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("applied_at", UTCDateTime(), nullable=False),
)

# --- 0001_core ---------------------------------------------------------------------------

patients = Table(
    "patients",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("mrn", String(64), nullable=False, unique=True),
    Column("family_name", String(100), nullable=False),
    Column("given_name", String(100), nullable=False),
    Column("date_of_birth", Date(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(64), nullable=False),
)

courses = Table(
    "courses",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("patient_id", _ID, ForeignKey("patients.id"), nullable=False, index=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("protocol_id", String(64), nullable=False),
    Column("protocol_version", String(32), nullable=False),
    Column("protocol_hash", _HASH, nullable=False),
    # Added by 0008_course_start: the prescriber's signed course-start entry (attestations,
    # any retreatment override) as canonical JSON; NULL for courses started before it.
    Column("start_record", Text()),
)

cases = Table(
    "cases",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("course_id", _ID, ForeignKey("courses.id"), nullable=False, index=True),
    Column("patient_id", _ID, ForeignKey("patients.id"), nullable=False, index=True),
    Column("cycle", Integer(), nullable=False),
    Column("dose_in_cycle", Integer(), nullable=False),
    Column("dose_in_course", Integer(), nullable=False),
    Column("state", String(100), nullable=False),
    # Sequence number of the case's last event: the optimistic-concurrency token, and the
    # anchor that exposes deletion of a case's last event.
    Column("version", Integer(), nullable=False),
    Column("scheduled_at", UTCDateTime(), nullable=False),
    Column("protocol_version", String(32), nullable=False),
    Column("protocol_hash", _HASH, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_cases_worklist", "state", "scheduled_at"),
)

events = Table(
    "events",
    metadata,
    Column("id", _BIGID, primary_key=True, autoincrement=True),
    # Position in the whole log (1, 2, 3, ... with no gaps), assigned under the log-head lock.
    Column("log_seq", BigInteger(), nullable=False, unique=True),
    Column("case_id", _ID, ForeignKey("cases.id"), nullable=False),
    Column("seq", Integer(), nullable=False),
    Column("type", String(32), nullable=False),
    Column("step", String(100)),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor_user_id", String(64)),
    Column("actor_name", String(200)),
    Column("actor_role", String(32)),
    Column("meaning", String(16)),
    Column("corrects", Integer()),
    Column("data", Text(), nullable=False),  # canonical_json text
    Column("protocol_version", String(32), nullable=False),
    Column("protocol_hash", _HASH, nullable=False),
    Column("prev_hash", _HASH, nullable=False),  # this case's previous event hash
    Column("hash", _HASH, nullable=False),
    Column("chain_hash", _HASH, nullable=False),  # global chain over the whole log
    # Also the index load_events walks: cost is proportional to one case's events.
    UniqueConstraint("case_id", "seq", name="uq_events_case_seq"),
)

# One row (id = 1): how long the log is and the hash of its last link. Without it, deleting the
# newest event of the whole log would leave a shorter but self-consistent chain.
log_head = Table(
    "log_head",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("event_count", BigInteger(), nullable=False),
    Column("head_hash", _HASH, nullable=False),
    Column("updated_at", UTCDateTime()),
)

signatures = Table(
    "signatures",
    metadata,
    Column("id", _BIGID, primary_key=True, autoincrement=True),
    Column("event_id", _BIGID, ForeignKey("events.id"), nullable=False, index=True),
    Column("user_id", String(64), nullable=False),
    Column("printed_name", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("meaning", String(16), nullable=False),
    Column("signed_at", UTCDateTime(), nullable=False),
    Column("content_hash", _HASH, nullable=False),
)

# --- 0002_identity -----------------------------------------------------------------------

users = Table(
    "users",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("printed_name", String(200), nullable=False),
    Column("roles", String(200), nullable=False),  # space-separated, sorted
    Column("active", Boolean(), nullable=False),
    Column("password_hash", String(200), nullable=False),  # argon2id PHC string
    Column("password_changed_at", UTCDateTime(), nullable=False),
    Column("must_change_password", Boolean(), nullable=False),
    Column("failed_attempts", Integer(), nullable=False),
    Column("locked_until", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
)

# Every login, signing and account change, successful or not (21 CFR 11.300(d): attempted misuse
# must be visible). Never holds a password.
auth_events = Table(
    "auth_events",
    metadata,
    Column("id", _BIGID, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("username", String(64), nullable=False),  # as typed (truncated), even if unknown
    Column("user_id", String(64)),
    Column("action", String(32), nullable=False),
    Column("outcome", String(8), nullable=False),  # "ok" or "refused"
    Column("reason", String(32), nullable=False),
    Column("by_user_id", String(64)),
    Index("ix_auth_events_username_at", "username", "at"),
    Index("ix_auth_events_at", "at"),
)

# --- 0003_archive_index ------------------------------------------------------------------

archived_records = Table(
    "archived_records",
    metadata,
    Column("sha256", _HASH, primary_key=True),
    Column("case_id", _ID, nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("patient_name", String(200), nullable=False, index=True),
    Column("mrn", String(64), nullable=False, index=True),
    Column("dose_label", String(100), nullable=False),
    Column("cycle", Integer()),
    Column("signed_at", UTCDateTime(), nullable=False, index=True),
    Column("lots", Text(), nullable=False),
    Column("signers", Text(), nullable=False),
    Column("state", String(100), nullable=False),
    Column("path", Text(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # Added by 0007_archive_record_key (see there for the unique index over it).
    Column("events_sha256", _HASH),
)

# --- 0004_web_sessions -------------------------------------------------------------------
# Server-side web sessions in the database, so any number of `bedside serve` processes share
# them (a cookie carries only a random token; its SHA-256 is the key). ``signing_*`` keep the
# 21 CFR 11.200 continuous-session state; ``csrf_secret`` makes per-session CSRF tokens.

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", _HASH, primary_key=True),  # sha256 of the cookie token
    Column("user_id", _ID, nullable=False, index=True),
    Column("username", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("signing_started_at", UTCDateTime(), nullable=False),
    Column("signing_last_used_at", UTCDateTime(), nullable=False),
    Column("csrf_secret", String(64), nullable=False),
    Column("ended_at", UTCDateTime()),
    Column("data", Text(), nullable=False, default="{}"),  # small JSON: UI state, never secrets
)

# --- 0005_protocols ------------------------------------------------------------------------
# Every protocol (and overlay) text a case was opened under, by content hash, so a running or
# archived case always replays on exactly the protocol it started with.

protocols = Table(
    "protocols",
    metadata,
    Column("sha256", _HASH, primary_key=True),
    Column("protocol_id", String(100), nullable=False),
    Column("version", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # "protocol" or "overlay"
    Column("text", Text(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# --- 0009_formulary ------------------------------------------------------------------------
# The site's formulary (issue 12.3): products a vial, diluent or bag scan may be, by GTIN, kept
# by pharmacists, each addition signed. Rows are never updated or deleted, so a case signed
# with a scan of a listed product replays on the same list; ``formulary_events`` is the audit
# trail of every change (who, when, what, the signature's meaning).

formulary_products = Table(
    "formulary_products",
    metadata,
    Column("gtin", String(14), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("description", String(200), nullable=False),
    Column("strength", String(100), nullable=False),
    Column("added_at", UTCDateTime(), nullable=False),
    Column("added_by_user_id", _ID, nullable=False),
)

formulary_events = Table(
    "formulary_events",
    metadata,
    Column("id", _BIGID, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False, index=True),
    Column("action", String(32), nullable=False),  # "added"
    Column("gtin", String(14), nullable=False, index=True),
    Column("detail", Text(), nullable=False),  # JSON: kind, description, strength
    Column("user_id", _ID, nullable=False),
    Column("printed_name", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("meaning", String(32), nullable=False),
)

# --- 0010_interface ------------------------------------------------------------------------
# Orders from the hospital (HL7 v2 over MLLP, FHIR MedicationRequest): every message received,
# applied or refused, with what it did; and which dose each external order opened.

interface_log = Table(
    "interface_log",
    metadata,
    Column("id", _BIGID, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("channel", String(16), nullable=False),  # "hl7" or "fhir"
    Column("control_id", String(200)),  # MSH-10, or the FHIR request's id; NULL if unreadable
    # "<channel>:<control_id>" once the message was applied: the unique index is what makes a
    # resent message a duplicate (acknowledged again, never applied twice).
    Column("applied_key", String(220), unique=True),
    Column("kind", String(64), nullable=False),  # e.g. "RDE^O11 NW", "MedicationRequest active"
    Column("placer_order", String(64), index=True),
    Column("status", String(16), nullable=False),  # applied | duplicate | refused
    Column("ack_code", String(2), nullable=False),  # AA | AE | AR
    Column("detail", Text(), nullable=False),  # what was done, or why it was refused
    Column("effects", Text(), nullable=False, default="[]"),  # JSON list of dose effects
    Column("message", Text(), nullable=False),  # the message as received (truncated)
)

order_cases = Table(
    "order_cases",
    metadata,
    Column("case_id", _ID, ForeignKey("cases.id"), primary_key=True),
    Column("placer_order", String(64), nullable=False, index=True),
    Column("course_id", _ID, ForeignKey("courses.id"), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("priority", String(16), nullable=False),  # "stat" or "routine"
    Column("orderer", String(200), nullable=False),  # who ordered it, as the message names them
    Column("created_at", UTCDateTime(), nullable=False),
)

# --- 0011_orders16_pending_orders ------------------------------------------------------------
# An order from the hospital for a patient with no active course: received (AA) and kept here,
# waiting for a prescriber to start the course in Bedside (never the interface); the course
# start opens its dose. One row per placer order number; XO rewrites it, DC/CA ends it.

pending_orders = Table(
    "pending_orders",
    metadata,
    Column("placer_order", String(64), primary_key=True),
    Column("patient_id", _ID, ForeignKey("patients.id"), nullable=False, index=True),
    Column("channel", String(16), nullable=False),
    Column("control_id", String(200), nullable=False),  # the message that wrote it last
    Column("kind", String(64), nullable=False),
    Column("priority", String(16), nullable=False),  # "stat" or "routine"
    Column("orderer_id", String(64), nullable=False),  # "external:<id>", the order's signer
    Column("orderer", String(200), nullable=False),  # as the order's signature names them
    Column("order_json", Text(), nullable=False),  # the dose as ordered (JSON, values as text)
    Column("received_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # waiting | opened (the course start opened its dose) | removed (DC/CA) | failed (the
    # course start could not open it: ``detail`` says why)
    Column("status", String(16), nullable=False, index=True),
    Column("detail", Text(), nullable=False, default=""),
    Column("case_id", _ID),  # the dose it opened
)
