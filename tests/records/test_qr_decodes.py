"""The QR code on a rendered record decodes (with zbar, as a phone or scanner would) to the
record's hash."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from workflow.core.protocol import load_protocol
from workflow.dev.demo import run_in_memory
from workflow.records.case_records import record_documents
from workflow.records.render import render
from workflow.resources import default_protocol_path


def _last_page_png(pdf: bytes, folder: Path) -> Path:
    path = folder / "record.pdf"
    path.write_bytes(pdf)
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True)
    pages = int(
        next(line.split()[1] for line in info.stdout.splitlines() if line.startswith("Pages:"))
    )
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            "100",
            "-f",
            str(pages),
            "-l",
            str(pages),
            str(path),
            str(folder / "page"),
        ],
        check=True,
    )
    (png,) = folder.glob("page*.png")
    return png


def test_record_qr_decodes_to_the_record_hash(tmp_path: Path) -> None:
    protocol = load_protocol(default_protocol_path())
    (case,) = run_in_memory(protocol, 1, datetime(2026, 11, 2, 6, 0, tzinfo=UTC))
    for n, document in enumerate(record_documents(case, hashlib.sha256(b"chain").hexdigest())):
        folder = tmp_path / str(n)
        folder.mkdir()
        png = _last_page_png(render(document), folder)
        decoded = subprocess.run(
            ["zbarimg", "-q", "--raw", "-Sdisable", "-Sqrcode.enable", str(png)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert decoded.stdout.strip() == document.record_hash(), decoded.stderr
