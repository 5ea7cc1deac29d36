"""Issue 11 on the command line (`bedside run`, `bedside course start`), on SQLite and
PostgreSQL: corrections, the schedule at infusion start, retreatment, acknowledgements. Each
refusal exits by the one rule (1: a check on the step or case as a whole; 2: an entry the
protocol refuses, named by its field) and writes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from workflow.core.clock import FixedClock
from workflow.dev.walk import order_values, values_for
from workflow.identity import Credentials
from workflow.service import open_bedside

from .test_cli_store import PASSWORD, PEOPLE, SIGNERS, Cli, setup_site


@pytest.fixture
def site(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    cli = Cli(
        tmp_path / "home", None if db_url.startswith("sqlite") else db_url, capsys, monkeypatch
    )
    setup_site(cli)  # patient MRN-9 with a course started by dr.okafor
    return cli


def script(path: Path, actions: list[dict[str, Any]]) -> Path:
    path.write_text(
        yaml.safe_dump({"passwords": {u: PASSWORD for u, _, _ in PEOPLE}, "actions": actions})
    )
    return path


def walk(until: str, **spoil: dict[str, Any]) -> list[dict[str, Any]]:
    """Actions that open MRN-9's next dose and sign every step before ``until``."""
    measured = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    actions: list[dict[str, Any]] = [{"open": {"mrn": "MRN-9"}, "by": "dr.okafor"}]
    for step, user in SIGNERS.items():
        if step == until:
            break
        action: dict[str, Any] = {"sign": step, "by": user, "values": "auto"}
        if step == "order":
            action["values"] = order_values("68", datetime.fromisoformat(measured))
        if step in spoil:
            action["override"] = spoil[step]
        actions.append(action)
    return actions


def cases(cli: Cli) -> list[dict[str, Any]]:
    code, out, _ = cli("case", "list", "--json")
    assert code == 0
    return list(json.loads(out))


def versions(cli: Cli) -> list[int]:
    return [c["version"] for c in cases(cli)]


def test_run_refuses_the_first_checkers_correction_of_the_second_check(
    site: Cli, tmp_path: Path
) -> None:
    assert site("run", str(script(tmp_path / "a.yaml", walk("pre_infusion"))))[0] == 0
    before = versions(site)
    # Event 10 is the second checker's entry (open, then nine signed steps).
    bad = [
        {
            "correct": {"target_seq": 10, "values": {"pump_rate_ml_per_h": "999"}, "reason": "x"},
            "by": "n.alvarez",
            "case": cases(site)[0]["case_id"],
        }
    ]
    code, out, err = site("run", str(script(tmp_path / "b.yaml", bad)))
    assert code == 1 and "refused" in out and "Only Wei Chen, RN may correct" in err
    assert versions(site) == before


def test_run_refuses_a_dose_other_than_the_label_dose_without_a_reason(
    site: Cli, tmp_path: Path
) -> None:
    actions = walk("order_verification")
    actions[1]["values"]["dose_iu_per_kg"] = "450000"
    code, _out, err = site("run", str(script(tmp_path / "a.yaml", actions)))
    assert code == 2 and "dose_deviation_reason" not in err  # named by its label
    assert "Why this dose is not the label dose" in err
    actions[1]["values"]["dose_deviation_reason"] = "Trial amendment 4"
    actions[1]["case"] = cases(site)[0]["case_id"]
    code, _out, err = site("run", str(script(tmp_path / "b.yaml", actions[1:])))
    assert code == 0, err


def test_run_refuses_an_old_eligibility_result_signed_by_a_nurse(site: Cli, tmp_path: Path) -> None:
    old = (datetime.now(UTC) - timedelta(days=200)).date().isoformat()
    actions = walk("hold_checks")
    actions[3]["by"] = "n.alvarez"  # eligibility by a nurse
    actions[3]["override"] = {"pft_date": old}
    code, _out, err = site("run", str(script(tmp_path / "a.yaml", actions)))
    assert code == 2 and "prescriber" in err and "Pulmonary function tests" in err
    actions[3]["by"] = "dr.okafor"
    actions[3]["override"] = {"pft_date": old, "older_result_reason": "PFT repeated by phone"}
    actions[3]["case"] = cases(site)[0]["case_id"]
    code, _out, err = site("run", str(script(tmp_path / "b.yaml", actions[3:])))
    assert code == 0, err


