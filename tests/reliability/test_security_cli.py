"""Security through the command line (issue 6.3-6.5): signatures bound to their case and step,
brute force locked out and logged, no password anywhere it is stored or printed, export kept in
its folder, hostile files refused by `bedside verify`, and backup/restore verified."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest
from homes import floor_cost_home

from workflow.dev.demo import DEMO_PASSWORD

from .harness import bedside

WRONG = ["Wrong-guess-0001", "Wrong-guess-0002", "Wrong-guess-0003", "Wrong-guess-0004",
         "Wrong-guess-0005", "Wrong-guess-0006"]  # fmt: skip


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two complete demo doses (records archived); copied by tests that change it."""
    home = floor_cost_home(tmp_path_factory.mktemp("sec") / "home")
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


def _events(path: Path) -> int:
    # Closed at once: an open reader is "another program" to a restore, which then refuses.
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def test_restore_is_refused_while_serve_holds_the_home(demo_home: Path, tmp_path: Path) -> None:
    """Issue 13.3: `restore --replace` under a running server swapped the database out from
    under it; the server's later acknowledged steps went into the replaced file and were lost,
    with no copy kept. Now every command holds the home's lock (serve for its whole life) and
    the restore is refused, exit 1, naming why, with nothing changed."""
    from .web_harness import Server

    home = copy_home(demo_home, tmp_path / "home")
    backup = tmp_path / "bedside-backup.sqlite3"
    assert bedside(home, None, "backup", str(backup)).returncode == 0
    server = Server(home, None, tmp_path / "serve.log")
    try:
        # Other commands share the home with the server: a dose walked while it runs.
        walked = bedside(home, None, "demo", "--doses", "1")
        assert walked.returncode == 0, walked.stderr
        acknowledged = _events(home / "bedside.sqlite3")
        refused = bedside(home, None, "restore", str(backup), "--replace")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "another Bedside process holds the home" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert _events(home / "bedside.sqlite3") == acknowledged
        assert not list(home.glob("bedside.sqlite3.re*"))
    finally:
        server.stop()
    done = bedside(home, None, "restore", str(backup), "--replace")
    assert done.returncode == 0, done.stderr
    kept = [p for p in home.glob("bedside.sqlite3.replaced-*")]
    assert len(kept) == 1 and str(kept[0]) in done.stdout
    assert _events(kept[0]) == acknowledged  # the replaced database, every step in it
    assert _events(home / "bedside.sqlite3") < acknowledged
    # The restored log is older than the checkpoints signed since the backup: restore moves
    # them aside, says so, and the log verifies against the ones that remain.
    assert "older than" in done.stderr and "checkpoint" in done.stderr
    assert bedside(home, None, "audit", "verify").returncode == 0
    # The records signed for the dose walked after the backup stay in the write-once archive;
    # `archive verify` names them (the database no longer holds their case), as it must.
    after = bedside(home, None, "archive", "verify")
    assert after.returncode == 1 and "is not in the database" in after.stdout + after.stderr
    # PostgreSQL is restored with pg_restore; this command says so instead of guessing.
    pg = bedside(home, "postgresql://bedside@127.0.0.1:1/none", "restore", str(backup))
    assert pg.returncode == 2 and "pg_restore" in pg.stderr, pg.stderr


def test_a_home_whose_init_was_cut_off_signs_nothing_until_init_finishes(
    tmp_path: Path,
) -> None:
    """Issue 13.6: keys written and certificates not (an init cut off) left a home where
    `bedside serve` completed doses and signed nothing. Every path that ends doses refuses it
    now, and running `bedside init` again sets the partial set aside and makes a whole one."""
    home = tmp_path / "home"
    argv = ("init", "--admin", "admin", "--name", "Site Admin", "--password-stdin")
    assert bedside(home, None, *argv, stdin=DEMO_PASSWORD + "\n").returncode == 0
    for name in ("ca.pem", "chain.pem", "signing-cert.pem"):  # what the old init wrote last
        (home / "pki" / name).unlink()
    for command in (("serve", "--port", "1"), ("case", "list"), ("archive", "catch-up")):
        done = bedside(home, None, *command)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert "interrupted `bedside init`" in done.stderr and "Traceback" not in done.stderr
    again = bedside(home, None, *argv, stdin=DEMO_PASSWORD + "\n")
    assert again.returncode == 0, again.stderr
    assert "set aside the partial signing material" in again.stdout
    assert sorted(p.name for p in (home / "pki").glob("*.pem")) == [
        "ca-key.pem", "ca.pem", "chain.pem", "checkpoint-key.pem", "signing-cert.pem",
        "signing-key.pem",
    ]  # fmt: skip
    walked = bedside(home, None, "demo", "--doses", "1")
    assert walked.returncode == 0, walked.stderr
    checked = bedside(home, None, "archive", "verify")
    assert checked.returncode == 0 and "checked 2 records: 2 ok" in checked.stdout, checked.stdout


def test_every_file_of_a_home_is_private_and_serve_warns_of_the_ca_key(
    demo_home: Path, tmp_path: Path
) -> None:
    """Issue 13.5: the home 0700, the database and backups 0600, every key 0600; `serve`
    refuses a loosened key and warns that the CA key is on the serving host."""
    home = copy_home(demo_home, tmp_path / "home")
    assert stat.S_IMODE(demo_home.stat().st_mode) == 0o700
    assert stat.S_IMODE((demo_home / "bedside.sqlite3").stat().st_mode) == 0o600
    for key in ("ca-key.pem", "signing-key.pem", "session-verifier.key"):
        assert stat.S_IMODE((demo_home / "pki" / key).stat().st_mode) == 0o600, key
    backup = tmp_path / "b.sqlite3"
    assert bedside(home, None, "backup", str(backup)).returncode == 0
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    (home / "pki" / "ca-key.pem").chmod(0o644)
    loose = bedside(home, None, "serve", "--port", "1")
    assert loose.returncode == 1 and "ca-key.pem is readable by others" in loose.stderr
    (home / "pki" / "ca-key.pem").chmod(0o600)
    from workflow.cli._serve import exposure_warnings

    assert any("CA's private key" in w for w in exposure_warnings(home))
    (home / "pki" / "ca-key.pem").unlink()  # kept offline: no warning
    assert exposure_warnings(home) == []


def test_restore_names_a_trigger_the_backup_brought_and_changes_nothing(
    demo_home: Path, tmp_path: Path
) -> None:
    """Issue 13.4 through the command: exit 1, the trigger named, the live database as it was."""
    home = copy_home(demo_home, tmp_path / "home")
    backup = tmp_path / "hostile.sqlite3"
    assert bedside(home, None, "backup", str(backup)).returncode == 0
    with closing(sqlite3.connect(backup)) as conn:
        conn.execute(
            "CREATE TRIGGER forget_refusals AFTER INSERT ON auth_events "
            "WHEN new.outcome = 'refused' BEGIN DELETE FROM auth_events WHERE id = new.id; "
            "UPDATE users SET failed_attempts = 0, locked_until = NULL; END"
        )
        conn.commit()
    before = (home / "bedside.sqlite3").read_bytes()
    done = bedside(home, None, "restore", str(backup), "--replace")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "extra trigger 'forget_refusals' on 'auth_events'" in done.stderr
    assert "Traceback" not in done.stderr
    assert (home / "bedside.sqlite3").read_bytes() == before
    assert not list(home.glob("bedside.sqlite3.re*"))
