"""The content of one signed record, independent of how it looks and of the case engine.

A :class:`RecordDocument` is frozen and validated when built. Everything it holds is shown in
the PDF or embedded in it, and all of it is covered by :meth:`RecordDocument.record_hash`, so
two documents with the same hash say exactly the same thing. Text may be any length and any
content (hostile markup included): escaping is the renderer's job, not the model's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, cast

from workflow.core.errors import InputError
from workflow.core.events import MEANINGS, canonical_json, sha256_hex
from workflow.core.names import with_id

RecordKind = Literal["compounding", "administration"]
RECORD_KINDS: frozenset[str] = frozenset({"compounding", "administration"})

# Bumped when the JSON shape of a document changes, so a hash computed by an older Bedside is
# never compared against a different serialisation by accident.
DOCUMENT_FORMAT = 1


def _text(field_name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InputError(field_name, f"must be text, got {type(value).__name__}")


@dataclass(frozen=True)
class Row:
    """One labelled value. ``flag`` marks it (e.g. ``UNCONFIRMED``, ``deviation``)."""

    label: str
    value: str
    note: str | None = None
    flag: str | None = None

    def __post_init__(self) -> None:
        _text("row.label", self.label)
        _text("row.value", self.value)
        _text("row.note", self.note, optional=True)
        _text("row.flag", self.flag, optional=True)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "value": self.value, "note": self.note, "flag": self.flag}


@dataclass(frozen=True)
class Table:
    """Free columns, e.g. two double-checkers' entries side by side."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        _text("table.key", self.key)
        _text("table.title", self.title)
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "rows", tuple(tuple(r) for r in self.rows))
        if not self.columns:
            raise InputError(f"table {self.key}", "needs at least one column")
        for c in self.columns:
            _text(f"table {self.key} column", c)
        for i, row in enumerate(self.rows, start=1):
            if len(row) != len(self.columns):
                raise InputError(
                    f"table {self.key} row {i}",
                    f"has {len(row)} cells for {len(self.columns)} columns",
                )
            for cell in row:
                _text(f"table {self.key} row {i}", cell)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "columns": list(self.columns),
            "rows": [list(r) for r in self.rows],
        }


@dataclass(frozen=True)
class Thumbnail:
    """A small JPEG of an in-process photo (issue 16.2), printed with the photo's SHA-256 (the
    hash of the original the step's signed event names, not of this re-encoded copy)."""

    title: str
    sha256: str
    jpeg: bytes

    def __post_init__(self) -> None:
        _text("thumbnail.title", self.title)
        _text("thumbnail.sha256", self.sha256)

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "sha256": self.sha256, "jpeg_sha256": sha256_hex(self.jpeg)}


@dataclass(frozen=True)
class Section:
    """A titled group of rows and tables. ``key`` lets the layout order and retitle it."""

    key: str
    title: str
    rows: tuple[Row, ...] = ()
    tables: tuple[Table, ...] = ()
    thumbnails: tuple[Thumbnail, ...] = ()

    def __post_init__(self) -> None:
        _text("section.key", self.key)
        _text("section.title", self.title)
        object.__setattr__(self, "rows", tuple(self.rows))
        object.__setattr__(self, "tables", tuple(self.tables))
        object.__setattr__(self, "thumbnails", tuple(self.thumbnails))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "title": self.title,
            "rows": [r.to_json() for r in self.rows],
            "tables": [t.to_json() for t in self.tables],
        }
        if self.thumbnails:  # absent otherwise: records without photos hash as before
            out["thumbnails"] = [t.to_json() for t in self.thumbnails]
        return out


@dataclass(frozen=True)
class SignatureManifestation:
    """What 21 CFR 11.50 requires a signature to show: printed name, date and time, meaning.

    ``signed_at_utc`` is display text made by the caller from the signing event's time, so the
    record shows exactly what was signed. ``content_hash`` binds it to the signed event (11.70).
    ``user_id`` is the signing account's id, printed beside the name so that two people with
    the same printed name are never confused; documents made before it existed have None.
    """

    printed_name: str
    role: str
    signed_at_utc: str
    meaning: str
    content_hash: str
    user_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("printed_name", "role", "signed_at_utc", "meaning", "content_hash"):
            _text(f"signature.{name}", getattr(self, name))
        _text("signature.user_id", self.user_id, optional=True)
        if self.meaning not in MEANINGS:
            raise InputError(
                "signature.meaning",
                f"unknown meaning {self.meaning!r}",
                allowed=", ".join(sorted(MEANINGS)),
            )

    @property
    def signer(self) -> str:
        """The name as printed: ``Name (user id)`` when the id is known."""
        return (
            self.printed_name if self.user_id is None else with_id(self.printed_name, self.user_id)
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "printed_name": self.printed_name,
            "role": self.role,
            "signed_at_utc": self.signed_at_utc,
            "meaning": self.meaning,
            "content_hash": self.content_hash,
        }
        # Only when known, so a document made before user ids were printed keeps its hash.
        if self.user_id is not None:
            out["user_id"] = self.user_id
        return out


