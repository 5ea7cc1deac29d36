"""How an event's hash and its link in the whole-log chain are computed.

Two chains, both unkeyed SHA-256:

* per case: ``hash = sha256(prev_hash || canonical_json(record))`` where the record is the event
  (``Event.to_json``: case, seq, type, step, time, actor, meaning, corrects, data), the protocol
  version and hash it ran under, and every signature row on it. Editing, removing or reordering
  anything inside a case breaks it at the first affected event.
* whole log: ``chain_hash = sha256(canonical_json([prev_chain_hash, log_seq, hash]))`` in log
  order, ending in ``log_head``. This catches what a per-case chain cannot: a whole case's
  events removed, or the newest events of the log removed together with their case's version.

Anyone who can rewrite the database *and* recompute hashes can forge both chains; the defences
against that are outside the database (signed PDF records carry content hashes, and
``head_hash`` can be noted down by an auditor).
"""

from __future__ import annotations

from collections.abc import Sequence

from workflow.core.events import Event, canonical_json, sha256_hex

from .models import StoredSignature

GENESIS_HASH = "0" * 64


def event_hash(
    prev_hash: str,
    event: Event,
    protocol_version: str,
    protocol_hash: str,
    signatures: Sequence[StoredSignature],
) -> str:
    record = {
        "event": event.to_json(),
        "protocol": {"version": protocol_version, "hash": protocol_hash},
        "signatures": [sig.to_json() for sig in signatures],
    }
    return sha256_hex(prev_hash.encode("ascii") + canonical_json(record))


def link_hash(prev_chain_hash: str, log_seq: int, hash_: str) -> str:
    return sha256_hex(canonical_json([prev_chain_hash, log_seq, hash_]))
