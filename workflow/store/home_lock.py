"""The home lock: an advisory lock file every Bedside process that uses a home holds.

Every command that opens the home takes it shared for as long as it runs, and ``bedside serve``
for its whole life; an operation that must be alone with the home (``bedside restore
--replace``, re-issuing the signing certificate) takes it exclusive and is refused while anyone
else holds it. Without it, a restore under a running server swapped the database out from under
it: the server kept writing signed, acknowledged steps into the replaced file, and they were
gone (issue 13.3).

``fcntl.flock`` locks belong to the open file, so the kernel drops them when a process dies,
even by SIGKILL: a crashed server never leaves the home locked. Locks taken twice by one process
on one home are counted, not taken again (a second ``flock`` on a new descriptor would conflict
with the first).
"""

from __future__ import annotations

import errno
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from workflow.core.errors import BedsideError, InputError
from workflow.private_files import FILE_MODE, make_private_dir

if sys.platform != "win32":
    import fcntl

LOCK_FILENAME = "bedside.lock"
# How long a command waits for an exclusive holder (a restore takes seconds) before giving up.
SHARED_WAIT_S = 60.0
_POLL_S = 0.1


class HomeInUse(BedsideError):
    """Another Bedside process holds the home; the operation needs it alone."""

    exit_code = 1
    code = "home_in_use"


@dataclass
class _Held:
    fd: int | None  # None: a home we may not write (an auditor's read-only copy): no lock file
    exclusive: bool
    count: int = 1


_HELD: dict[str, _Held] = {}


@dataclass
class HomeLock:
    """One hold on a home's lock; :meth:`release` (or leaving the ``with``) lets it go."""

    home: Path
    exclusive: bool
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        key = _key(self.home)
        held = _HELD.get(key)
        if held is None:
            return
        held.count -= 1
        if held.count == 0:
            del _HELD[key]
            if held.fd is not None:
                fcntl.flock(held.fd, fcntl.LOCK_UN)
                os.close(held.fd)

    def __enter__(self) -> HomeLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _key(home: Path) -> str:
    return str(home.resolve())


def _open_lock_file(home: Path) -> int | None:
    make_private_dir(home)
    path = home / LOCK_FILENAME
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except PermissionError:
        pass
    except OSError as exc:
        if exc.errno != errno.EROFS:  # a read-only file system: fall through to reading
            raise
    try:
        return os.open(path, os.O_RDONLY)  # flock works on a read-only descriptor
    except OSError:
        return None  # nobody can restore into a home nobody may write: nothing to guard


def lock_home(home: Path, *, exclusive: bool = False) -> HomeLock:
    """Hold ``home``'s lock: shared (waits up to SHARED_WAIT_S for an exclusive holder), or
    exclusive (refused at once with :class:`HomeInUse` when any other process holds it)."""
    if sys.platform == "win32":  # pragma: no cover - no flock; Bedside's sites run POSIX
        return HomeLock(home, exclusive)
    held = _HELD.get(_key(home)) if home.exists() else None
    if held is not None:
        if exclusive and not held.exclusive:
            raise InputError(
                "home", f"{home} is already in use by this command; it cannot also take it alone"
            )
        held.count += 1
        return HomeLock(home, exclusive)
    fd = _open_lock_file(home)
    key = _key(home)
    if fd is not None:
        _acquire(fd, home, exclusive)
    _HELD[key] = _Held(fd, exclusive)
    return HomeLock(home, exclusive)


def _acquire(fd: int, home: Path, exclusive: bool) -> None:
    if exclusive:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HomeInUse(
                f"another Bedside process holds the home {home} (a running `bedside serve` or "
                "another command); stop it, then try again"
            ) from None
        return
    deadline = time.monotonic() + SHARED_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise HomeInUse(
                    f"the home {home} is held alone by another Bedside process (a restore or a "
                    f"certificate re-issue) for over {SHARED_WAIT_S:.0f} s; try again when it "
                    "has finished"
                ) from None
            time.sleep(_POLL_S)
