"""Archive index rows with no file behind them: what the development seeder writes for the
records of cases it invents at scale (rendering and signing each would take days).

Production code must recognise them (``archive verify`` reports them as placeholders, not as
missing files) without importing the seeder, so the marker lives here, beside the index.
"""

from __future__ import annotations

from workflow.core.events import sha256_hex

from .models import ArchivedRecord

PLACEHOLDER_PATH = "seed:no-file"


def placeholder_sha256(case_id: str, kind: str) -> str:
    """The index key of a seeded record that has no file (no PDF has that hash)."""
    return sha256_hex(f"bedside-seed-placeholder\n{case_id}\n{kind}".encode())


def is_placeholder(record: ArchivedRecord) -> bool:
    return record.path == PLACEHOLDER_PATH
