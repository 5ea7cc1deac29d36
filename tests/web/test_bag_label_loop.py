"""Labels that close the loop (issue 16.4): the bag label's GS1 code, rendered to a PDF, rasterised
with pdftoppm and decoded with zxing-cpp, is read back at the bedside. The right bag passes; a
bag of another dose or past its beyond-use time is refused, naming both the bag and the dose,
by the core (signing the step), the CLI (`bedside scan --item bag`) and the JSON API alike."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
import zxingcpp
from PIL import Image

from workflow.cli import main
from workflow.core.errors import StepRefused
from workflow.dev.walk import values_for
from workflow.records.labels import SYMBOLOGIES, bag_label_pdf
from workflow.service import CaseView
from workflow.settings import SYMBOLOGIES as SETTING_SYMBOLOGIES

from .conftest import PASSWORD, Site, cred, csrf_of, form_of, version_of

pytestmark = pytest.mark.skipif(
    shutil.which("pdftoppm") is None,
    reason="pdftoppm (poppler-utils) is needed to rasterise the label",
)


def decoded(pdf: bytes) -> list[zxingcpp.Barcode]:
    """Every barcode on the label's first page, as a scanner would see the printed label."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "label.pdf"
        source.write_bytes(pdf)
        subprocess.run(
            ["pdftoppm", "-png", "-r", "200", "-singlefile", str(source), f"{folder}/label"],
            check=True,
        )
        with Image.open(f"{folder}/label.png") as image:
            return list(zxingcpp.read_barcodes(image))


def label_code(site: Site, view: CaseView, symbology: str = "gs1_datamatrix") -> str:
    found = decoded(bag_label_pdf(view.case, site.bedside.tz, symbology))
    assert len(found) == 1, found
    assert found[0].content_type == zxingcpp.ContentType.GS1
    return found[0].text


def at_bedside(site: Site) -> CaseView:
    """A dose prepared, released and double-checked: the bag is about to be hung."""
    return site.walk_to("pre_infusion")


def cli(home: Path, db: str, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["--home", str(home), "--db", db, *argv])
    out, err = capsys.readouterr()
    return code, out + err


def test_the_label_scans_as_this_dose_and_signing_with_it_passes(sqlite_site: Site) -> None:
    site = sqlite_site
    view = at_bedside(site)
    cid = view.case.case_id
    code = label_code(site, view)
    assert code.startswith("(7003)") and f"(91){cid}(92)C1D1(93)aldesleukin(94)" in code
    plan = view.case.plan
    assert plan is not None
    # What the label prints of the administration too (1.7.0): minutes, rate to 0.1 mL/h, route.
    rate = f"{plan.pump_rate_ml_per_h:.1f}"
    assert code.endswith(
        f"(95){plan.final_volume_ml:.1f}(96){plan.infusion_minutes:f}(97){rate}(98)intravenous"
    )
    checked = site.bedside.check_bag_scan(cid, code)
    assert checked["case_id"] == cid and checked["dose_in_cycle"] == 1
    assert checked["infusion_minutes"] == "15" and checked["pump_rate_ml_per_h"] == rate
    assert checked["route"] == "intravenous"
    # The QR Code a site may choose instead decodes to the same element string; the settings
    # offer exactly the symbologies the label can draw.
    assert label_code(site, view, "gs1_qr") == code
    assert set(SYMBOLOGIES) == set(SETTING_SYMBOLOGIES)
    site.clock.advance(minutes=5)
    values = values_for(view.case, "pre_infusion", site.clock.now())
    values.update(bag_entry="scanned", bag_scan=code)
    after = site.bedside.sign_step(cid, view.version, "pre_infusion", values, cred("n.alvarez"))
    assert after.case.state == "infusion_start"
    assert after.case.current["pre_infusion"].values["bag_scan"] == code


