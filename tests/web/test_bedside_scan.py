"""Issue 12.3-12.4 through the pages: the wristband scan (match, a wrong patient refused in
words), the test wristband PDF, "all normal" groups that still record every finding and still
hold, and pre-filled plan numbers that only the preparer sees."""

from __future__ import annotations

import html
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from workflow.core.errors import StepRefused
from workflow.core.protocol.model import Step
from workflow.dev.demo import _SIGNERS
from workflow.dev.walk import order_values, values_for

from .conftest import PASSWORD, Site, cred, csrf_of, form_of, version_of
from .test_pages import page_login


def _post_step(site: Site, client: TestClient, cid: str, step: str, data: dict[str, str]) -> Any:
    page = client.get(f"/cases/{cid}")
    assert f"/steps/{step}" in page.text, page.text[-2000:]
    return client.post(
        f"/cases/{cid}/steps/{step}",
        data={
            "csrf_token": csrf_of(page.text),
            "expected_version": version_of(page.text),
            "password": PASSWORD,
            **data,
        },
    )


def _pre_infusion_form(site: Site, cid: str) -> dict[str, str]:
    view = site.bedside.load(cid)
    values = values_for(view.case, "pre_infusion", site.clock.now())
    del values["patient_identifier_mrn"]  # read from the wristband instead
    return form_of(values)


