"""Files only the service account may read: the home (0700), the database and its backups, keys.

One place for the rule, so the database, its write-ahead log, every backup, the signing keys and
the site key get the same treatment: created private from the first byte (never created with the
umask's mode and narrowed afterwards, which leaves a moment when others can open them), and a
key that someone loosened later is refused rather than used.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from workflow.core.errors import IntegrityError

HOME_MODE = 0o700
FILE_MODE = 0o600


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700; a folder we created is never looser.

    An existing folder is left as it is (a site may have put the home on storage it manages);
    :func:`tighten_dir` narrows one we own.
    """
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=HOME_MODE)
        # mkdir's mode is filtered by the umask, which can only remove bits; say it outright.
        os.chmod(path, HOME_MODE)
    return path


def tighten_dir(path: Path) -> None:
    """Narrow a folder we own to 0700 (the home: it holds the database and the keys)."""
    st = path.stat()
    if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)


def create_private_file(path: Path, *, exclusive: bool = True) -> int:
    """Open a new file that only its owner can read (0600 at creation); returns the fd."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    return os.open(path, flags, FILE_MODE)


def tighten_file(path: Path) -> None:
    """Narrow an existing file we own to 0600 (a database made before this rule, say)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, FILE_MODE)


def refuse_if_exposed(path: Path) -> None:
    """IntegrityError when a private key is readable or writable by anyone but its owner.

    Refused, not silently narrowed: a key that was exposed may have been copied, and the person
    who runs the site has to decide whether to replace it.
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise IntegrityError(
            f"{path} is readable by others (mode {mode:o}); chmod 600 it, and replace the key "
            "if others may have copied it"
        )


def fsync_dir(path: Path) -> None:
    """Make a rename or link in ``path`` durable (POSIX: the directory entry is its own write)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
