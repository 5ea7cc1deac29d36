"""Opening the installation and reading passwords, for the command modules."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from workflow.core.errors import InputError

if TYPE_CHECKING:
    # The service and the store (SQLAlchemy, pyHanko through the archive) load when a command
    # opens the home, never for `bedside --help` or `bedside dose` (start-up, issue 15).
    from workflow.core.clock import Clock
    from workflow.service import Bedside
    from workflow.service.home import HomeLock

# The home locks this command holds; ``main`` lets them go when the command ends.
_HELD: list[HomeLock] = []


def home_of(args: argparse.Namespace) -> Path:
    from workflow.service.home import home_dir

    return home_dir(args.home)


def hold_home(args: argparse.Namespace, *, exclusive: bool = False) -> Path:
    """Take the home's lock for the rest of this command (``serve``: for its whole life), so
    a restore cannot replace the database under it (issue 13.3)."""
    from workflow.service.home import lock_home

    home = home_of(args)
    _HELD.append(lock_home(home, exclusive=exclusive))
    return home


def release_home() -> None:
    while _HELD:
        _HELD.pop().release()


def open_app(
    args: argparse.Namespace, clock: Clock | None = None, *, archive: bool = True
) -> Bedside:
    from workflow.service import open_bedside

    hold_home(args)
    return open_bedside(
        args.home,
        args.db,
        args.protocol,
        clock=clock,
        archive=archive,
        overlay_path=getattr(args, "overlay", None),
    )


def read_password(
    args: argparse.Namespace, prompt: str = "Password: ", confirm: bool = False
) -> str:
    """From standard input with --password-stdin, else a prompt. Never from argv."""
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise InputError("password", "nothing on standard input", "one line with the password")
        return password
    if not sys.stdin.isatty():
        raise InputError("password", "no terminal to ask on; use --password-stdin")
    password = getpass.getpass(prompt)
    if confirm and getpass.getpass("Again: ") != password:
        raise InputError("password", "the two entries differ")
    return password


def parse_time(field: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            field,
            f"'{text}' is not a date and time",
            "ISO 8601 with a zone, e.g. 2026-11-22T08:00Z",
        ) from None
    if value.tzinfo is None:
        raise InputError(
            field, f"'{text}' has no time zone", "ISO 8601 with a zone, e.g. 2026-11-22T08:00Z"
        )
    return value.astimezone(UTC)


def add_password_stdin(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
