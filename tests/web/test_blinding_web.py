"""Issue 11, items 2 and 3: the server decides what a blinded checker is shown, from who asks and
the case's state, on every route and page: the JSON API (with and without ``?step=``), every
answer that returns the case, the worklists, the case page, the bag label, FHIR, the course
timeline, form prefill and refusals. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient

from workflow.core.items import display
from workflow.dev.walk import label_values, order_values, values_for

from .conftest import PASSWORD, Site, cred, csrf_of, form_of, version_of

MRN, BORN = "MRN-7001", "1971-03-14"
WRONG_RATE = "777"  # the first checker's distinctive, wrong pump rate


def shows_number(text: str, number: str) -> bool:
    """Whether ``number`` appears as a number of its own, not inside a token, a hash or a
    longer number (pages carry CSRF tokens and case ids full of digits)."""
    return (
        re.search(rf"(?<![0-9A-Za-z.,]){re.escape(number)}(?![0-9A-Za-z]|[.,][0-9])", text)
        is not None
    )


def asked_values(site: Site, case_id: str) -> list[str]:
    """Every value the double check asks for, as the JSON (plan numbers) and the screens
    (display text of the items) would print it: none may reach a blinded checker."""
    case = site.bedside.load(case_id).case
    plan = case.plan
    assert plan is not None
    out = {MRN, BORN}
    plan_json = plan.to_json()
    for name in ("dose_iu", "final_volume_ml", "pump_rate_ml_per_h", "weight_kg", "dose_mg"):
        out.add(str(plan_json[name]))
    out.add(f"{int(plan.dose_iu):,}")  # the dose as the pages print it
    step = case.protocol.step("double_check_first")
    typed = label_values(case)  # what a checker reads (and types, unless the scan fills it)
    for item_id in ("dose_iu", "pump_rate_ml_per_h", "final_volume_ml", "dosing_weight_kg"):
        item = step.item(item_id)
        assert item is not None
        out.add(str(typed[item_id]))
        out.add(display(item, Decimal(str(typed[item_id]))).split(" ")[0])
    return sorted(out)


def leaked(text: str, values: list[str]) -> list[str]:
    return [v for v in values if shows_number(text, v) or (not v[0].isdigit() and v in text)]


def sign_api(
    client: TestClient, site: Site, case_id: str, step: str, username: str, **changes: str
) -> Any:
    view = site.bedside.load(case_id)
    values = values_for(view.case, step, site.clock.now())
    values.update(changes)
    body = {
        "expected_version": view.version,
        "values": values,
        "password": PASSWORD,
        "username": username,
    }
    return client.post(f"/api/cases/{case_id}/steps/{step}", json=body)


def misread_rate(site: Site, case_id: str) -> dict[str, str]:
    """A first checker who typed the label's values (not scanned: a scanned code refuses a
    rate it contradicts) and misread the pump rate."""
    typed = label_values(site.bedside.load(case_id).case)
    return {
        **typed,
        "bag_entry": "typed",
        "bag_typed_reason": "unreadable_label",
        "bag_scan": "",
        "pump_rate_ml_per_h": WRONG_RATE,
    }


def at_second_check(site: Site) -> tuple[str, list[str], TestClient]:
    """A case whose first checker (n.alvarez) has signed; returns it, the values the check asks
    for, and the first checker's client."""
    view = site.walk_to("double_check_first")
    cid = view.case.case_id
    first = site.client("n.alvarez")
    r = sign_api(first, site, cid, "double_check_first", "n.alvarez")
    assert r.status_code == 200, r.text
    # The first checker's own answer already describes the case at the second check.
    answer = r.json()
    assert answer["state"] == "double_check_second"
    assert answer["plan"] is None and answer["patient"]["mrn"] == ""
    assert not [e for e in answer["entries"] if e["step"].startswith("double_check")]
    return cid, asked_values(site, cid), first


def assert_blind_json(data: dict[str, Any], text: str, asked: list[str]) -> None:
    assert data["plan"] is None
    assert data["patient"]["mrn"] == "" and data["patient"]["date_of_birth"] == ""
    assert data["patient"]["name"]  # the nurse still knows whom to go to
    assert data["cycle"] is None and data["dose_in_cycle"] is None
    assert data["dose_in_course"] is None and data["beyond_use_at"] is None
    assert not [e for e in data["entries"] if e["step"].startswith("double_check")]
    assert "plan.*" in data["hidden"] and "patient.mrn" in data["hidden"]
    assert leaked(text, asked) == []


