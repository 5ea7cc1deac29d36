"""``bedside restore``: put a SQLite backup in place only when it is Bedside's and it verifies.

The one path every restore takes (issue 13.3, 13.4), in this order, with nothing changed until
the last step:

1. the home lock, exclusive: refused while any Bedside process (a running ``bedside serve``, a
   command) holds the home, so no server goes on writing into a database being replaced;
2. the backup: SQLite's integrity check, then its schema compared object by object with the one
   the migrations make (an extra trigger, view, index or table, or a changed one, is named and
   refused);
3. a copy beside the live database, migrated to this Bedside's schema, then the checks an
   auditor would run: every hash chain (``bedside audit verify``) and every archived record it
   indexes against the home's archive and CA (``bedside archive verify``);
4. the live database settled (its write-ahead log folded in by SQLite, never deleted) and kept
   beside it under a timestamped name, and the checked copy renamed into place.

PostgreSQL installations restore with ``pg_restore`` (README), not here.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from workflow.archive import Archive
from workflow.archive.checkpoints import (
    CHECKPOINT_DIR,
    KEY_FILE,
    load_checkpoint_key,
    read_checkpoints,
)
from workflow.core.clock import Clock, SystemClock
from workflow.core.errors import IntegrityError
from workflow.store import open_store
from workflow.store.backup import Candidate, discard, put_in_place, stage_candidate
from workflow.store.engine import home_dir
from workflow.store.home_lock import lock_home

# How many failed records a refusal names before it says "and N more".
_NAMED = 5


@dataclass(frozen=True)
class Restored:
    database: Path
    replaced: Path | None  # where the database it replaced was kept, if there was one
    events: int
    records: int
    # The home's signed checkpoints the restored (older) log falls behind, moved aside: kept,
    # no longer checked. Exported copies (write-once storage) still hold them.
    superseded: Path | None = None
    superseded_count: int = 0


def restore(
    file: str | os.PathLike[str],
    home: str | os.PathLike[str] | None = None,
    *,
    replace: bool = False,
    clock: Clock | None = None,
) -> Restored:
    """Restore the backup ``file`` into ``home`` (see the module's steps).

    Raises HomeInUse (another process holds the home), InputError (no such file, not a Bedside
    backup, a database already there without ``replace``), IntegrityError (integrity, schema,
    chain or archive check failed; the live database in use by another program).
    """
    home_path = home_dir(home)
    with lock_home(home_path, exclusive=True):
        candidate = stage_candidate(file, home_path, replace=replace)
        try:
            events, records = _verify_candidate(candidate, home_path, clock)
            behind = _checkpoints_behind(candidate, home_path, clock)
            replaced = put_in_place(candidate, clock)
        except BaseException:
            discard(candidate)
            raise
        aside = _set_aside(home_path, behind, clock) if behind else None
    return Restored(candidate.target, replaced, events, records, aside, len(behind))


def _checkpoints_behind(candidate: Candidate, home: Path, clock: Clock | None) -> list[Path]:
    """The home's checkpoints the backup's log contradicts: it is older than they are (events
    signed for since the backup are not in it). An unreadable checkpoint is not touched."""
    folder = home / CHECKPOINT_DIR
    key_file = home / "pki" / KEY_FILE
    if not folder.is_dir() or not key_file.exists():
        return []
    found = read_checkpoints(folder, load_checkpoint_key(home / "pki").public_key())
    store = open_store(f"sqlite:///{candidate.path}", clock=clock)
    try:
        report = store.verify_chains({cp.length for cp in found.checkpoints})
    finally:
        store.close()
    return [
        cp.path
        for cp in found.checkpoints
        if cp.length > report.log_length or report.chain_at.get(cp.length) != cp.hash
    ]


def _set_aside(home: Path, paths: list[Path], clock: Clock | None) -> Path:
    now = (clock or SystemClock()).now()
    aside = home / CHECKPOINT_DIR / f"superseded-by-restore-{now.strftime('%Y%m%dT%H%M%SZ')}"
    aside.mkdir(mode=0o700, exist_ok=True)
    for path in paths:
        path.rename(aside / path.name)
    return aside


def _verify_candidate(candidate: Candidate, home: Path, clock: Clock | None) -> tuple[int, int]:
    """Migrate the staged copy and run the chain and archive checks on it."""
    store = open_store(f"sqlite:///{candidate.path}", clock=clock)
    try:
        chains = store.verify_chains()
        if not chains.ok:
            raise IntegrityError(
                f"the backup's event log does not verify ({chains.first_problem}); the live "
                "database was not changed"
            )
        archive = Archive(home, store)
        if store.search_archive(limit=1):
            try:
                report = archive.verify_all()
            except IntegrityError as exc:
                raise IntegrityError(
                    f"the backup indexes archived records, but the home's archive cannot be "
                    f"checked ({exc.message}); copy the site's pki/ and archive/ into {home} "
                    "first. The live database was not changed"
                ) from None
            # Files the backup's index does not know are expected (records signed after the
            # backup was taken); `archive verify` lists them. Records it indexes must verify.
            if report.failed:
                named = "; ".join(f"{sha}: {why}" for sha, why in report.failed[:_NAMED])
                more = len(report.failed) - _NAMED
                raise IntegrityError(
                    f"{len(report.failed)} of the {report.checked} archived records the backup "
                    f"indexes do not verify against {home / 'archive'} ({named}"
                    + (f"; and {more} more" if more > 0 else "")
                    + "); the live database was not changed"
                )
            records = report.checked
        else:
            records = 0
    finally:
        store.close()
    _fold_journal(candidate.path)
    return chains.events_checked, records


def _fold_journal(path: Path) -> None:
    """Checkpoint the migrated copy back into one file, so no log of it is left to misplace."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
