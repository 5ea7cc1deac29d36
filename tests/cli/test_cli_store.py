"""The command line on a real home: init, people, patients, a scripted dose, the audit trail,
signed records, verification, export. SQLite always; the scripted dose on PostgreSQL too."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from workflow.cli import main
from workflow.dev.demo import _SIGNERS

PASSWORD = "correct horse battery staple"
PEOPLE = [
    ("dr.okafor", "Dr. Amara Okafor", "prescriber"),
    ("p.lindqvist", "Per Lindqvist, PharmD", "pharmacist"),
    ("t.mensah", "Tomas Mensah, CPhT", "pharmacy_technician"),
    ("n.alvarez", "Nadia Alvarez, RN", "nurse"),
    ("n.chen", "Wei Chen, RN", "nurse"),
]
SIGNERS = _SIGNERS  # who signs each step in the demo walk


class Cli:
    def __init__(
        self,
        home: Path,
        db: str | None,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self.home, self.db, self.capsys, self.monkeypatch = home, db, capsys, monkeypatch

    def __call__(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        base = ["--home", str(self.home)] + (["--db", self.db] if self.db else [])
        code = main(base + list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(tmp_path / "home", None, capsys, monkeypatch)


def setup_site(cli: Cli) -> None:
    code, _out, err = cli(
        "init",
        "--admin",
        "admin",
        "--name",
        "Site Admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, err
    for username, name, role in PEOPLE:
        code, _, err = cli(
            "user",
            "add",
            username,
            "--name",
            name,
            "--role",
            role,
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
        assert code == 0, err
    assert (
        cli(
            "patient",
            "add",
            "--mrn",
            "MRN-9",
            "--family",
            "Quist",
            "--given",
            "Ada",
            "--dob",
            "1968-05-02",
        )[0]
        == 0
    )
    code, out, err = cli(
        "course",
        "start",
        "--mrn",
        "MRN-9",
        "--user",
        "dr.okafor",
        "--attest",
        "all",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, err
    assert "attested: Hospital inpatient setting" in out


def dose_script(path: Path, **spoil: object) -> Path:
    actions: list[dict[str, object]] = [{"open": {"mrn": "MRN-9"}, "by": "dr.okafor"}]
    measured = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for step, user in SIGNERS.items():
        action: dict[str, object] = {"sign": step, "by": user, "values": "auto"}
        if step == "order":
            action["values"] = {
                "dose_iu_per_kg": "600000",
                "dosing_weight_kg": "68",
                "weight_source": "standing_scale",
                "weight_measured_at": measured,
            }
        if step in spoil:
            action["override"] = spoil[step]
        actions.append(action)
    path.write_text(
        yaml.safe_dump({"passwords": {u: PASSWORD for u, _, _ in PEOPLE}, "actions": actions})
    )
    return path


def test_init_makes_home_admin_and_signing_material(cli: Cli) -> None:
    setup_site(cli)
    assert (cli.home / "bedside.sqlite3").exists()
    assert (cli.home / "pki" / "signing-key.pem").exists() or any((cli.home / "pki").glob("*.pem"))
    key = cli.home / "pki" / "checkpoint-key.pem"  # signs the log's checkpoints (issue 13.1)
    assert key.exists() and key.stat().st_mode & 0o777 == 0o600
    before = key.read_bytes()
    code, out, _ = cli("user", "list", "--json")
    users = {u["username"]: u for u in json.loads(out)}
    assert users["admin"]["roles"] == ["admin"] and users["n.chen"]["active"]
    # Running init again leaves everything as it is.
    code, out, _ = cli(
        "init",
        "--admin",
        "admin",
        "--name",
        "Site Admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert code == 0 and "already" in out
    assert key.read_bytes() == before  # kept, never replaced


def test_user_lifecycle(cli: Cli) -> None:
    setup_site(cli)
    code, _, err = cli(
        "user", "add", "n.xu", "--name", "X", "--role", "nurse", "--password-stdin", stdin="short\n"
    )
    assert code == 2 and "password" in err
    code, _, _ = cli(
        "user",
        "passwd",
        "n.chen",
        "--password-stdin",
        stdin=f"{PASSWORD}\nan even longer passphrase\n",
    )
    assert code == 0
    assert cli("user", "deactivate", "n.chen")[0] == 0
    _, out, _ = cli("user", "list", "--json")
    assert {u["username"]: u["active"] for u in json.loads(out)}["n.chen"] is False
    code, _, err = cli(
        "user",
        "add",
        "n.alvarez",
        "--name",
        "Dup",
        "--role",
        "nurse",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert code == 2 and "username" in err


def test_password_never_from_argv_and_no_terminal_is_refused(cli: Cli) -> None:
    setup_site(cli)
    code, _, err = cli("user", "add", "q", "--name", "Q", "--role", "nurse")
    assert code == 2 and "--password-stdin" in err


def test_duplicate_mrn_is_refused_and_nothing_changes(cli: Cli) -> None:
    setup_site(cli)
    code, _, err = cli(
        "patient",
        "add",
        "--mrn",
        "MRN-9",
        "--family",
        "Other",
        "--given",
        "X",
        "--dob",
        "1970-01-01",
    )
    assert code == 2 and "mrn" in err
    _, out, _ = cli("patient", "list", "--json")
    assert len(json.loads(out)) == 1


def test_scripted_dose_records_audit_and_verification(cli: Cli, tmp_path: Path) -> None:
    setup_site(cli)
    code, out, err = cli("run", str(dose_script(tmp_path / "dose.yaml")))
    assert code == 0, err + out
    assert "-> completed" in out
    _, out, _ = cli("case", "list", "--json")
    (case,) = json.loads(out)
    assert case["state"] == "completed" and case["dose_in_course"] == 1
    _, out, _ = cli("case", "show", case["case_id"], "--json")
    shown = json.loads(out)
    assert shown["plan"]["vials"] == 2 and len(shown["entries"]) == 14
    code, out, _ = cli("audit", "verify")
    assert code == 0 and "chains intact" in out
    code, out, _ = cli("audit", "log", case["case_id"])
    assert code == 0 and "double_check_second" in out and "[verified]" in out
    # Each signer with the user id beside the printed name (issue 13.9).
    ids = {u["username"]: u["id"] for u in json.loads(cli("user", "list", "--json")[1])}
    assert f"Wei Chen, RN ({ids['n.chen']}), nurse [verified]" in out
    # Both signed records are archived and verify.
    _, out, _ = cli("archive", "list", "--json")
    records = json.loads(out)
    assert sorted(r["kind"] for r in records) == ["administration", "compounding"]
    pdfs = [str(cli.home / r["path"]) for r in records]
    code, out, _ = cli("verify", *pdfs)
    assert code == 0, out
    code, out, _ = cli("archive", "verify")
    assert code == 0 and "2 ok, 0 failed" in out
    # Search by lot and by MRN.
    _, out, _ = cli("archive", "search", "--mrn", "MRN-9", "--json")
    assert len(json.loads(out)) == 2
    # Export: PDFs, SHA256SUMS and the CA certificate, checkable offline.
    export = tmp_path / "export"
    assert cli("archive", "export", str(export))[0] == 0
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=export, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    exported = sorted(str(p) for p in export.glob("*.pdf"))
    code, out, _ = cli("verify", "--trust", str(export / "bedside-ca.pem"), *exported)
    assert code == 0, out
    # Tamper with one stored event: audit verify exits 1 naming it.
    with sqlite3.connect(cli.home / "bedside.sqlite3") as conn:
        conn.execute(
            "UPDATE events SET data = replace(data, '\"112\"', '\"92\"') WHERE step = 'hold_checks'"
        )
    code, _, err = cli("audit", "verify")
    assert code == 1 and "BROKEN" in err and case["case_id"] in err


def test_verify_refuses_damaged_foreign_and_non_pdf_files(cli: Cli, tmp_path: Path) -> None:
    setup_site(cli)
    assert cli("run", str(dose_script(tmp_path / "dose.yaml")))[0] == 0
    _, out, _ = cli("archive", "list", "--json")
    good = (cli.home / json.loads(out)[0]["path"]).read_bytes()
    flipped = bytearray(good)
    flipped[len(flipped) // 3] ^= 0x01
    appended = good + b"\n1 0 obj\n<< /Evil true >>\nendobj\n%%EOF\n"
    cases = {
        "flipped.pdf": bytes(flipped),
        "truncated.pdf": good[: len(good) // 2],
        "note.pdf": b"just text, not a PDF",
        "appended.pdf": appended,
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        code, out, _ = cli("verify", str(path))
        assert code == 1, (name, out)
        assert "FAILED" in out
    # A record signed by another installation's CA is not trusted here.
    other = Cli(tmp_path / "other", None, cli.capsys, cli.monkeypatch)
    setup_site(other)
    assert other("run", str(dose_script(tmp_path / "dose2.yaml")))[0] == 0
    _, out, _ = other("archive", "list", "--json")
    foreign = other.home / json.loads(out)[0]["path"]
    code, out, _ = cli("verify", str(foreign))
    assert code == 1 and "certificate_trusted" in out
    with pytest.raises(SystemExit) as exc:
        cli("verify")
    assert exc.value.code == 2


def test_run_stops_at_the_first_refused_step(cli: Cli, tmp_path: Path) -> None:
    setup_site(cli)
    bad = dose_script(tmp_path / "bad.yaml", reconstitution={"diluent": "sodium_chloride_0_9"})
    code, out, err = cli("run", str(bad))
    assert code == 2
    assert "refused" in out and "aggregation" in err
    _, out, _ = cli("case", "list", "--json")
    (case,) = json.loads(out)
    assert case["state"] == "reconstitution"
    code, out, err = cli("run", str(tmp_path / "missing.yaml"))
    assert code == 2 and "script" in err


@pytest.mark.postgres
def test_scripted_dose_on_postgresql(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    pg_database: str,
) -> None:
    cli = Cli(tmp_path / "home", pg_database, capsys, monkeypatch)
    setup_site(cli)
    code, out, err = cli("run", str(dose_script(tmp_path / "dose.yaml")))
    assert code == 0, err + out
    code, out, _ = cli("audit", "verify")
    assert code == 0
    _, out, _ = cli("archive", "list", "--json")
    assert len(json.loads(out)) == 2


def test_init_reissues_the_signing_certificate_and_needs_the_home_to_itself(cli: Cli) -> None:
    """`bedside init --reissue-signing-cert` (issue 13.7): a new leaf from the same CA, the old
    certificate kept in pki/retired/; refused on a home without signing material, and init
    without --admin still names what is missing."""
    code, _, err = cli("init", "--reissue-signing-cert")
    assert code == 2 and "run `bedside init` first" in err
    code, _, err = cli("init", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 2 and "admin" in err
    setup_site(cli)
    pki = cli.home / "pki"
    ca_before = (pki / "ca.pem").read_bytes()
    cert_before = (pki / "signing-cert.pem").read_bytes()
    code, out, err = cli("init", "--reissue-signing-cert")
    assert code == 0, err
    assert "issued a new document-signing certificate" in out
    assert (pki / "ca.pem").read_bytes() == ca_before
    assert (pki / "signing-cert.pem").read_bytes() != cert_before
    assert [p.read_bytes() for p in (pki / "retired").iterdir()] == [cert_before]