def test_another_doses_bag_is_refused_naming_both(sqlite_site: Site) -> None:
    site = sqlite_site
    mine = at_bedside(site)
    site.course_id = site.new_course("MRN-7002", "Okoye", "Ben", "1980-01-02")
    theirs = at_bedside(site)
    wrong = label_code(site, theirs)
    cid = mine.case.case_id
    with pytest.raises(StepRefused) as refused:
        site.bedside.check_bag_scan(cid, wrong)
    err = refused.value
    assert err.reason == "wrong_bag" and err.field == "bag_scan"
    assert f"bag: case {theirs.case.case_id}, dose 1 of cycle 1 (another dose" in err.message
    assert f"this dose: case {cid}, dose 1 of cycle 1 for RIVERA, " in err.message
    # Signing the step with that scan is refused by the same check, and nothing is stored.
    values = values_for(mine.case, "pre_infusion", site.clock.now())
    values.update(bag_entry="scanned", bag_scan=wrong)
    with pytest.raises(StepRefused) as signing:
        site.bedside.sign_step(cid, mine.version, "pre_infusion", values, cred("n.alvarez"))
    assert signing.value.reason == "wrong_bag"
    # The service names whose bag it is, for every door (web, JSON API, CLI).
    assert (
        "The scanned bag was prepared for OKOYE, Ben (dose 1 of cycle 1)" in signing.value.message
    )
    assert site.bedside.load(cid).case.state == "pre_infusion"
    # The page's form: the same refusal, shown on the form again.
    nurse = site.client("n.alvarez")
    page = nurse.get(f"/cases/{cid}")
    assert 'name="v_bag_scan"' in page.text
    r = nurse.post(
        f"/cases/{cid}/steps/pre_infusion",
        data={
            "csrf_token": csrf_of(page.text),
            "expected_version": version_of(page.text),
            "password": PASSWORD,
            **form_of(values),
        },
    )
    assert r.status_code == 422 and "This is not the bag for this dose" in r.text
    assert f"bag: case {theirs.case.case_id}" in r.text and "this dose: case" in r.text
    assert site.bedside.load(cid).case.state == "pre_infusion"
    # The JSON API: 422 with the same words; a pharmacy technician may not ask at all.
    r = nurse.post(f"/api/cases/{cid}/bag-scan", json={"text": wrong})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "wrong_bag" and "this dose: case" in r.json()["message"]
    # The web names whose bag it is (the name only: no MRN at this unprimed step).
    assert "The scanned bag was prepared for OKOYE, Ben (dose 1 of cycle 1)" in r.json()["message"]
    assert "MRN-7002" not in r.json()["message"]
    r = nurse.post(f"/api/cases/{cid}/bag-scan", json={"text": label_code(site, mine)})
    assert r.status_code == 200 and r.json()["bag_entry"] == "scanned"
    assert site.client("t.mensah").post(
        f"/api/cases/{cid}/bag-scan", json={"text": wrong}
    ).status_code in (401, 403)
    # A vial's product code is not a bag label.
    r = nurse.post(
        f"/api/cases/{cid}/bag-scan", json={"text": "(01)09506000134352(17)291231(10)L1"}
    )
    assert r.status_code == 422 and "product's code" in r.json()["message"]


def test_expired_bag_is_refused_by_core_and_api(sqlite_site: Site) -> None:
    site = sqlite_site
    view = at_bedside(site)
    cid = view.case.case_id
    code = label_code(site, view)
    bud = view.case.beyond_use_at
    assert bud is not None
    site.clock.set(bud + timedelta(minutes=1))
    with pytest.raises(StepRefused) as refused:
        site.bedside.check_bag_scan(cid, code)
    assert refused.value.reason == "bag_expired"
    assert (
        "past its beyond-use time" in refused.value.message and "it is now" in refused.value.message
    )
    r = site.client("n.alvarez").post(f"/api/cases/{cid}/bag-scan", json={"text": code})
    assert r.status_code == 422 and r.json()["code"] == "bag_expired"


def test_cli_checks_the_bag_against_the_dose(
    tmp_path: Path, sqlite_site: Site, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI runs on the system clock: one dose is prepared now (its bag is good), one a
    month ago (its bag long expired)."""
    site = sqlite_site
    db = f"sqlite:///{tmp_path / 'web.sqlite3'}"
    old = at_bedside(site)  # at the fixture's start, weeks before today
    site.clock.set(datetime.now(UTC) - timedelta(hours=2))
    site.course_id = site.new_course("MRN-7003", "Haddad", "Lina", "1975-06-07")
    fresh = at_bedside(site)
    good = label_code(site, fresh)
    code, out = cli(home, db, capsys, "scan", "--item", "bag", "--case", fresh.case.case_id, good)
    assert code == 0 and "scanned" in out, out
    code, out = cli(home, db, capsys, "scan", "--item", "bag", "--case", old.case.case_id, good)
    assert code == 2 and "This is not the bag for this dose" in out and "this dose:" in out
    # Whose bag it is, in the same words as the web's (the name only: no MRN, no birth date).
    assert "The scanned bag was prepared for HADDAD, Lina (dose 1 of cycle 1)" in out, out
    assert "MRN-7003" not in out and "1975-06-07" not in out
    expired = label_code(site, old)
    code, out = cli(home, db, capsys, "scan", "--item", "bag", "--case", old.case.case_id, expired)
    assert code == 2 and "past its beyond-use time" in out, out
    # `bedside run` signing the bedside step with the other dose's bag: refused in the same
    # words (the service names whose bag it is), and nothing is signed.
    sign = {
        "sign": "pre_infusion",
        "case": fresh.case.case_id,
        "by": "n.alvarez",
        "values": "auto",
        "override": {"bag_entry": "scanned", "bag_scan": expired},
    }
    run = tmp_path / "wrong-bag.yaml"
    run.write_text(yaml.safe_dump({"passwords": {"n.alvarez": PASSWORD}, "actions": [sign]}))
    code, out = cli(home, db, capsys, "run", str(run))
    assert code == 2 and "This is not the bag for this dose" in out, out
    assert "The scanned bag was prepared for RIVERA, " in out and "(dose 1 of cycle 1)" in out
    assert site.bedside.load(fresh.case.case_id).case.state == "pre_infusion"
    code, out = cli(home, db, capsys, "scan", "--item", "bag", good)
    assert code == 2 and "--case" in out
