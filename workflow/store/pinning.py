"""Version pinning: keep the exact protocol (and overlay) text every case was opened under.

A case records the hash of what it started on. For a protocol alone that is the file's hash;
for a protocol combined with an institution overlay it is the hash of a small combination text
naming both files' hashes. All three texts are stored by hash, so when a new protocol or overlay
version is installed, a running case still replays on the pair it started with.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from workflow.core.errors import IntegrityError, NotFound
from workflow.core.protocol import Protocol, parse_protocol
from workflow.core.protocol.overlay import (
    COMBINATION_KIND,
    combination_text,
    parse_combination,
    parse_overlay,
)
from workflow.store import Store


def _file_bytes(path: str, want: str, what: str) -> bytes:
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != want:
        raise IntegrityError(f"{what} {path} changed since it was loaded")
    return data


def remember(store: Store, protocol: Protocol) -> None:
    """Store the texts ``protocol`` was built from (idempotent)."""
    base = _file_bytes(protocol.path, protocol.file_hash, "protocol")
    store.save_protocol_text(base, protocol_id=protocol.id, version=protocol.version)
    overlay = protocol.overlay
    if overlay is None:
        return
    text = _file_bytes(overlay.path, overlay.content_hash, "overlay")
    store.save_protocol_text(text, protocol_id=overlay.id, version=overlay.version, kind="overlay")
    combo = combination_text(protocol.file_hash, overlay.content_hash)
    store.save_protocol_text(
        combo, protocol_id=protocol.id, version=protocol.version, kind=COMBINATION_KIND
    )


def restore(store: Store, content_hash: str) -> Protocol:
    """The protocol (with its overlay, if it had one) whose identity hash is ``content_hash``."""
    try:
        kind, text = store.load_protocol_text(content_hash)
        if kind != COMBINATION_KIND:
            return parse_protocol(text, f"stored protocol {content_hash[:12]}")
        base_hash, overlay_hash = parse_combination(text)
        _, base_text = store.load_protocol_text(base_hash)
        _, overlay_text = store.load_protocol_text(overlay_hash)
    except NotFound:
        raise IntegrityError(
            f"no protocol with sha256 {content_hash[:12]} is stored; a case replays only on "
            "the protocol it started with"
        ) from None
    base = parse_protocol(base_text, f"stored protocol {base_hash[:12]}")
    combined = parse_overlay(overlay_text, f"stored overlay {overlay_hash[:12]}", base)
    if combined.content_hash != content_hash:
        raise IntegrityError(f"stored combination {content_hash[:12]} does not rebuild to itself")
    return combined
