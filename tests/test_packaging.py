"""A non-editable install ships the protocol files and templates the installed command needs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from workflow.core.protocol import load_protocol

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_checklists_and_templates(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("bedside-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "workflow/_data/checklists/aldesleukin.yaml" in names
    assert "workflow/_data/templates/records/compounding.yaml" in names
    assert "workflow/_data/templates/records/administration.yaml" in names
    # Installed without the source tree beside it, the command still finds its files.
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from workflow.resources import default_protocol_path, templates_dir;"
            "from workflow.core.protocol import load_protocol;"
            "p = default_protocol_path(); print(p); print(load_protocol(p).version);"
            "print(templates_dir())",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.splitlines()
    shipped = load_protocol(ROOT / "checklists" / "aldesleukin.yaml").version
    assert lines[0].startswith(str(target)) and lines[1] == shipped
    assert lines[2].startswith(str(target))
