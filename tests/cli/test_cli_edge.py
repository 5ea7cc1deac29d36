"""The command line's edge (issues 14.5-14.6 and 15.1, 15.4): what `import workflow.cli` loads,
one settings error with FILE:LINE, `serve` taking the idle timeout from bedside.yaml, one line
and a private log for an unexpected fault (exit 70), and progress for the slow commands."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from workflow.cli import main
from workflow.cli._progress import Progress, track
from workflow.service import open_bedside
from workflow.settings import ConfigError, load_settings
from workflow.web import WebSettings, create_app

HEAVY = (
    "pyhanko",
    "sqlalchemy",
    "fastapi",
    "reportlab",
    "uvicorn",
    "aiohttp",
    "tqdm",
    "workflow.dev.seed",
    "workflow.store",
    "workflow.service.bedside",
    "workflow.archive",
)
BEDSIDE = [sys.executable, "-m", "workflow.cli"]


def _loaded_after(code: str) -> list[str]:
    """Heavy modules present in a fresh interpreter after ``code`` ran (as a process would)."""
    probe = (
        f"{code}\nimport sys, json\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_loads_no_heavy_module() -> None:
    assert _loaded_after("import workflow.cli") == []


def test_dose_and_help_load_no_heavy_module() -> None:
    dose = (
        "import contextlib, io\nfrom workflow.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['dose', '--weight-kg', '70']) == 0"
    )
    assert _loaded_after(dose) == []
    helped = (
        "import contextlib, io\nfrom workflow.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(['--help'])\n    except SystemExit:\n        pass"
    )
    assert _loaded_after(helped) == []


# -- settings -------------------------------------------------------------------------------


def test_a_bad_settings_file_exits_2_with_file_line_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    settings = home / "bedside.yaml"
    settings.write_text(
        "site:\n  time_zone: Mars/Olympus\nsecurity:\n  lockout_minutes: soon\n"
        "web:\n  idle_timeout_minutes: 0\n  colour: blue\n"
    )
    done = subprocess.run(
        [*BEDSIDE, "--home", str(home), "user", "list"], capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    # Every problem at once, each FILE:LINE: key: message with the allowed range.
    assert f"{settings}:2: site.time_zone: 'Mars/Olympus' is not a known time zone" in done.stderr
    assert f"{settings}:4: security.lockout_minutes: must be a whole number" in done.stderr
    assert f"{settings}:6: web.idle_timeout_minutes: 0 is out of range (allowed: 1 to 1440)" in (
        done.stderr
    )
    assert f"{settings}:7: web.colour: unknown key" in done.stderr


def test_settings_errors_are_one_config_error(tmp_path: Path) -> None:
    (tmp_path / "bedside.yaml").write_text("web: {idle_timeout_minutes: true}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path)
    assert caught.value.exit_code == 2
    (issue,) = caught.value.issues
    assert (issue.line, issue.key) == (1, "web.idle_timeout_minutes")
    assert caught.value.to_dict()["code"] == "invalid_settings"


def test_the_app_factory_uses_the_files_idle_timeout(tmp_path: Path) -> None:
    from datetime import timedelta

    (tmp_path / "bedside.yaml").write_text("web:\n  idle_timeout_minutes: 7\n")
    bedside = open_bedside(tmp_path, archive=False)
    app = create_app(bedside)
    assert app.state.web.settings.idle_timeout == timedelta(minutes=7)
    # The flag overrides the file; without it the file wins over the built-in 15.
    assert WebSettings.for_site(bedside.settings, idle_minutes=3).idle_timeout == timedelta(
        minutes=3
    )
    assert WebSettings.for_site(bedside.settings).idle_timeout == timedelta(minutes=7)
    bedside.store.close()


def test_serve_help_says_the_flag_overrides_the_setting() -> None:
    done = subprocess.run([*BEDSIDE, "serve", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "overrides web.idle_timeout_minutes in <home>/bedside.yaml" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _served_idle_text(home: Path, *extra: str) -> str:
    """Start a real `bedside serve`, read the idle sign-out text of its sign-in page, stop it."""
    port = _free_port()
    proc = subprocess.Popen(
        [*BEDSIDE, "--home", str(home), "serve", "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60  # a guard for a server that never starts, not a figure
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"bedside serve exited ({proc.returncode}): {err}")
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/login?why=idle", timeout=2)
                return page.text
            except httpx.TransportError:
                time.sleep(0.2)
        pytest.fail("bedside serve did not start")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_serve_takes_the_idle_timeout_from_bedside_yaml(tmp_path: Path) -> None:
    from workflow.records.pki import create_site_pki

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    create_site_pki(home / "pki", organisation="Idle site")
    (home / "bedside.yaml").write_text("web:\n  idle_timeout_minutes: 7\n")
    assert "Signed out after 7 minutes without use" in _served_idle_text(home)
    assert "Signed out after 3 minutes without use" in _served_idle_text(
        home, "--idle-minutes", "3"
    )


# -- unexpected faults ----------------------------------------------------------------------

_FAULT = (
    "import sys\nimport workflow.core.dosing as d\n"
    "def broken(*a, **k):\n    raise RuntimeError('MRN-SECRET-1 in a fault')\n"
    "d.plan_dose = broken\n"
    "from workflow.cli import main\nsys.exit(main(sys.argv[1:]))"
)


def test_an_unexpected_fault_is_one_line_and_a_private_log(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    done = subprocess.run(
        [sys.executable, "-c", _FAULT, "--home", str(home), "dose", "--weight-kg", "70"],
        capture_output=True,
        text=True,
    )
    log = home / "logs" / "bedside.log"
    assert done.returncode == 70
    assert done.stderr == f"bedside: unexpected error (RuntimeError); details in {log}\n"
    assert "MRN-SECRET-1" not in done.stderr + done.stdout  # the details stay in the file
    text = log.read_text()
    assert "Traceback" in text and "RuntimeError: MRN-SECRET-1 in a fault" in text
    assert "dose --weight-kg 70" in text
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    # A second fault appends; the first stays.
    subprocess.run(
        [sys.executable, "-c", _FAULT, "--home", str(home), "dose", "--weight-kg", "71"],
        capture_output=True,
        check=False,
    )
    assert log.read_text().count("RuntimeError: MRN-SECRET-1") == 2


def test_an_unwritable_log_folder_falls_back_to_a_private_temporary_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "logs").write_text("not a folder")  # the log cannot be made where it belongs
    done = subprocess.run(
        [sys.executable, "-c", _FAULT, "--home", str(home), "dose", "--weight-kg", "70"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 70
    path = Path(done.stderr.rsplit("details in ", 1)[1].strip())
    assert path.parent != home / "logs" and "RuntimeError" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.unlink()


def test_a_missing_home_is_not_created_for_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import workflow.core.dosing

    def broken(*_: object, **__: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(workflow.core.dosing, "plan_dose", broken)
    home = tmp_path / "nowhere"
    assert main(["--home", str(home), "dose", "--weight-kg", "70"]) == 70
    err = capsys.readouterr().err
    assert err.startswith("bedside: unexpected error (KeyError); details in ")
    path = Path(err.rsplit("details in ", 1)[1].strip())
    assert not home.exists()
    assert "KeyError: 'boom'" in path.read_text()
    path.unlink()


def test_refusals_still_exit_with_their_own_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dose", "--weight-kg", "banana"]) == 2
    assert "unexpected" not in capsys.readouterr().err


def test_demo_people_are_made_only_when_absent(tmp_path: Path) -> None:
    """ensure_demo_people took any exception as "no such user" and tried to add the account;
    now a fault reading the account is itself, and only NotFound adds one."""
    from workflow.core.errors import NotFound
    from workflow.dev.demo import DEMO_PEOPLE, ensure_demo_people

    class Faulty:
        def get_user(self, username: str) -> object:
            raise OSError("disk gone")

    class Absent:
        def __init__(self) -> None:
            self.added: list[str] = []

        def get_user(self, username: str) -> object:
            raise NotFound(username)

        def add_user(self, username: str, *_: object, **__: object) -> None:
            self.added.append(username)

    class App:
        def __init__(self, identity: object) -> None:
            self.identity = identity

    with pytest.raises(OSError, match="disk gone"):
        ensure_demo_people(App(Faulty()))
    absent = Absent()
    ensure_demo_people(App(absent))
    assert absent.added == [p.username for p in DEMO_PEOPLE]


# -- progress -------------------------------------------------------------------------------


def test_plain_progress_is_one_line_per_item() -> None:
    out = io.StringIO()
    seen = list(track(["a", "b", "c"], "export fhir", unit="case", name=str, bar=False, stream=out))
    assert seen == ["a", "b", "c"]
    assert out.getvalue() == "export fhir: 1/3 a\nexport fhir: 2/3 b\nexport fhir: 3/3 c\n"


def test_counter_reports_running_totals() -> None:
    out = io.StringIO()
    with Progress("dev seed", 10, unit="case", bar=False, stream=out) as p:
        p.update_to(4)
        p.update_to(10)
    assert out.getvalue() == "dev seed: 4/10 cases\ndev seed: 10/10 cases\n"


def test_a_terminal_gets_a_bar_with_count_rate_and_time_left() -> None:
    out = io.StringIO()
    with Progress("demo", 4, unit="dose", bar=True, stream=out) as p:
        for _ in range(4):
            p.advance()
    drawn = out.getvalue()
    assert "demo" in drawn and "4/4" in drawn
    assert "dose/s" in drawn  # the rate
    assert "<" in drawn  # elapsed<remaining: tqdm's time left


def test_seed_prints_plain_progress_off_a_terminal(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *BEDSIDE,
            "--home",
            str(tmp_path / "home"),
            "dev",
            "seed",
            "--patients",
            "3",
            "--doses",
            "6",
            "--signed-sample",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("dev seed: ") for line in lines), done.stderr
    assert lines[-1].endswith("/6 cases")
    assert "seeded 3 patients" in done.stdout


def test_demo_and_export_print_a_line_per_dose_off_a_terminal(tmp_path: Path) -> None:
    home = tmp_path / "home"
    demo = subprocess.run(
        [*BEDSIDE, "--home", str(home), "demo", "--doses", "2"], capture_output=True, text=True
    )
    assert demo.returncode == 0, demo.stderr
    walked = [line for line in demo.stderr.splitlines() if line.startswith("demo: ")]
    assert [line.split()[1] for line in walked] == ["1/2", "2/2"], demo.stderr
    assert all(line.endswith(" completed") for line in walked), demo.stderr
    out = tmp_path / "fhir"
    export = subprocess.run(
        [*BEDSIDE, "--home", str(home), "export", "fhir", "--all", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert export.returncode == 0, export.stderr
    cases = sorted(p.stem for p in out.glob("*.json"))
    lines = export.stderr.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["export", "fhir:", "1/2"],
        ["export", "fhir:", "2/2"],
    ], export.stderr
    assert sorted(line.split()[3] for line in lines) == cases
    assert export.stdout == f"wrote 2 FHIR bundle(s) to {out}\n"


def test_verify_reports_a_database_fault_not_a_missing_record(tmp_path: Path) -> None:
    """`bedside verify` took any exception looking the file up in the archive index as "no
    archived record has this SHA-256": a database fault read as a forged or foreign file."""
    import sqlite3

    home = tmp_path / "home"
    walked = subprocess.run(
        [*BEDSIDE, "--home", str(home), "demo"], capture_output=True, text=True, check=True
    )
    pdf = next(line.split()[1] for line in walked.stdout.splitlines() if "record " in line)
    with sqlite3.connect(home / "bedside.sqlite3") as db:  # the index is gone: a real fault
        db.execute("ALTER TABLE archived_records RENAME TO archived_records_gone")
    done = subprocess.run(
        [*BEDSIDE, "--home", str(home), "verify", pdf], capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "no archived record has this SHA-256" not in done.stdout + done.stderr
    assert "archived_records" in done.stderr and "Traceback" not in done.stderr


def _commands(parser: object) -> dict[str, object]:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_command_table_matches_what_each_module_registers() -> None:
    """`main` builds only the named command's parser (start-up); the table it uses must say
    exactly which module registers which command, or a command would vanish."""
    import argparse

    from workflow.cli import _REGISTRARS, build_parser

    for module, names in _REGISTRARS:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        module.register(sub)
        assert set(_commands(parser)) <= set(names), module.__name__
    declared = {name for _, names in _REGISTRARS for name in names}
    assert set(_commands(build_parser())) == declared
    for name in declared:  # each one alone parses to the same sub-parser as in the whole tree
        alone = _commands(build_parser(name))[name]
        whole = _commands(build_parser())[name]
        assert alone.format_help() == whole.format_help()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["dose", "--weight-kg", "70"], "dose"),
        (["--home", "serve", "dose"], "dose"),  # a value that looks like a command
        (["--hom", "serve", "dose"], "dose"),  # argparse's abbreviation of --home
        (["--db=x", "--protocol", "p.yaml", "course", "report", "M"], "course"),
        (["--help"], None),
        (["-h", "dose"], None),
        (["nonsense"], None),
        ([], None),
    ],
)
def test_the_command_is_told_from_argv(argv: list[str], named: str | None) -> None:
    from workflow.cli import command_named

    assert command_named(argv) == named


def _on_a_terminal(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` with standard input, output and error on a new pseudo-terminal (left at
    0 x 0, as `script` and some CI runners leave it); its exit code and everything it drew."""
    master, slave = os.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    return proc.wait(), drawn.decode("utf-8", "replace")


def test_seed_draws_a_bar_on_a_terminal(tmp_path: Path) -> None:
    code, drawn = _on_a_terminal(
        [
            *BEDSIDE,
            "--home",
            str(tmp_path / "home"),
            "dev",
            "seed",
            "--patients",
            "2",
            "--doses",
            "4",
            "--signed-sample",
            "0",
        ]
    )
    assert code == 0, drawn
    assert "dev seed: 100%" in drawn and "4/4" in drawn, drawn
    assert "case/s" in drawn or "cases/s" in drawn  # the rate, beside elapsed<left
    assert "dev seed: 4/4 cases\n" not in drawn.replace("\r\n", "\n")  # no plain lines here
