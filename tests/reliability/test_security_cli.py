"""Security through the command line (issue 6.3-6.5): signatures bound to their case and step,
brute force locked out and logged, no password anywhere it is stored or printed, export kept in
its folder, hostile files refused by `bedside verify`, and backup/restore verified."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from workflow.demo import DEMO_PASSWORD

from .harness import bedside

WRONG = ["Wrong-guess-0001", "Wrong-guess-0002", "Wrong-guess-0003", "Wrong-guess-0004",
         "Wrong-guess-0005", "Wrong-guess-0006"]  # fmt: skip


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two complete demo doses (records archived); copied by tests that change it."""
    home = tmp_path_factory.mktemp("sec") / "home"
    done = bedside(home, None, "demo", "--doses", "2")
    assert done.returncode == 0, done.stderr
    return home


def copy_home(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "bedside.sqlite3")


def test_signature_cannot_be_replayed_onto_another_case_or_step(
    demo_home: Path, tmp_path: Path
) -> None:
    with db(demo_home) as conn:
        cases = [r[0] for r in conn.execute("SELECT DISTINCT case_id FROM events ORDER BY id")]
        a, b = cases[0], cases[1]
        signed_a = conn.execute(
            "SELECT data FROM events WHERE case_id = ? AND step = 'reconstitution'", (a,)
        ).fetchone()[0]
        signed_b = conn.execute(
            "SELECT data FROM events WHERE case_id = ? AND step = 'reconstitution'", (b,)
        ).fetchone()[0]
        ids = [r[0] for r in conn.execute("SELECT id FROM events WHERE case_id = ?", (b,))]
    assert signed_a != signed_b  # prepared at different times
    # Another case: case A's signed reconstitution pasted over case B's.
    other = copy_home(demo_home, tmp_path / "case")
    with db(other) as conn:
        conn.execute(
            "UPDATE events SET data = ? WHERE case_id = ? AND step = 'reconstitution'",
            (signed_a, b),
        )
    done = bedside(other, None, "audit", "verify")
    assert done.returncode == 1 and "BROKEN" in done.stderr
    # Another step: one signed entry relabelled as the next step of the same case.
    other = copy_home(demo_home, tmp_path / "step")
    with db(other) as conn:
        conn.execute("UPDATE events SET step = 'dilution' WHERE id = ?", (ids[5],))
    done = bedside(other, None, "audit", "verify")
    assert done.returncode == 1 and "BROKEN" in done.stderr


def test_brute_force_locks_out_and_is_logged_without_passwords(
    demo_home: Path, tmp_path: Path
) -> None:
    home = copy_home(demo_home, tmp_path / "home")
    outputs = []
    for guess in WRONG[:5]:
        done = bedside(home, None, "case", "new", "--mrn", "MRN-000417", "--user", "dr.okafor",
                       "--password-stdin", stdin=guess + "\n")  # fmt: skip
        assert done.returncode == 1, done.stderr
        outputs.append(done.stdout + done.stderr)
    # Locked now: even the right password is refused, with the same kind of message.
    done = bedside(home, None, "case", "new", "--mrn", "MRN-000417", "--user", "dr.okafor",
                   "--password-stdin", stdin=DEMO_PASSWORD + "\n")  # fmt: skip
    assert done.returncode == 1
    outputs.append(done.stdout + done.stderr)
    assert "lock" in done.stderr.lower(), done.stderr
    # A password typed into the user-id field (people do): refused, and not kept as typed.
    slip = "Tuesday-rounds-7"
    done = bedside(home, None, "case", "new", "--mrn", "MRN-000417", "--user", slip,
                   "--password-stdin", stdin="x\n")  # fmt: skip
    assert done.returncode == 1
    outputs.append(done.stdout + done.stderr)
    with db(home) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(auth_events)")]
        rows = [dict(zip(cols, r, strict=True)) for r in conn.execute("SELECT * FROM auth_events")]
    mine = [r for r in rows if r.get("username") == "dr.okafor"]
    reasons = " ".join(str(r) for r in mine)
    assert sum(r["outcome"] == "refused" for r in mine) >= 6, mine  # five guesses + one locked
    assert "lock" in reasons.lower(), reasons
    # No password, right or wrong, in what was printed or stored.
    stored = (home / "bedside.sqlite3").read_bytes()
    wal = home / "bedside.sqlite3-wal"
    stored += wal.read_bytes() if wal.exists() else b""
    for secret in [*WRONG[:5], DEMO_PASSWORD, slip, slip.lower()]:
        assert secret.encode() not in stored, secret
        assert all(secret not in out for out in outputs), secret
    for pdf in (home / "archive").rglob("*.pdf"):
        data = pdf.read_bytes()
        assert DEMO_PASSWORD.encode() not in data