def test_wristband_scan_identifies_the_patient(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("pre_infusion")
    cid = view.case.case_id
    nurse = page_login(site, "n.alvarez")
    page = nurse.get(f"/cases/{cid}")
    assert 'name="scan_wristband"' in page.text and "data-wristband" in page.text
    # The scanner types the MRN and Enter (sent as a line end by some scanners).
    r = _post_step(
        site,
        nurse,
        cid,
        "pre_infusion",
        {**_pre_infusion_form(site, cid), "scan_wristband": "MRN-7001\r\n"},
    )
    assert r.status_code == 200, r.text[-2000:]
    after = site.bedside.load(cid)
    assert after.case.state == "infusion_start"
    assert after.case.current["pre_infusion"].values["patient_identifier_mrn"] == "MRN-7001"


def test_wrong_wristband_is_refused_with_both_identities(sqlite_site: Site) -> None:
    site = sqlite_site
    site.new_course("MRN-7002", "Doe", "Jane", "1980-05-01")
    view = site.walk_to("pre_infusion")
    cid = view.case.case_id
    nurse = page_login(site, "n.alvarez")
    r = _post_step(
        site,
        nurse,
        cid,
        "pre_infusion",
        {**_pre_infusion_form(site, cid), "scan_wristband": "MRN-7002"},
    )
    assert r.status_code == 422, r.status_code
    text = " ".join(r.text.split())
    # Both identities in words; this dose's MRN is not shown at an independent check.
    assert "wristband: DOE, Jane MRN MRN-7002 — this dose: RIVERA," in text
    assert "(MRN not shown at an independent check)" in text
    assert "MRN-7001" not in text
    assert site.bedside.load(cid).version == view.version  # nothing signed
    r = _post_step(
        site,
        nurse,
        cid,
        "pre_infusion",
        {**_pre_infusion_form(site, cid), "scan_wristband": "MRN-9999"},
    )
    assert r.status_code == 422
    assert "wristband: MRN MRN-9999 (no patient has it)" in " ".join(r.text.split())
    # A typed MRN that contradicts the scan is refused, naming the item.
    data = {**_pre_infusion_form(site, cid), "scan_wristband": "MRN-7001"}
    data["v_patient_identifier_mrn"] = "MRN-7002"
    r = _post_step(site, nurse, cid, "pre_infusion", data)
    assert r.status_code == 422 and "the wristband scan says MRN-7001" in r.text
    assert site.bedside.load(cid).case.state == "pre_infusion"


def test_test_wristband_pdf_for_admin_only(sqlite_site: Site, tmp_path: Path) -> None:
    site = sqlite_site
    admin = page_login(site, "root")
    assert 'action="/admin/wristband.pdf"' in admin.get("/admin/users").text
    r = admin.get("/admin/wristband.pdf", params={"mrn": "MRN-7001"})
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    pdf = tmp_path / "band.pdf"
    pdf.write_bytes(r.content)
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    assert "MRN MRN-7001" in text and "DOB 1971-03-14" in text and "RIVERA" in text
    assert admin.get("/admin/wristband.pdf", params={"mrn": "NOPE"}).status_code == 404
    nurse = page_login(site, "n.alvarez")
    assert nurse.get("/admin/wristband.pdf", params={"mrn": "MRN-7001"}).status_code == 403


def _groups_ticked(step: Step) -> dict[str, str]:
    return {f"g_{g.id}": "on" for g in step.normal_groups}


def test_all_normal_groups_record_every_finding(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    cid = view.case.case_id
    step = view.case.protocol.step("hold_checks")
    nurse = page_login(site, "n.alvarez")
    page = nurse.get(f"/cases/{cid}")
    assert page.text.count('class="all-normal"') == len(step.normal_groups) == 3
    data = {"v_sbp_mmhg": "112", "v_spo2_pct": "97", **_groups_ticked(step)}
    r = _post_step(site, nurse, cid, "hold_checks", data)
    assert r.status_code == 200, r.text[-2000:]
    after = site.bedside.load(cid)
    assert after.case.state == "reconstitution" and not after.case.on_hold
    recorded = after.case.current["hold_checks"].values
    # Every grouped item is recorded with its explicit normal value, for the rules and record.
    for g in step.normal_groups:
        for item_id, normal in g.normal:
            assert str(recorded[item_id]) == str(normal), item_id
    assert recorded["mental_status"] == "normal" and recorded["cardiac_tamponade"] is False


def test_abnormal_value_is_still_typed_and_still_holds(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    cid = view.case.case_id
    step = view.case.protocol.step("hold_checks")
    nurse = page_login(site, "n.alvarez")
    # Every group normal, SpO2 88: the dose is held.
    data = {"v_sbp_mmhg": "112", "v_spo2_pct": "88", **_groups_ticked(step)}
    r = _post_step(site, nurse, cid, "hold_checks", data)
    assert r.status_code == 200 and 'id="holds"' in r.text
    assert "Oxygen saturation (SpO2): <b>88 %</b>" in r.text
    assert site.bedside.load(cid).case.on_hold


def test_ticked_group_never_overrides_an_abnormal_entry(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    cid = view.case.case_id
    step = view.case.protocol.step("hold_checks")
    nurse = page_login(site, "n.alvarez")
    data = {"v_sbp_mmhg": "112", "v_spo2_pct": "97", **_groups_ticked(step)}
    data["v_rhythm"] = "arrhythmia_needing_treatment"
    r = _post_step(site, nurse, cid, "hold_checks", data)
    assert r.status_code == 422
    words = html.unescape(r.text)
    assert "Cardiac rhythm: entered as 'arrhythmia_needing_treatment' while 'All normal'" in words
    assert site.bedside.load(cid).version == view.version
    # Unticked, the abnormal rhythm is entered item by item and holds the dose.
    del data["g_cardiac"]
    data.update(v_vt_sustained_beats="0", v_ischemia_or_chest_pain="no")
    r = _post_step(site, nurse, cid, "hold_checks", data)
    assert r.status_code == 200 and 'id="holds"' in r.text
    assert site.bedside.load(cid).case.on_hold


def test_plan_numbers_prefilled_for_preparer_never_for_a_checker(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("dilution")
    plan = view.case.plan
    assert plan is not None
    tech = page_login(site, "t.mensah")
    page = tech.get(f"/cases/{view.case.case_id}").text
    final = f"{plan.final_volume_ml:.1f}"
    assert f'name="v_final_volume_ml" type="text"\n          value="{final}"' in page
    view = site.walk_to("double_check_first", view)
    nurse = page_login(site, "n.alvarez")
    page = nurse.get(f"/cases/{view.case.case_id}").text
    assert "Independent check" in page
    assert f'value="{final}"' not in page
    assert 'name="v_final_volume_ml" type="text"\n          value=""' in page
    assert 'name="v_route" value="intravenous" checked' not in page


def test_course_facts_are_proposed_from_the_earlier_dose(sqlite_site: Site) -> None:
    site = sqlite_site
    b = site.bedside
    view = site.open_case()  # order signed: 68 kg
    while not view.case.closed:
        step = view.case.next_step()
        assert step is not None
        site.clock.advance(minutes=20 if step.id == "hold_checks" else 5)
        values = values_for(view.case, step.id, site.clock.now())
        view = b.sign_step(
            view.case.case_id, view.version, step.id, values, cred(_SIGNERS[step.id])
        )
    assert view.case.state == "completed"
    first = view.case.current
    site.clock.advance(hours=8)
    nxt = b.open_case(site.course_id, site.clock.now() + timedelta(hours=1), cred("dr.okafor"))
    prescriber = page_login(site, "dr.okafor")
    page = prescriber.get(f"/cases/{nxt.case.case_id}").text
    # The order's weight, its source and time are proposed; the prescriber confirms.
    assert 'name="v_dosing_weight_kg" type="text"\n          value="68"' in page
    assert 'value="standing_scale" checked' in page
    # Never an acknowledgement's reason: each signature gives its own.
    assert 'name="v_dose_deviation_reason" type="text"\n          value=""' in page
    site.clock.advance(minutes=5)
    view = b.sign_step(
        nxt.case.case_id,
        nxt.version,
        "order",
        order_values("68", site.clock.now() - timedelta(hours=2)),
        cred("dr.okafor"),
    )
    site.clock.advance(minutes=5)
    view = b.sign_step(
        view.case.case_id,
        view.version,
        "order_verification",
        values_for(view.case, "order_verification", site.clock.now()),
        cred("p.lindqvist"),
    )
    pharmacist = page_login(site, "p.lindqvist")
    page = pharmacist.get(f"/cases/{view.case.case_id}").text
    tested = first["eligibility"].values["stress_test_date"].isoformat()
    assert f'value="{tested}"' in page and 'value="normal" checked' in page


def test_the_order_proposes_the_label_dose_and_another_is_still_flagged(
    sqlite_site: Site,
) -> None:
    site = sqlite_site
    b = site.bedside
    site.course_id = site.new_course("MRN-7004", "Nakamura", "Ren", "1971-03-04")
    view = b.open_case(site.course_id, site.clock.now() + timedelta(hours=2), cred("dr.okafor"))
    page = page_login(site, "dr.okafor").get(f"/cases/{view.case.case_id}").text
    # The protocol's dose per kg (the label dose), for the prescriber to confirm.
    assert 'name="v_dose_iu_per_kg" type="text"\n          value="600000"' in page
    assert 'name="v_dose_deviation_reason" type="text"\n          value=""' in page
    # Typed over with another dose, the order still needs the prescriber's reason.
    site.clock.advance(minutes=5)
    values = order_values("68", site.clock.now() - timedelta(hours=2), dose_per_kg="500000")
    with pytest.raises(StepRefused) as refused:
        b.sign_step(view.case.case_id, view.version, "order", values, cred("dr.okafor"))
    assert refused.value.reason == "acknowledgement_needed"
    assert refused.value.field == "dose_deviation_reason"
    assert "Ordered 500,000 IU/kg; the protocol dose is 600,000 IU/kg" in refused.value.message


def test_wristband_scan_through_the_json_api(sqlite_site: Site) -> None:
    site = sqlite_site
    site.new_course("MRN-7002", "Doe", "Jane", "1980-05-01")
    view = site.walk_to("pre_infusion")
    cid = view.case.case_id
    client = site.client("n.alvarez")
    values = values_for(view.case, "pre_infusion", site.clock.now())
    del values["patient_identifier_mrn"]
    body = {"expected_version": view.version, "password": PASSWORD, "values": values}
    r = client.post(f"/api/cases/{cid}/steps/pre_infusion", json={**body, "wristband": "MRN-7002"})
    assert r.status_code == 422
    assert "wristband: DOE, Jane MRN MRN-7002 — this dose: RIVERA," in r.json()["message"]
    r = client.post(f"/api/cases/{cid}/steps/pre_infusion", json={**body, "wristband": "MRN-7001"})
    assert r.status_code == 200, r.text
    after = site.bedside.load(cid)
    assert after.case.current["pre_infusion"].values["patient_identifier_mrn"] == "MRN-7001"
