"""Events: the only thing a case is made of.

A case's state is rebuilt by replaying its events in order, so the same events always give the
same state. Events are immutable; a correction is a new event whose ``corrects`` names the
sequence number of the event it corrects. Payloads are JSON-safe (strings, ints, bools, lists,
dicts): Decimals and times are stored as their canonical text so hashes never depend on float
formatting.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# Event types. Stable words: they are stored, hashed and exported.
CASE_OPENED = "case_opened"
STEP_SIGNED = "step_signed"
ASSESSMENT = "assessment"
HELD = "held"
RESUMED = "resumed"
DISCONTINUED = "discontinued"
CANCELLED = "cancelled"
WASTED = "wasted"
CORRECTION = "correction"
SIGNATURE_FAILED = "signature_failed"
STEP_REJECTED = "step_rejected"  # a verifier sends a step back to be redone (issue 16.2)
ORDER_NOTICE = "order_notice"  # the hospital's order moved the due time or stopped the dose

EVENT_TYPES = frozenset(
    {
        CASE_OPENED,
        STEP_SIGNED,
        ASSESSMENT,
        HELD,
        RESUMED,
        DISCONTINUED,
        CANCELLED,
        WASTED,
        CORRECTION,
        SIGNATURE_FAILED,
        STEP_REJECTED,
        ORDER_NOTICE,
    }
)

# Part 11 signature meanings (21 CFR 11.50(a)(3)).
MEANINGS = frozenset({"performed", "verified", "reviewed", "approved"})


@dataclass(frozen=True)
class Signer:
    """Who signs: an authenticated user acting in one role."""

    user_id: str
    name: str
    role: str

    def to_json(self) -> dict[str, str]:
        return {"user_id": self.user_id, "name": self.name, "role": self.role}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Signer:
        return cls(str(data["user_id"]), str(data["name"]), str(data["role"]))


@dataclass(frozen=True)
class Event:
    """One entry of a case's log.

    ``seq`` counts from 1 within the case. ``meaning`` is set when the event is a Part 11
    signature (a signed step, a prescriber's decision, a correction).
    """

    case_id: str
    seq: int
    type: str
    at: datetime
    actor: Signer | None
    data: Mapping[str, Any] = field(default_factory=dict)
    step: str | None = None
    meaning: str | None = None
    corrects: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "seq": self.seq,
            "type": self.type,
            "at": format_time(self.at),
            "actor": self.actor.to_json() if self.actor else None,
            "data": json_safe(self.data),
            "step": self.step,
            "meaning": self.meaning,
            "corrects": self.corrects,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        actor = data.get("actor")
        return cls(
            case_id=str(data["case_id"]),
            seq=int(data["seq"]),
            type=str(data["type"]),
            at=parse_time(str(data["at"])),
            actor=Signer.from_json(actor) if actor else None,
            data=dict(data.get("data") or {}),
            step=data.get("step"),
            meaning=data.get("meaning"),
            corrects=data.get("corrects"),
        )

    def content_hash(self) -> str:
        """SHA-256 of exactly what is signed: case, position, type, step, values, signer,
        meaning and time. A signature bound to this hash cannot be moved to another case or step.
        """
        return sha256_hex(canonical_json(self.to_json()))


def format_time(dt: datetime) -> str:
    if dt.tzinfo is None:
        raise ValueError("naive datetime in an event")
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"time without zone: {text}")
    return value.astimezone(UTC)


# Already JSON-safe, found by their exact type first: most of an event's values are, and the
# isinstance test against the Mapping ABC below is slow (every hash of an event walks its
# payload; a step's request hashes its new event several times: bench/profile_step.py).
_PLAIN = frozenset({str, int, bool, type(None)})


def json_safe(value: Any) -> Any:
    """Turn Decimals, times and tuples into their canonical JSON-safe form."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, float):
        raise TypeError("floats are not allowed in events; use Decimal")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def format_decimal(value: Decimal) -> str:
    """Canonical text of a Decimal: no exponent, no trailing zeros after the point."""
    text = format(value.normalize(), "f")
    return text


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        json_safe(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
