"""`bedside interface hl7 --listen` as a real long-running process on a real home: it answers
orders over MLLP and logs one line per message; `bedside interface log` lists them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from interop.hl7_support import Sender, msa, order

from cli.test_cli_store import Cli, setup_site


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(tmp_path / "home", None, capsys, monkeypatch)


def test_the_listener_answers_and_logs_each_message(cli: Cli) -> None:
    setup_site(cli)  # MRN-9 on an active course
    env = {**os.environ, "BEDSIDE_HOME": str(cli.home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workflow.cli", "interface", "hl7", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("listening for HL7 v2 over MLLP on 127.0.0.1:"), first
        port = int(first.rsplit(":", 1)[1])
        now = datetime.now(UTC)
        start = f"{now + timedelta(hours=1):%Y%m%d%H%M}+0000"
        weighed = f"{now - timedelta(hours=1):%Y%m%d%H%M}+0000"
        sender = Sender(port)
        try:
            good = order("CLI0001", mrn="MRN-9", start=start, weighed=weighed)
            assert msa(sender.send(good))[0] == "AA"
            assert msa(sender.send(good))[0] == "AA"  # resent: acknowledged, not applied
            bad = order("CLI0002", mrn="MRN-9", start=start, weighed=weighed, dob="19680503")
            assert msa(sender.send(bad))[0] == "AE"
        finally:
            sender.close()
        lines = [proc.stdout.readline() for _ in range(3)]
        assert " CLI0001 AA applied: order ORD1001 opened cycle 1 dose 1" in lines[0]
        assert " CLI0001 AA duplicate: " in lines[1]
        assert " CLI0002 AE refused: PID-5/PID-7" in lines[2]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.strip().endswith("stopped")

    code, out, err = cli("interface", "log")
    assert code == 0, err
    rows = out.strip().splitlines()
    assert len(rows) == 3
    assert "CLI0002" in rows[0] and "AE refused" in rows[0]
    code, out, _ = cli("interface", "log", "--json", "--limit", "1")
    [entry] = json.loads(out)
    assert (entry["control_id"], entry["status"]) == ("CLI0002", "refused")
    code, _, err = cli("interface", "log", "--limit", "0")
    assert code == 2 and "limit" in err
    code, _, err = cli("interface", "hl7", "--listen", "nowhere")
    assert code == 2 and "HOST:PORT" in err
