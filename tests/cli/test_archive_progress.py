"""Issue 15.4: the archive's long commands show progress: a bar on a terminal, one plain line
per item otherwise (here: a subprocess whose output is a pipe)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def bedside(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BEDSIDE_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "workflow.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_archive_verify_export_and_catch_up_report_each_item(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert bedside(home, "demo").returncode == 0
    checked = bedside(home, "archive", "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "archive verify: 1/2" in checked.stderr and "archive verify: 2/2" in checked.stderr
    exported = bedside(home, "archive", "export", str(tmp_path / "out"))
    assert exported.returncode == 0, exported.stderr
    lines = [line for line in exported.stderr.splitlines() if line.startswith("archive export")]
    assert [line.split()[2] for line in lines] == ["1/2", "2/2"]
    caught = bedside(home, "archive", "catch-up")
    assert caught.returncode == 0 and "archived the records of 0" in caught.stdout
