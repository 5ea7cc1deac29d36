"""The command line: the contract in DESIGN.md, exit codes, and messages naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workflow.cli import main
from workflow.resources import default_protocol_path

CONTRACT_FIELDS = {
    "weight_kg",
    "dose_iu",
    "dose_mg",
    "reconstituted_volume_ml",
    "vials",
    "diluent_volume_ml",
    "final_volume_ml",
    "final_concentration_mcg_per_ml",
    "infusion_minutes",
    "pump_rate_ml_per_h",
    "warnings",
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_dose_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "dose", "--weight-kg", "70", "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) >= CONTRACT_FIELDS
    assert data["dose_iu"] == 42000000
    assert data["reconstituted_volume_ml"] == 2.3333
    assert data["vials"] == 2
    assert data["diluent_volume_ml"] == 50
    assert data["final_volume_ml"] == 52.3333
    assert round(data["final_concentration_mcg_per_ml"]) == 49
    assert data["pump_rate_ml_per_h"] == 209.3333
    assert data["infusion_minutes"] == 15
    assert data["warnings"] == []
    for key in CONTRACT_FIELDS - {"warnings"}:
        assert isinstance(data[key], int | float), key


def test_dose_json_warnings_have_stable_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "dose", "--weight-kg", "250", "--dose-iu-per-kg", "700000", "--json")
    assert code == 0
    codes = {w["code"] for w in json.loads(out)["warnings"]}
    assert codes == {"concentration_above_window", "dose_not_label_dose"}
    for w in json.loads(out)["warnings"]:
        assert set(w) == {"code", "message"}


def test_dose_beyond_use_time(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "dose", "--weight-kg", "70", "--prepared-at", "2026-11-22T08:00Z", "--json"
    )
    assert code == 0
    assert json.loads(out)["beyond_use_at"] == "2026-11-24T08:00:00.000000Z"


def test_dose_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "dose", "--weight-kg", "39")
    assert code == 0
    assert "25 mL D5W" in out and "no in-line filter" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["dose"], "weight_kg: is required"),
        (["dose", "--weight-kg", "abc"], "'abc' is not a number"),
        (["dose", "--weight-kg", "0"], "greater than 0"),
        (["dose", "--weight-kg", "-5"], "greater than 0"),
        (["dose", "--weight-kg", "900"], "not a plausible adult weight"),
        (["dose", "--weight-kg", "70", "--dose-iu-per-kg", "x"], "dose_iu_per_kg"),
        (["dose", "--weight-kg", "70", "--prepared-at", "yesterday"], "prepared_at"),
        (["demo", "--doses", "0"], "doses"),
        (["demo", "--doses", "many"], "doses"),
    ],
)
def test_bad_input_exits_2_naming_the_field(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err and out == ""


def test_weight_message_names_the_range(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run(capsys, "dose", "--weight-kg", "900")
    assert "20 to 350 kg" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_checklist_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "checklist", "validate", str(default_protocol_path()))
    assert code == 0 and "valid" in out and "sha256" in out


def test_checklist_validate_broken_prints_file_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = default_protocol_path().read_text().replace("verifies: [order]", "verifies: [nope]")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    code, _, err = run(capsys, "checklist", "validate", str(bad))
    assert code == 2
    first = err.splitlines()[0]
    path, line, message = first.split(":", 2)
    assert path == str(bad) and int(line) > 0 and "nope" in message


def test_checklist_show_marks_unconfirmed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "checklist", "show")
    assert code == 0
    assert "[UNCONFIRMED]" in out and "creatinine_above_4_5" in out
    assert "verified by pharmacy_verification" in out
    independent = [line for line in out.splitlines() if "independent: its signer" in line]
    assert [line.split("[")[1].split("]")[0] for line in independent] == [
        "double_check_first",
        "double_check_second",
        "pre_infusion",
    ]


def test_checklist_show_lists_what_a_prescriber_signs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "checklist", "show")
    assert code == 0
    assert "Course start (prescriber attests and signs as 'approved')" in out
    assert "No organ allograft [label_current]" in out
    assert "retreatment refused after: sustained_vt" in out
    assert "eligibility_test_old at eligibility: prescriber signs with older_result_reason" in out


def test_checklist_diagram_is_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "checklist", "diagram")
    assert code == 0
    assert "stateDiagram-v2" in out and "double_check_second_mismatch" in out
    assert "held --> hold_checks" in out


def test_demo_walks_in_memory() -> None:
    from datetime import UTC, datetime

    from workflow.core.protocol import load_protocol
    from workflow.dev.demo import run_in_memory

    cases = run_in_memory(
        load_protocol(default_protocol_path()), 2, datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    )
    assert [c.state for c in cases] == ["completed", "completed"]
    assert [c.dose_in_course for c in cases] == [1, 2]


def test_console_script_runs_as_a_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "workflow.cli", "dose", "--weight-kg", "70", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["vials"] == 2