def test_api_case_and_ward_hide_what_the_check_asks_for(site: Site) -> None:
    cid, asked, first = at_second_check(site)
    second = site.client("n.chen")
    pharmacist = site.client("p.lindqvist")  # may be the second checker too
    for who in (second, first, pharmacist):
        for params in ({}, {"step": "double_check_second"}, {"step": "double_check_first"}):
            r = who.get(f"/api/cases/{cid}", params=params)
            assert r.status_code == 200, r.text
            assert_blind_json(r.json(), r.text, asked)
    ward = second.get("/api/ward")
    row = next(x for x in ward.json() if x["id"] == cid)
    assert row["blinded"] and row["mrn"] == "" and row["plan"] is None
    assert row["cycle"] is None and row["dose_in_cycle"] is None
    assert leaked(ward.text, asked) == []
    # The prescriber cannot sign the check: everything, as before.
    doctor = site.client("dr.okafor")
    full = doctor.get(f"/api/cases/{cid}").json()
    assert full["plan"] is not None and full["patient"]["mrn"] == MRN and full["cycle"] == 1
    assert any(e["step"] == "double_check_first" for e in full["entries"])
    assert full["hidden"] == [] and full["blinded_steps"] == []
    doctor_row = next(x for x in doctor.get("/api/ward").json() if x["id"] == cid)
    assert doctor_row["mrn"] == MRN and doctor_row["plan"] is not None
    # Past the check, the nurses see everything again.
    assert sign_api(second, site, cid, "double_check_second", "n.chen").status_code == 200
    walked = site.walk_to("infusion_start", site.bedside.load(cid))
    after = second.get(f"/api/cases/{walked.case.case_id}").json()
    assert after["plan"] is not None and after["patient"]["mrn"] == MRN
    assert any(e["step"] == "double_check_second" for e in after["entries"])


def test_case_page_and_ward_page_show_no_identifier_or_plan(site: Site) -> None:
    cid, asked, _first = at_second_check(site)
    nurse = site.client("n.chen")
    page = nurse.get(f"/cases/{cid}")
    assert page.status_code == 200
    assert 'id="independent"' in page.text and 'id="identifiers-hidden"' in page.text
    assert "Dose plan" not in page.text and "Cycle 1" not in page.text
    assert "Independent double check, first nurse" not in page.text  # no first entry
    assert leaked(page.text, asked) == []
    # ?step= names the form; it cannot reduce what is hidden.
    named = nurse.get(f"/cases/{cid}", params={"step": "order"})
    assert leaked(named.text, asked) == [] and "Dose plan" not in named.text
    ward = nurse.get("/ward")
    assert leaked(ward.text, asked) == [] and "Independent check" in ward.text
    doctor = site.client("dr.okafor").get(f"/cases/{cid}")
    assert MRN in doctor.text and BORN in doctor.text and "Dose plan" in doctor.text


def test_after_a_mismatch_only_the_item_names_are_shown(site: Site) -> None:
    view = site.walk_to("double_check_first")
    cid = view.case.case_id
    first, second = site.client("n.alvarez"), site.client("n.chen")
    r = sign_api(first, site, cid, "double_check_first", "n.alvarez", **misread_rate(site, cid))
    assert r.status_code == 200 and not shows_number(r.text, WRONG_RATE)
    asked = [*asked_values(site, cid), WRONG_RATE]
    r = sign_api(second, site, cid, "double_check_second", "n.chen")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["mismatch"] and answer["differences"] == ["Pump rate"]
    assert answer["difference_items"] == ["pump_rate_ml_per_h"]
    assert answer["difference_details"] == []
    assert leaked(r.text, asked) == []
    for who in (first, second):
        got = who.get(f"/api/cases/{cid}")
        assert got.json()["differences"] == ["Pump rate"] and leaked(got.text, asked) == []
        page = who.get(f"/cases/{cid}")
        banner = page.text.split('id="mismatch"')[1].split("</section>")[0]
        assert "Pump rate" in banner
        assert leaked(page.text, asked) == []
    # Signing on past the mismatch is refused, and the refusal names items, not values.
    refused = sign_api(first, site, cid, "pre_infusion", "n.alvarez")
    assert refused.status_code == 422 and refused.json()["code"] == "double_check_mismatch"
    assert "Pump rate" in refused.json()["message"] and leaked(refused.text, asked) == []
    # The re-entry form shows none of the earlier entry (no prefill of a blinded pair).
    form = first.get(f"/cases/{cid}", params={"step": "double_check_first"})
    assert 'action="/cases/' in form.text and leaked(form.text, asked) == []
    # The prescriber, who re-enters nothing, sees the values.
    details = site.client("dr.okafor").get(f"/api/cases/{cid}").json()["difference_details"]
    assert len(details) == 1 and WRONG_RATE in details[0]


