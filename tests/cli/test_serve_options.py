"""Issue 13.10: `bedside serve --workers N` was accepted and ignored (one process served
whatever N said). The option is gone; asking for it is a usage error, exit 2."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_refuses_workers_instead_of_ignoring_it(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "workflow.cli", "--home", str(tmp_path / "home"), "serve"]
    # A guard, not a timing assertion: a server that starts would never exit on its own.
    done = subprocess.run(
        [*argv, "--port", str(_free_port()), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unrecognized arguments: --workers 2" in done.stderr
    assert "Traceback" not in done.stderr
    helped = subprocess.run([*argv, "--help"], capture_output=True, text=True, check=True)
    assert "--workers" not in helped.stdout
    assert "--port" in helped.stdout