@dataclass(frozen=True)
class ProtocolRef:
    """The protocol a record was made under; with an institution overlay, ``sha256`` is the
    combination's hash and the protocol file and the overlay are named with their own."""

    name: str
    version: str
    sha256: str
    file_sha256: str | None = None
    overlay_name: str | None = None
    overlay_version: str | None = None
    overlay_sha256: str | None = None

    def __post_init__(self) -> None:
        for name in ("name", "version", "sha256"):
            _text(f"protocol.{name}", getattr(self, name))
        for name in ("file_sha256", "overlay_name", "overlay_version", "overlay_sha256"):
            if getattr(self, name) is not None:
                _text(f"protocol.{name}", getattr(self, name))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version, "sha256": self.sha256}
        # Only with an overlay, so records made without one keep exactly their old form.
        if self.overlay_name is not None:
            out.update(
                file_sha256=self.file_sha256,
                overlay_name=self.overlay_name,
                overlay_version=self.overlay_version,
                overlay_sha256=self.overlay_sha256,
            )
        return out


def _freeze(value: Any) -> Any:
    # Deep read-only copy: a frozen dataclass alone would still let a caller mutate the event
    # dicts after the record hash was taken.
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def events_to_bytes(events: Sequence[Mapping[str, Any]]) -> bytes:
    """Canonical JSON of an events payload: exactly the bytes embedded in the PDF."""
    try:
        return canonical_json(list(events))
    except (TypeError, ValueError) as exc:
        raise InputError("events", f"not JSON-safe: {exc}") from exc


@dataclass(frozen=True)
class RecordDocument:
    """One record, ready to render.

    ``subject`` holds the identifying lines (patient name, MRN, date of birth...) as
    (label, value) pairs in display order. ``events`` is the JSON-safe payload embedded in the
    PDF so a verifier can replay it; it is deep-copied and made read-only on construction.
    """

    kind: RecordKind
    title: str
    record_id: str
    case_id: str
    drug: str
    subject: tuple[tuple[str, str], ...]
    sections: tuple[Section, ...]
    signatures: tuple[SignatureManifestation, ...]
    protocol: ProtocolRef
    chain_hash: str
    events: tuple[Mapping[str, Any], ...] = ()
    _events_json: bytes = field(default=b"", init=False, repr=False, compare=False)
    _hash: str = field(default="", init=False, repr=False, compare=False)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Sent to the signing worker process (records/signing_pool.py). The frozen events are
        # read-only mappings, which do not pickle: send the canonical JSON they were frozen from
        # and let the constructor check, freeze and hash them again, exactly as here.
        return (
            RecordDocument,
            (
                self.kind,
                self.title,
                self.record_id,
                self.case_id,
                self.drug,
                self.subject,
                self.sections,
                self.signatures,
                self.protocol,
                self.chain_hash,
                json.loads(self._events_json),
            ),
        )

    def __post_init__(self) -> None:
        if self.kind not in RECORD_KINDS:
            raise InputError(
                "kind",
                f"unknown record kind {self.kind!r}",
                allowed=", ".join(sorted(RECORD_KINDS)),
            )
        for name in ("title", "record_id", "case_id", "drug", "chain_hash"):
            _text(name, getattr(self, name))
        subject = tuple((str(label), str(value)) for label, value in self.subject)
        object.__setattr__(self, "subject", subject)
        object.__setattr__(self, "sections", tuple(self.sections))
        object.__setattr__(self, "signatures", tuple(self.signatures))
        keys = [s.key for s in self.sections]
        if len(keys) != len(set(keys)):
            raise InputError("sections", "each section key may appear once")
        if not isinstance(self.events, Sequence) or not all(
            isinstance(e, Mapping) for e in self.events
        ):
            raise InputError("events", "must be a list of JSON objects")
        payload = events_to_bytes(self.events)
        object.__setattr__(self, "_events_json", payload)
        object.__setattr__(self, "events", _freeze(json.loads(payload)))
        object.__setattr__(self, "_hash", sha256_hex(canonical_json(self.to_json())))

    @property
    def events_json(self) -> bytes:
        """The canonical JSON bytes that get embedded as ``events.json``."""
        return self._events_json

    def record_hash(self) -> str:
        """SHA-256 of the canonical JSON of everything the record shows or embeds."""
        return self._hash

    def to_json(self) -> dict[str, Any]:
        return {
            "format": DOCUMENT_FORMAT,
            "kind": self.kind,
            "title": self.title,
            "record_id": self.record_id,
            "case_id": self.case_id,
            "drug": self.drug,
            "subject": [[label, value] for label, value in self.subject],
            "sections": [s.to_json() for s in self.sections],
            "signatures": [s.to_json() for s in self.signatures],
            "protocol": self.protocol.to_json(),
            "chain_hash": self.chain_hash,
            "events": json.loads(self._events_json),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordDocument:
        """Rebuild a document from :meth:`to_json` output (e.g. an archived copy)."""
        try:
            if data.get("format") != DOCUMENT_FORMAT:
                raise InputError("format", f"unsupported document format {data.get('format')!r}")
            return cls(
                kind=cast(RecordKind, data["kind"]),
                title=data["title"],
                record_id=data["record_id"],
                case_id=data["case_id"],
                drug=data["drug"],
                subject=tuple((p[0], p[1]) for p in data["subject"]),
                sections=tuple(
                    Section(
                        key=s["key"],
                        title=s["title"],
                        rows=tuple(Row(**r) for r in s["rows"]),
                        tables=tuple(
                            Table(
                                t["key"],
                                t["title"],
                                tuple(t["columns"]),
                                tuple(tuple(r) for r in t["rows"]),
                            )
                            for t in s["tables"]
                        ),
                    )
                    for s in data["sections"]
                ),
                signatures=tuple(SignatureManifestation(**s) for s in data["signatures"]),
                protocol=ProtocolRef(**data["protocol"]),
                chain_hash=data["chain_hash"],
                events=tuple(data["events"]),
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise InputError("document", f"malformed document JSON: {exc!r}") from exc