def test_mismatch_refusal_on_the_page_names_items_only(site: Site) -> None:
    view = site.walk_to("double_check_first")
    cid = view.case.case_id
    first = site.client("n.alvarez")
    sign_api(first, site, cid, "double_check_first", "n.alvarez", **misread_rate(site, cid))
    sign_api(site.client("n.chen"), site, cid, "double_check_second", "n.chen")
    asked = [*asked_values(site, cid), WRONG_RATE]
    page = first.get(f"/cases/{cid}")
    values = values_for(site.bedside.load(cid).case, "pre_infusion", site.clock.now())
    # During the mismatch the page has no step form (and side exits are links to their
    # confirmation pages), so the version is the case's own.
    r = first.post(
        f"/cases/{cid}/steps/pre_infusion",
        data={
            "csrf_token": csrf_of(page.text),
            "expected_version": str(site.bedside.load(cid).version),
            "password": PASSWORD,
            **form_of(values),
        },
    )
    assert r.status_code == 422
    assert "Pump rate" in r.text and leaked(r.text, asked) == []


def test_pre_infusion_header_and_refusal_hide_the_identifiers(site: Site) -> None:
    view = site.walk_to("pre_infusion")
    cid = view.case.case_id
    nurse = site.client("n.alvarez")
    page = nurse.get(f"/cases/{cid}")
    assert "At the bedside before hanging the bag" in page.text
    assert MRN not in page.text and BORN not in page.text and "Cycle 1" not in page.text
    assert 'id="identifiers-hidden"' in page.text
    data = nurse.get(f"/api/cases/{cid}").json()
    assert data["patient"]["mrn"] == "" and data["cycle"] is None and data["plan"] is None
    # A wrong identifier: refused naming the field, never the patient's record.
    r = sign_api(nurse, site, cid, "pre_infusion", "n.alvarez", patient_identifier_mrn="MRN-0000")
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "patient_identifier_mrn"
    assert MRN not in r.text and "does not match" in r.json()["message"]
    page = nurse.get(f"/cases/{cid}")
    values = values_for(site.bedside.load(cid).case, "pre_infusion", site.clock.now())
    values["patient_identifier_dob"] = "1970-01-01"
    r = nurse.post(
        f"/cases/{cid}/steps/pre_infusion",
        data={
            "csrf_token": csrf_of(page.text),
            "expected_version": version_of(page.text),
            "password": PASSWORD,
            **form_of(values),
        },
    )
    assert r.status_code == 422 and BORN not in r.text and "date of birth" in r.text
    assert site.bedside.load(cid).case.state == "pre_infusion"  # nothing stored
    doctor = site.client("dr.okafor").get(f"/cases/{cid}")
    assert MRN in doctor.text and "Cycle 1" in doctor.text


def test_label_is_refused_to_a_potential_second_checker(site: Site) -> None:
    cid, _asked, _first = at_second_check(site)
    pharmacist = site.client("p.lindqvist")
    for path in (f"/api/cases/{cid}/label.pdf", f"/cases/{cid}/label.pdf"):
        r = pharmacist.get(path)
        assert r.status_code == 403, (path, r.status_code)
        assert "application/pdf" not in r.headers["content-type"]
        assert "Independent double check, second checker" in r.text
    assert pharmacist.get(f"/api/cases/{cid}/label.pdf").json()["code"] == "blinded"
    assert "Print bag label" not in pharmacist.get(f"/cases/{cid}").text
    # A technician, who cannot sign the check, prints it.
    tech = site.client("t.mensah").get(f"/api/cases/{cid}/label.pdf")
    assert tech.status_code == 200 and tech.content.startswith(b"%PDF")
    # Once the check is signed, the pharmacist may print it again.
    assert (
        sign_api(site.client("n.chen"), site, cid, "double_check_second", "n.chen").status_code
        == 200
    )
    again = pharmacist.get(f"/api/cases/{cid}/label.pdf")
    assert again.status_code == 200 and again.content.startswith(b"%PDF")