def test_retreatment_after_sustained_vt_is_refused_by_run_and_course_start(
    site: Cli, tmp_path: Path
) -> None:
    actions = walk("reconstitution", hold_checks={"vt_sustained_beats": "7"})
    code, out, err = site("run", str(script(tmp_path / "a.yaml", actions)))
    assert code == 0, err
    assert "-> discontinued" in out
    # The next dose: refused with the discontinuation in words (no literal {mrn}).
    code, out, err = site("run", str(script(tmp_path / "b.yaml", walk("order"))))
    assert code == 1 and "permanently discontinued" in err and "{mrn}" not in err
    # A new course: refused naming the rule, the date and the dose.
    start = [{"start_course": {"mrn": "MRN-9", "attest": "all"}, "by": "dr.okafor"}]
    code, out, err = site("run", str(script(tmp_path / "c.yaml", start)))
    assert code == 1 and "sustained_vt" in err and "cycle 1 dose 1" in err
    args = ("course", "start", "--mrn", "MRN-9", "--user", "dr.okafor", "--attest", "all")
    code, out, err = site(*args, "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 1 and "retreatment" in err.lower()
    # The prescriber's signed override starts it, and says so.
    code, out, err = site(
        *args,
        "--override-reason",
        "Tumour board 2026-12-01",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert code == 0 and "override signed" in out


def test_infusion_start_during_the_rest_is_refused_by_run(
    site: Cli, tmp_path: Path, db_url: str
) -> None:
    """Cycle 1's dose given a week ago (through the service, on its own clock); cycle 2 opened
    for after the rest; starting it today, inside the rest, is refused."""
    home = tmp_path / "home"
    week_ago = FixedClock(datetime.now(UTC).replace(microsecond=0) - timedelta(days=7))
    app = open_bedside(home, None if db_url.startswith("sqlite") else db_url, clock=week_ago)
    course = app.active_course(app.store.find_patient_by_mrn("MRN-9").id)  # type: ignore[union-attr]
    view = app.open_case(course.id, week_ago.now(), Credentials("dr.okafor", PASSWORD))
    while not view.case.closed:
        step = view.case.next_step()
        assert step is not None
        week_ago.advance(minutes=15 if step.id == "infusion_stop" else 5)
        values = (
            order_values("68", week_ago.now() - timedelta(hours=1))
            if step.id == "order"
            else values_for(view.case, step.id, week_ago.now())
        )
        view = app.sign_step(
            view.case.case_id,
            view.version,
            step.id,
            values,
            Credentials(SIGNERS[step.id], PASSWORD),
        )
    app.store.close()
    after_rest = (datetime.now(UTC) + timedelta(days=9)).isoformat()
    actions = walk("infusion_stop")
    actions[0]["open"]["at"] = after_rest
    code, out, err = site("run", str(script(tmp_path / "a.yaml", actions)))
    assert code == 1 and "rest" in err and "infusion_start" in out


def test_a_home_without_signing_material_signs_no_dose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13.6: a home whose `bedside init` never made its keys cannot complete a dose
    whose records nobody could sign; every signing command says to run init."""
    cli = Cli(tmp_path / "bare", None, capsys, monkeypatch)
    code, _, err = cli(
        "user",
        "add",
        "dr.okafor",
        "--name",
        "Dr. Amara Okafor",
        "--role",
        "prescriber",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, err
    code, _, err = cli(
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
    )
    assert code == 0, err
    code, _, err = cli(
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
    assert code == 2 and "bedside init" in err
    code, _, err = cli("run", str(script(tmp_path / "a.yaml", walk("order"))))
    assert code == 2 and "signing material" in err
