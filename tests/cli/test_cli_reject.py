"""`bedside run` sends a step back (issue 16.2) through the same service action as the web."""

from __future__ import annotations

from pathlib import Path

from .test_cli_safety import cases, script, site, walk
from .test_cli_store import SIGNERS, Cli

__all__ = ["site"]  # the fixture, used by name

PHARMACIST = SIGNERS["pharmacy_verification"]


def test_run_sends_a_step_back_and_refuses_one_without_reason(site: Cli, tmp_path: Path) -> None:
    actions = walk("pharmacy_verification")
    code, _out, err = site("run", str(script(tmp_path / "a.yaml", actions)))
    assert code == 0, err
    before = cases(site)[0]
    case = before["case_id"]
    blank = [{"reject": {"step": "reconstitution", "reason": " "}, "by": PHARMACIST, "case": case}]
    code, _out, err = site("run", str(script(tmp_path / "b.yaml", blank)))
    assert code == 2 and "reason" in err, err
    assert cases(site)[0]["version"] == before["version"]
    sent = [
        {
            "reject": {"step": "reconstitution", "reason": "lot differs"},
            "by": PHARMACIST,
            "case": case,
        }
    ]
    code, _out, err = site("run", str(script(tmp_path / "c.yaml", sent)))
    assert code == 0, err
    after = cases(site)[0]
    assert after["version"] == before["version"] + 1 and after["state"] == "reconstitution"