def test_fhir_and_timeline_are_refused_while_blinded(site: Site) -> None:
    cid, _asked, _first = at_second_check(site)
    nurse = site.client("n.chen")
    r = nurse.get(f"/api/cases/{cid}/fhir")
    assert r.status_code == 403 and r.json()["code"] == "blinded" and MRN not in r.text
    timeline = nurse.get(f"/api/courses/{site.course_id}/timeline.svg")
    assert timeline.status_code == 403 and timeline.json()["code"] == "blinded"
    # The auditor and the prescriber get the whole bundle, MRN and dose included.
    for who in ("a.ibrahim", "dr.okafor"):
        bundle = site.client(who).get(f"/api/cases/{cid}/fhir")
        assert bundle.status_code == 200 and MRN in bundle.text and '"dosage"' in bundle.text
    assert (
        site.client("dr.okafor").get(f"/api/courses/{site.course_id}/timeline.svg").status_code
        == 200
    )
    assert sign_api(nurse, site, cid, "double_check_second", "n.chen").status_code == 200
    site.walk_to("infusion_start", site.bedside.load(cid))
    assert nurse.get(f"/api/cases/{cid}/fhir").status_code == 200


def test_plan_warnings_keep_their_code_and_lose_their_numbers(site: Site) -> None:
    """A warning raised with the order names the weight (which the check asks for)."""
    b = site.bedside
    opened = b.open_case(site.course_id, site.clock.now() + timedelta(hours=2), cred("dr.okafor"))
    site.clock.advance(minutes=5)
    weighed = site.clock.now() - timedelta(hours=3)
    view = b.sign_step(
        opened.case.case_id, opened.version, "order", order_values("27", weighed), cred("dr.okafor")
    )
    view = site.walk_to("double_check_first", view)
    cid = view.case.case_id
    nurse = site.client("n.alvarez").get(f"/api/cases/{cid}")
    flags = {f["code"]: f["message"] for f in nurse.json()["flags"]}
    assert "weight_outside_adult_range" in flags
    assert not shows_number(nurse.text, "27") and "not shown" in flags["weight_outside_adult_range"]
    page = site.client("n.alvarez").get(f"/cases/{cid}")
    assert "weight_outside_adult_range" in page.text and not shows_number(page.text, "27")
    doctor = site.client("dr.okafor").get(f"/api/cases/{cid}").json()
    full = {f["code"]: f["message"] for f in doctor["flags"]}
    assert shows_number(full["weight_outside_adult_range"], "27")


def test_the_patients_finished_dose_is_blinded_too(site: Site) -> None:
    """The MRN, date of birth and (usually) the plan are the patient's: a finished dose's page,
    records and FHIR would show them to the checker of the next dose."""
    done = site.walk_to("record_sign_off")
    done_id = done.case.case_id
    values = values_for(done.case, "record_sign_off", site.clock.now())
    site.bedside.sign_step(done_id, done.version, "record_sign_off", values, cred("n.alvarez"))
    records = site.client("dr.okafor").get(f"/api/cases/{done_id}/records").json()
    assert records, "the finished dose has signed records"
    site.clock.advance(hours=9)
    cid, asked, _first = at_second_check(site)
    nurse = site.client("n.chen")
    data = nurse.get(f"/api/cases/{done_id}")
    assert data.json()["state"] == "completed"
    assert data.json()["patient"]["mrn"] == "" and data.json()["plan"] is None
    assert data.json()["blinded_steps"] == [] and "patient.mrn" in data.json()["hidden"]
    assert leaked(data.text, asked) == []
    page = nurse.get(f"/cases/{done_id}")
    assert page.status_code == 200 and leaked(page.text, asked) == []
    for path in (
        f"/api/cases/{done_id}/records",
        f"/api/archive/{records[0]['sha256']}/pdf",
        f"/records/{records[0]['sha256']}.pdf",
        f"/api/cases/{done_id}/fhir",
    ):
        r = nurse.get(path)
        assert r.status_code == 403, (path, r.status_code)
        assert "another dose of this patient" in r.text and MRN not in r.text
    # The prescriber sees the finished dose whole; the nurse does once the check is done.
    doctor = site.client("dr.okafor")
    assert doctor.get(f"/api/cases/{done_id}").json()["patient"]["mrn"] == MRN
    assert doctor.get(f"/records/{records[0]['sha256']}.pdf").status_code == 200
    assert sign_api(nurse, site, cid, "double_check_second", "n.chen").status_code == 200
    site.walk_to("infusion_start", site.bedside.load(cid))
    assert nurse.get(f"/api/cases/{done_id}").json()["patient"]["mrn"] == MRN
    assert nurse.get(f"/records/{records[0]['sha256']}.pdf").status_code == 200
