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

from cli.test_cli_safety import script
from cli.test_cli_store import SIGNERS, Cli, setup_site
from workflow.service import open_bedside


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


def test_bedside_run_refuses_a_dose_stopped_after_its_bag_was_made(
    cli: Cli, tmp_path: Path
) -> None:
    """Issue 16 (orders16.3) at `bedside run`: the dose an HL7 order opened is prepared, the
    hospital's DC flags it, and the next scripted step is refused with the core's words while
    the waste side exit is still taken."""
    setup_site(cli)  # MRN-9 on an active course
    now = datetime.now(UTC)
    start = f"{now + timedelta(minutes=30):%Y%m%d%H%M}+0000"
    weighed = f"{now - timedelta(hours=1):%Y%m%d%H%M}+0000"
    app = open_bedside(cli.home)
    try:
        reply = app.receive_hl7(order("RUN0001", mrn="MRN-9", start=start, weighed=weighed))
        assert reply.result.ack_code == "AA", reply.result.detail
        [case] = app.store.list_cases()
        steps = [s for s in app.protocol.steps if s.id != "order"]
        prepared = next(i for i, s in enumerate(steps) if s.sets_beyond_use)
        walk = [
            {"sign": s.id, "by": SIGNERS[s.id], "values": "auto", "case": case.id}
            for s in steps[: prepared + 1]
        ]
        code, _out, err = cli("run", str(script(tmp_path / "a.yaml", walk)))
        assert code == 0, err
        dc = order("RUN0002", "DC", mrn="MRN-9", start=start, weighed=weighed)
        assert app.receive_hl7(dc).result.ack_code == "AA"
    finally:
        app.store.close()
    after = steps[prepared + 1]
    nxt = [{"sign": after.id, "by": SIGNERS[after.id], "values": "auto", "case": case.id}]
    code, out, err = cli("run", str(script(tmp_path / "b.yaml", nxt)))
    assert code != 0
    said = out + err
    assert "discontinued by the hospital (DC, message RUN0002" in said, said
    assert "the bag is to be wasted" in said
    waste = [
        {
            "waste": {"reason": "dose_not_given"},
            "by": SIGNERS["pharmacy_verification"],
            "case": case.id,
        }
    ]
    code, out, err = cli("run", str(script(tmp_path / "c.yaml", waste)))
    assert code == 0, out + err