def test_export_never_writes_outside_its_folder(demo_home: Path, tmp_path: Path) -> None:
    home = copy_home(demo_home, tmp_path / "home")
    escape = "../" * 21 + "x"  # 64 characters, the only shape the index checks
    assert len(escape) == 64
    with db(home) as conn:
        row = conn.execute("SELECT * FROM archived_records LIMIT 1").fetchone()
        cols = [r[1] for r in conn.execute("PRAGMA table_info(archived_records)")]
        values = dict(zip(cols, row, strict=True))
        values["sha256"] = escape
        values["events_sha256"] = None  # a forged row, not a second copy of a real record
        conn.execute(
            f"INSERT INTO archived_records ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' for _ in cols)})",
            [values[c] for c in cols],
        )
    target = tmp_path / "out" / "export"
    before = set(tmp_path.rglob("*"))
    done = bedside(home, None, "archive", "export", str(target))
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    created = set(tmp_path.rglob("*")) - before
    assert all(target in p.parents or p == target or p == target.parent for p in created), created
    assert not any(p.name == "x" for p in created)


def _hostile_pdfs(folder: Path, genuine: bytes) -> list[Path]:
    files = {
        "empty.pdf": b"",
        "text.pdf": b"just some text, not a PDF\n",
        "binary.pdf": os.urandom(4096),
        "truncated.pdf": genuine[: len(genuine) // 2],
        "appended.pdf": genuine + b"\n%injected\n1 0 obj <</Type/Catalog>> endobj\n%%EOF\n",
        "flipped.pdf": genuine[:2000] + bytes([genuine[2000] ^ 0xFF]) + genuine[2001:],
        "header-only.pdf": b"%PDF-1.7\n%%EOF\n",
        "huge-xref.pdf": b"%PDF-1.7\nxref\n0 999999999\ntrailer <</Size 999999999>>\n"
        b"startxref\n9\n%%EOF\n",
        "javascript.pdf": b"%PDF-1.4\n1 0 obj <</Type/Catalog/OpenAction <</S/JavaScript"
        b"/JS(app.alert(1))>> /Pages 2 0 R>> endobj\n2 0 obj <</Type/Pages/Kids[]/Count 0>>"
        b" endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n",
        "deep-nesting.pdf": b"%PDF-1.4\n1 0 obj " + b"[" * 100_000 + b"]" * 100_000
        + b" endobj\n%%EOF\n",
        "zeros.pdf": b"%PDF-1.7\n" + b"\0" * (8 << 20),
    }  # fmt: skip
    out = []
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        out.append(path)
    return out


def test_hostile_files_are_refused_by_verify(demo_home: Path, tmp_path: Path) -> None:
    genuine = next((demo_home / "archive").rglob("*.pdf"))
    ok = bedside(demo_home, None, "verify", str(genuine))
    assert ok.returncode == 0, ok.stdout
    files = _hostile_pdfs(tmp_path, genuine.read_bytes())
    done = bedside(demo_home, None, "verify", "--json", *map(str, files))
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    results = {r["file"]: r for r in json.loads(done.stdout)}
    assert set(results) == {str(f) for f in files}
    assert not [name for name, r in results.items() if r["ok"]]


def test_backup_restore_then_audit_and_archive_verify(demo_home: Path, tmp_path: Path) -> None:
    home = copy_home(demo_home, tmp_path / "home")
    backup = tmp_path / "backups" / "bedside-backup.sqlite3"
    done = bedside(home, None, "backup", str(backup))
    assert done.returncode == 0, done.stderr
    # Disaster: the database is lost; the archive and the keys survive on their own disk.
    for suffix in ("", "-wal", "-shm"):
        (home / f"bedside.sqlite3{suffix}").unlink(missing_ok=True)
    done = bedside(home, None, "restore", str(backup))
    assert done.returncode == 0, done.stderr
    assert bedside(home, None, "audit", "verify").returncode == 0
    checked = bedside(home, None, "archive", "verify")
    assert checked.returncode == 0, checked.stdout
    assert "checked 4 records: 4 ok" in checked.stdout
    # The restored installation carries on.
    assert bedside(home, None, "demo", "--doses", "1").returncode == 0
    # Refusals: an existing database, a file that is not a backup.
    again = bedside(home, None, "restore", str(backup))
    assert again.returncode == 2
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(os.urandom(8192))
    done = bedside(home, None, "restore", str(junk), "--replace")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert bedside(home, None, "audit", "verify").returncode == 0
