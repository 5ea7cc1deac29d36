"""An unexpected exception at the command line's edge: its traceback goes to a private log file,
the person sees one line naming the exception type and that file, and the exit code is 70.

A traceback on a ward terminal helps nobody at the bedside and may show patient data to whoever
stands behind the screen; the file keeps it for whoever fixes the fault. The log lives in the
home (``<home>/logs/bedside.log``, 0600 in a 0700 folder, the same rule as the database); when
there is no home yet or it cannot be written, a private temporary file is used instead, so the
details are never lost.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

# The rest (traceback, tempfile, the private-file rule) loads only when a fault happens: this
# module is imported by every command and start-up counts (issue 15).

EX_SOFTWARE = 70  # sysexits.h: an internal software error
LOG_DIR = "logs"
LOG_FILE = "bedside.log"


def _entry(exc: BaseException, argv: list[str]) -> str:
    import traceback

    from workflow import __version__

    when = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        f"--- {when} bedside {__version__} pid {os.getpid()}",
        f"command: {' '.join(argv)}",
        *traceback.format_exception(exc),
    ]
    return "\n".join(line.rstrip("\n") for line in lines) + "\n"


def _home_log(home: str | None) -> Path:
    """The home's log file, opened for appending private; OSError when that cannot be done."""
    from workflow.private_files import make_private_dir

    try:
        from workflow.service.home import home_dir
    except Exception as exc:  # the fault may be in the store's own imports: use the fallback
        raise OSError(f"cannot resolve the home: {exc}") from exc
    root = home_dir(home)
    if not root.is_dir():  # no home yet (e.g. `bedside dose`): do not create one for a log
        raise FileNotFoundError(root)
    folder = make_private_dir(root / LOG_DIR)
    return folder / LOG_FILE


def write_fault(exc: BaseException, home: str | None, argv: list[str]) -> Path:
    """Append ``exc`` with its traceback to the home's log (or a temporary file); its path."""
    import tempfile

    text = _entry(exc, argv).encode("utf-8", "replace")
    try:
        path = _home_log(home)
        _append(path, text)
    except OSError:  # a read-only or full home: the details still go somewhere private
        fd, name = tempfile.mkstemp(prefix="bedside-", suffix=".log")  # 0600 by design
        path = Path(name)
        with os.fdopen(fd, "wb") as out:
            out.write(text)
    return path


def _append(path: Path, text: bytes) -> None:
    from workflow.private_files import FILE_MODE, tighten_file

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    try:
        tighten_file(path)  # a log loosened by hand holds tracebacks others should not read
        os.write(fd, text)
    finally:
        os.close(fd)


def report_fault(exc: BaseException, home: str | None, argv: list[str] | None = None) -> int:
    """Log ``exc`` and say so in one line on standard error; the exit code (70)."""
    path = write_fault(exc, home, list(sys.argv if argv is None else argv))
    print(
        f"bedside: unexpected error ({type(exc).__name__}); details in {path}",
        file=sys.stderr,
    )
    return EX_SOFTWARE
