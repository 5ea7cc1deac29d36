"""Issue 13.8 and 13.9 on the command line: a name mixing look-alike scripts is refused with a
warning (exit 2) until `--confirm-mixed-script`; a printed name already printed by an active
account is refused; `user list` shows the account id records print."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from workflow.cli import main

PASSWORD = "correct horse battery staple"


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def call(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(["--home", str(tmp_path / "home"), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def test_patient_add_warns_of_a_mixed_script_name_until_confirmed(run) -> None:  # type: ignore[no-untyped-def]
    args = ["patient", "add", "--mrn", "MRN-1", "--family", "Smith", "--given", "Pаul"]
    code, _out, err = run(*args, "--dob", "1970-01-01")
    assert code == 2, err
    assert "given_name" in err and "U+0430" in err and "--confirm-mixed-script" in err
    assert "Traceback" not in err
    assert json.loads(run("patient", "list", "--json")[1]) == []
    code, _, err = run(*args, "--dob", "1970-01-01", "--confirm-mixed-script")
    assert code == 0, err
    assert len(json.loads(run("patient", "list", "--json")[1])) == 1


def test_user_add_refuses_a_taken_printed_name_and_warns_before_the_password(run) -> None:  # type: ignore[no-untyped-def]
    def add(username: str, name: str, *extra: str, stdin: str = PASSWORD + "\n") -> tuple[int, str]:
        code, _, err = run(
            "user", "add", username, "--name", name, "--role", "nurse", "--password-stdin",
            *extra, stdin=stdin,
        )  # fmt: skip
        return code, err

    code, err = add("a.lee", "Ann Lee, RN")
    assert code == 0, err
    code, err = add("a.lee2", "ANN  LEE, rn")
    assert code == 2 and "printed_name" in err and "a.lee" in err, err
    # No password is read for a name that will be refused: an empty stdin is never reached.
    code, err = add("p.smith", "Pаul Smith", stdin="")
    assert code == 2 and "--confirm-mixed-script" in err and "printed_name" in err, err
    code, err = add("p.smith", "Pаul Smith", "--confirm-mixed-script")
    assert code == 0, err
    users = json.loads(run("user", "list", "--json")[1])
    assert {u["username"] for u in users} == {"a.lee", "p.smith"}
    assert all(len(u["id"]) == 32 for u in users)
    _, out, _ = run("user", "list")
    assert all(u["id"] in out for u in users)
