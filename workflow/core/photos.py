"""In-process photos of a step (issue 16.2), as the signed event holds them.

A signed step's event carries ``photos``: ``{photo id: {"sha256": hex, "barcode": ...}}``. The
image bytes live in the archive's photo store; the hash in the event makes the record and the
audit chain vouch for the exact file. Only the hashes and what the server read from the image
are judged here (no I/O): which photos the step declares, which are required, and that each
reference is a SHA-256.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from workflow.core.errors import StepRefused
from workflow.core.gs1 import parse_scan
from workflow.core.protocol.model import Step

if TYPE_CHECKING:
    from workflow.core.case_state import CaseState

PHOTO_FIELD_PREFIX = "photo_"  # the form field of photo ``vials`` is ``photo_vials``
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class PhotoRef:
    """One photo of a signed entry: its id, hash, and the barcode text read in it (if any)
    with whether it agrees with the step's identification of the product (None: not compared)."""

    id: str
    sha256: str
    barcode: str | None = None
    barcode_agrees: bool | None = None
    barcode_note: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sha256": self.sha256}
        if self.barcode is not None:
            out["barcode"] = self.barcode
            out["barcode_agrees"] = self.barcode_agrees
            out["barcode_note"] = self.barcode_note
        return out


def is_sha256(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX


def compare_barcode(kind: str, text: str, typed: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the GS1 code read in a photo names the product the step identified as
    ``kind`` (its ``{kind}_gtin``, ``{kind}_lot``, ``{kind}_expiry``), and what differs."""
    try:
        scan = parse_scan(text)
    except StepRefused as exc:
        return False, f"the code in the photo is not a GS1 product code: {exc.message}"
    differs = []
    gtin = typed.get(f"{kind}_gtin")
    if gtin and str(gtin).lstrip("0") != scan.gtin.lstrip("0"):
        differs.append(f"GTIN {scan.gtin} in the photo, {gtin} entered")
    lot = typed.get(f"{kind}_lot")
    if lot is not None and str(lot) != scan.lot:
        differs.append(f"lot {scan.lot} in the photo, {lot} entered")
    expiry = typed.get(f"{kind}_expiry")
    if isinstance(expiry, date) and (expiry.year, expiry.month) != (
        scan.expiry.year,
        scan.expiry.month,
    ):
        differs.append(f"expiry {scan.expiry.isoformat()} in the photo, {expiry} entered")
    if differs:
        return False, "; ".join(differs)
    return True, "the code in the photo matches the entry"


def check_photos(
    step: Step, photos: Mapping[str, PhotoRef], typed: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """The event's ``photos`` for ``step``: refused (naming the form field) when a photo is not
    one the step asks for, a required one is missing, or a reference is not a SHA-256. A
    barcode read in a photo whose spec names a scanned kind is compared with the entry."""
    declared = {p.id: p for p in step.photos}
    for pid, ref in photos.items():
        if pid not in declared:
            raise StepRefused(
                "invalid_item",
                f"{PHOTO_FIELD_PREFIX}{pid}: this step takes no photo '{pid}' "
                f"(photos: {', '.join(declared) or 'none'})",
                field=PHOTO_FIELD_PREFIX + pid,
            )
        if not is_sha256(ref.sha256):
            raise StepRefused(
                "invalid_item",
                f"{PHOTO_FIELD_PREFIX}{pid}: not a SHA-256 of a stored photo",
                field=PHOTO_FIELD_PREFIX + pid,
            )
    for spec in step.photos:
        if spec.required and spec.id not in photos:
            raise StepRefused(
                "missing_item",
                f"{spec.label}: this photo is required before the step is signed",
                field=PHOTO_FIELD_PREFIX + spec.id,
            )
    out = {}
    for pid, spec in declared.items():
        if pid not in photos:
            continue
        ref = photos[pid]
        if ref.barcode is not None and spec.scan is not None:
            agrees, note = compare_barcode(spec.scan, ref.barcode, typed or {})
            ref = replace(ref, barcode_agrees=agrees, barcode_note=note)
        out[pid] = ref.to_json()
    return out


def photos_of(data: Mapping[str, Any]) -> list[PhotoRef]:
    """The photos a stored event's data names (none for events from before photos)."""
    out = []
    raw = data.get("photos")
    if not isinstance(raw, Mapping):
        return []
    for pid, ref in raw.items():
        if not isinstance(ref, Mapping) or not is_sha256(str(ref.get("sha256", ""))):
            continue
        agrees = ref.get("barcode_agrees")
        out.append(
            PhotoRef(
                str(pid),
                str(ref["sha256"]),
                str(ref["barcode"]) if ref.get("barcode") is not None else None,
                bool(agrees) if agrees is not None else None,
                str(ref.get("barcode_note", "")),
            )
        )
    return out


ACK_FIELD = "ack_photo_barcodes"  # the verifier's acknowledgement of disagreeing barcodes


def barcode_disagreements(case: CaseState, step: Step) -> list[str]:
    """For a step that verifies others: each photo of a verified step's current entry whose
    barcode disagrees with that entry, in words (the verifier must acknowledge them)."""
    events = {e.seq: e for e in case.events}
    out = []
    for sid in step.verifies:
        entry = case.current.get(sid)
        if entry is None or entry.seq not in events:
            continue
        verified = case.protocol.step(sid)
        labels = {p.id: p.label for p in verified.photos}
        for ref in photos_of(events[entry.seq].data):
            if ref.barcode_agrees is False:
                label = labels.get(ref.id, ref.id)
                out.append(f"{verified.title}, {label}: {ref.barcode_note}")
    return out


def check_acknowledged(case: CaseState, step: Step, acknowledged: bool) -> list[str]:
    """The disagreements the signer acknowledges (recorded in the event); StepRefused naming
    the acknowledgement when there are some and the signer has not acknowledged them."""
    found = barcode_disagreements(case, step)
    if found and not acknowledged:
        raise StepRefused(
            "acknowledgement_needed",
            "A barcode in a photo disagrees with the entry; acknowledge it to sign, or send "
            "the step back: " + "; ".join(found),
            field=ACK_FIELD,
            details=found,
        )
    return found
