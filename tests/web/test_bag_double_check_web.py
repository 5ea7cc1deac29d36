"""Issue 12.4 through the pages and the JSON API: both double checks scan the bag label. The
code fills what it carries (drug, dose, volume, infusion time, pump rate, route, beyond-use
time, cycle, dose number), checked
by the same core code as at the bedside; the page shows neither the plan nor the first
checker's entries; a contradicting typed value and another dose's bag are refused."""

from __future__ import annotations

from datetime import timedelta

from workflow.core.bag_check import bag_code_of
from workflow.core.gs1 import GROUP_SEPARATOR, BagCode, bag_element_string
from workflow.dev.walk import values_for

from .conftest import PASSWORD, Site, form_of
from .test_bedside_scan import _post_step
from .test_blinding_web import asked_values, leaked
from .test_pages import page_login

FILLED = (
    "drug_name",
    "dose_iu",
    "final_volume_ml",
    "beyond_use_at",
    "cycle",
    "dose_in_cycle",
    "infusion_minutes",
    "pump_rate_ml_per_h",
    "route",
)


def scanner_text(site: Site, cid: str) -> str:
    """The label's code as a keyboard scanner types it: FNC1 as GS, Enter at the end."""
    code = bag_element_string(bag_code_of(site.bedside.load(cid).case))
    raw = code.replace("(7003)", "").replace("(91)", "91")
    for ai in ("92", "93", "94", "95", "96", "97", "98"):
        raw = raw.replace(f"({ai})", f"{GROUP_SEPARATOR}{ai}")
    return "]d27003" + raw + "\r\n"


def test_first_check_on_the_page_and_second_by_the_api(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("double_check_first")
    cid = view.case.case_id
    asked = asked_values(site, cid)
    nurse = page_login(site, "n.alvarez")
    page = nurse.get(f"/cases/{cid}")
    assert 'name="v_bag_scan"' in page.text and 'data-bag-fill="1"' in page.text
    assert "Filled from the bag label&#39;s code when it is scanned" in page.text
    assert leaked(page.text, asked) == []
    # The route is one of the filled items: its radio is not ticked for the checker.
    assert 'name="v_route" value="intravenous" checked' not in page.text
    assert "code when it is scanned; else choose it." in page.text
    values = values_for(view.case, "double_check_first", site.clock.now())
    assert not set(FILLED) & set(values)
    # "How identified" left blank and the MRN from the wristband: the scan says both.
    del values["bag_entry"], values["patient_mrn"]
    values["bag_scan"] = scanner_text(site, cid)
    data = {**form_of(values), "scan_wristband": "MRN-7001"}
    # Typed: the weight and the date of birth; route, minutes and rate are left blank.
    assert {k.removeprefix("v_") for k in data} & set(FILLED) == set()
    r = _post_step(site, nurse, cid, "double_check_first", data)
    assert r.status_code == 200, _alert(r.text)
    case = site.bedside.load(cid).case
    assert case.state == "double_check_second"
    entered = case.current["double_check_first"].values
    assert entered["bag_entry"] == "scanned" and entered["drug_name"] == "aldesleukin"
    assert str(entered["cycle"]) == "1" and str(entered["dose_in_cycle"]) == "1"
    plan = case.plan
    assert plan is not None and entered["route"] == "intravenous"
    assert entered["infusion_minutes"] == plan.infusion_minutes
    assert entered["pump_rate_ml_per_h"] == round(plan.pump_rate_ml_per_h, 1)
    # The second checker's page (their own id on this tablet) shows nothing of the first.
    page = nurse.get(f"/cases/{cid}")
    assert 'name="v_bag_scan"' in page.text and 'name="username"' in page.text
    assert "aldesleukin(94)" not in page.text and leaked(page.text, asked) == []
    # The JSON API: a typed dose contradicting the scanned code is refused, naming the item.
    api = site.client("n.chen")
    body_values = values_for(case, "double_check_second", site.clock.now())
    body = {
        "expected_version": site.bedside.load(cid).version,
        "values": {**body_values, "dose_iu": "1000"},
        "password": PASSWORD,
        "username": "n.chen",
    }
    r = api.post(f"/api/cases/{cid}/steps/double_check_second", json=body)
    assert r.status_code == 422, r.text
    assert "dose_iu" in r.text and "scanned bag label says" in r.text
    # It names what the scanned label says of the dose (the label in the checker's hand),
    # nothing else the check asks for: no volume, rate, weight or identifier.
    plan = case.plan
    assert plan is not None
    label_dose = {str(int(plan.dose_iu)), f"{int(plan.dose_iu):,}"}
    assert set(leaked(r.text, asked)) <= label_dose
    body["values"] = body_values
    body["expected_version"] = site.bedside.load(cid).version
    r = api.post(f"/api/cases/{cid}/steps/double_check_second", json=body)
    assert r.status_code == 200, r.text
    after = site.bedside.load(cid).case
    assert after.state == "pre_infusion"
    assert after.current["double_check_second"].values["drug_name"] == "aldesleukin"


def test_another_doses_bag_is_refused_on_the_page_naming_both(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("double_check_first")
    cid = view.case.case_id
    asked = asked_values(site, cid)
    mine = bag_code_of(view.case)
    other = BagCode("another-case-4711", 2, 3, mine.use_before + timedelta(hours=8), "aldesleukin")
    nurse = page_login(site, "n.alvarez")
    values = values_for(view.case, "double_check_first", site.clock.now())
    values["bag_scan"] = bag_element_string(other)
    r = _post_step(site, nurse, cid, "double_check_first", form_of(values))
    assert r.status_code == 422, r.status_code
    text = " ".join(r.text.split())
    assert "This is not the bag" in text, _alert(r.text)
    assert "This is not the bag for this dose; do not hang it." in text
    assert "bag: case another-case-4711, dose 3 of cycle 2" in text
    assert f"this dose: case {cid} for" in text and "dose number not shown" in text
    # The refusal tells nothing the check asks for (the form below echoes her own entries).
    message = _alert(r.text)
    assert leaked(message[: message.find('class="patient"')], asked) == []
    assert site.bedside.load(cid).version == view.version  # nothing signed
    # The JSON API's own bag scan says the same, no more.
    api = site.client("n.alvarez")
    r = api.post(f"/api/cases/{cid}/bag-scan", json={"text": bag_element_string(other)})
    assert r.status_code == 422 and "dose number not shown" in r.text
    r = api.post(f"/api/cases/{cid}/bag-scan", json={"text": bag_element_string(mine)})
    assert r.status_code == 200 and r.json()["drug"] == "aldesleukin"


def _alert(page: str) -> str:
    """The page's refusal, for an assertion's message."""
    start = page.find('id="error"')
    return page[start : start + 1500] if start >= 0 else page[-1500:]
