"""The Bedside home as the command line handles it before (or without) opening the service:
where it is, its lock, whether a restore may go into it. Service-level, so the edges need
nothing from ``workflow.store``; the store's modules load only when one of these runs
(``import workflow.cli`` stays light).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from workflow.core.errors import InputError

if TYPE_CHECKING:
    from workflow.store.home_lock import HomeLock as HomeLock


def home_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The Bedside home: the argument, else ``BEDSIDE_HOME``, else the platform's data folder."""
    from workflow.store.engine import home_dir as where

    return where(explicit)


def lock_home(home: Path, *, exclusive: bool = False) -> HomeLock:
    """Hold the home's lock (shared, or exclusive: HomeInUse when anyone else holds it), so a
    restore cannot replace the database under a running command (issue 13.3)."""
    from workflow.store.home_lock import lock_home as lock

    return lock(home, exclusive=exclusive)


def check_restorable(db_url: str | None) -> None:
    """``bedside restore`` puts a SQLite backup into the home: refused (InputError naming the
    database, with how to restore PostgreSQL instead) when the installation uses PostgreSQL."""
    from workflow.store.backup import PG_RESTORE_HELP
    from workflow.store.engine import normalise_url

    if db_url and not normalise_url(db_url).startswith("sqlite"):
        raise InputError(
            "database", "restore puts a SQLite backup into the home; " + PG_RESTORE_HELP
        )
