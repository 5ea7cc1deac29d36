"""Issue 11 through the JSON API, on SQLite and PostgreSQL: corrections, the schedule at
infusion start, retreatment, and the prescriber's acknowledgements. Each refusal is a 4xx with
the documented error shape, and nothing is written."""

from __future__ import annotations

from datetime import timedelta

from workflow.core.protocol import load_protocol
from workflow.dev.walk import course_attestations, order_values, values_for
from workflow.resources import default_protocol_path
from workflow.service import CaseView

from .conftest import PASSWORD, Site

ATTESTED = course_attestations(load_protocol(default_protocol_path()))


def test_api_corrections_keep_the_blinded_check_independent(site: Site) -> None:
    view = site.walk_to("pre_infusion")
    second = view.case.current["double_check_second"]
    first_nurse = site.client("n.alvarez")  # the first checker
    body = {
        "expected_version": view.version,
        "target_seq": second.seq,
        # The weight: the scanned label's code does not carry it (a rate it contradicts is
        # refused as scan_mismatch before any comparison).
        "values": {"dosing_weight_kg": "99.9"},
        "reason": "typo",
        "password": PASSWORD,
    }
    r = first_nurse.post(f"/api/cases/{view.case.case_id}/corrections", json=body)
    assert r.status_code == 422 and r.json()["code"] == "same_person", r.text
    assert site.bedside.load(view.case.case_id).version == view.version
    # The second checker's own correction reopens the comparison; the infusion is blocked.
    second_nurse = site.client("n.chen")
    r = second_nurse.post(f"/api/cases/{view.case.case_id}/corrections", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["state"] == "double_check_second_mismatch" and data["mismatch"]
    step = {
        "expected_version": data["version"],
        "values": values_for(
            site.bedside.load(view.case.case_id).case, "pre_infusion", site.clock.now()
        ),
        "password": PASSWORD,
    }
    r = first_nurse.post(f"/api/cases/{view.case.case_id}/steps/pre_infusion", json=step)
    assert r.status_code == 422 and r.json()["code"] == "double_check_mismatch"
    assert "99.9" not in r.text and "Dosing weight used" in r.json()["message"]


def test_api_refuses_a_non_label_dose_without_the_prescribers_reason(site: Site) -> None:
    b = site.bedside
    view = b.open_case(site.course_id, site.clock.now(), _cred("dr.okafor"))
    dr = site.client("dr.okafor")
    values = order_values("68", site.clock.now() - timedelta(hours=1))
    values["dose_iu_per_kg"] = "500000"
    body = {"expected_version": view.version, "values": values, "password": PASSWORD}
    r = dr.post(f"/api/cases/{view.case.case_id}/steps/order", json=body)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["code"] == "acknowledgement_needed" and err["field"] == "dose_deviation_reason"
    assert b.load(view.case.case_id).version == view.version
    values["dose_deviation_reason"] = "Reduced per investigator, trial amendment 4"
    r = dr.post(f"/api/cases/{view.case.case_id}/steps/order", json=body)
    assert r.status_code == 200 and r.json()["state"] == "order_verification", r.text


def test_api_refuses_an_old_eligibility_result_unless_a_prescriber_acknowledges(
    site: Site,
) -> None:
    view = site.walk_to("eligibility")
    old = (site.clock.now() - timedelta(days=150)).date().isoformat()
    values = values_for(view.case, "eligibility", site.clock.now())
    values["stress_test_date"] = old
    body = {"expected_version": view.version, "values": values, "password": PASSWORD}
    r = site.client("p.lindqvist").post(
        f"/api/cases/{view.case.case_id}/steps/eligibility", json=body
    )
    assert r.status_code == 422 and r.json()["field"] == "older_result_reason", r.text
    values["older_result_reason"] = "Unchanged clinically; cardiology agrees"
    r = site.client("dr.okafor").post(
        f"/api/cases/{view.case.case_id}/steps/eligibility", json=body
    )
    assert r.status_code == 200 and r.json()["state"] == "hold_checks", r.text


def test_api_course_start_attests_and_refuses_retreatment(site: Site) -> None:
    b = site.bedside
    patient = b.store.add_patient(
        mrn="MRN-1105",
        family_name="Okoye",
        given_name="Ife",
        date_of_birth="1960-02-02",
        created_by="test",
    )
    dr = site.client("dr.okafor")
    r = dr.post(
        f"/api/patients/{patient.mrn}/courses",
        json={"attestations": {"no_organ_allograft": True}, "password": PASSWORD},
    )
    assert r.status_code == 422 and len(r.json()["fields"]) == 4, r.text
    r = dr.post(
        f"/api/patients/{patient.mrn}/courses",
        json={"attestations": ATTESTED, "password": PASSWORD},
    )
    assert r.status_code == 201, r.text
    course = r.json()
    assert course["start_record"]["attestations"] == ATTESTED
    # A dose, discontinued by sustained VT at the hold checks.
    r = dr.post(f"/api/courses/{course['id']}/doses", json={"password": PASSWORD})
    assert r.status_code == 201, r.text
    case_id = r.json()["case_id"]
    view = b.load(case_id)
    site.clock.advance(minutes=5)
    view = b.sign_step(
        case_id,
        view.version,
        "order",
        order_values("68", site.clock.now() - timedelta(hours=1)),
        _cred("dr.okafor"),
    )
    view = site.walk_to("hold_checks", view)
    values = values_for(view.case, "hold_checks", site.clock.now())
    values["vt_sustained_beats"] = "6"
    r = site.client("n.alvarez").post(
        f"/api/cases/{case_id}/steps/hold_checks",
        json={"expected_version": view.version, "values": values, "password": PASSWORD},
    )
    assert r.status_code == 200 and r.json()["state"] == "discontinued", r.text
    # The next dose and a new course are refused, naming rule, date and dose.
    r = dr.get(f"/api/patients/{patient.mrn}/course")
    assert r.status_code == 422 and r.json()["code"] == "course_discontinued"
    assert "sustained_vt" in r.json()["message"]
    r = dr.post(f"/api/courses/{course['id']}/doses", json={"password": PASSWORD})
    assert r.status_code == 422 and r.json()["code"] == "course_discontinued"
    r = dr.post(
        f"/api/patients/{patient.mrn}/courses",
        json={"attestations": ATTESTED, "password": PASSWORD},
    )
    assert r.status_code == 422 and r.json()["code"] == "retreatment_contraindicated"
    assert "cycle 1 dose 1" in r.json()["message"]
    assert len(b.store.list_courses(patient.id)) == 1


def _second_dose_at_infusion_start(site: Site) -> CaseView:
    """A first dose given and signed off, then the next opened for 8 h after it and walked to
    infusion start at once: too soon by the real clock."""
    first = site.walk_to("record_sign_off")
    given = first.case.given_at
    assert given is not None
    b = site.bedside
    b.sign_step(
        first.case.case_id,
        first.version,
        "record_sign_off",
        {"record_reviewed": True},
        _cred("n.alvarez"),
    )
    view = b.open_case(site.course_id, given + timedelta(hours=8), _cred("dr.okafor"))
    site.clock.advance(minutes=5)
    view = b.sign_step(
        view.case.case_id,
        view.version,
        "order",
        order_values("68", site.clock.now() - timedelta(hours=1)),
        _cred("dr.okafor"),
    )
    view = site.walk_to("infusion_start", view)
    assert site.clock.now() < given + timedelta(hours=8)
    return view


def test_api_infusion_start_rechecks_the_q8h_gap_against_the_real_time(site: Site) -> None:
    """A dose opened for a time 8 h after the last, started only 5 h after it: refused."""
    b = site.bedside
    view = _second_dose_at_infusion_start(site)
    r = site.client("n.alvarez").post(
        f"/api/cases/{view.case.case_id}/steps/infusion_start",
        json={
            "expected_version": view.version,
            "values": values_for(view.case, "infusion_start", site.clock.now()),
            "password": PASSWORD,
        },
    )
    assert r.status_code == 422 and r.json()["code"] == "too_soon", r.text
    assert b.load(view.case.case_id).version == view.version


def _cred(username: str) -> object:
    from workflow.identity import Credentials

    return Credentials(username, PASSWORD)


# -- the same rules on the pages (forms) --------------------------------------------------


def _post_form(site: Site, username: str, case_id: str, step: str, values: dict) -> object:
    from .conftest import csrf_of, form_of, version_of
    from .test_pages import page_login

    client = page_login(site, username, client=None)
    page = client.get(f"/cases/{case_id}")
    return client.post(
        f"/cases/{case_id}/steps/{step}",
        data={
            "csrf_token": csrf_of(page.text),
            "expected_version": version_of(page.text),
            "password": PASSWORD,
            **form_of(values),
        },
    )


def test_pages_refuse_an_old_eligibility_result_by_name(site: Site) -> None:
    view = site.walk_to("eligibility")
    values = values_for(view.case, "eligibility", site.clock.now())
    values["pft_date"] = (site.clock.now() - timedelta(days=150)).date().isoformat()
    r = _post_form(site, "p.lindqvist", view.case.case_id, "eligibility", values)
    assert r.status_code == 422  # type: ignore[attr-defined]
    text = r.text  # type: ignore[attr-defined]
    assert "Why a result older than the window is accepted" in text and "prescriber" in text
    assert site.bedside.load(view.case.case_id).version == view.version


def test_pages_refuse_infusion_start_too_soon(site: Site) -> None:
    b = site.bedside
    view = _second_dose_at_infusion_start(site)
    values = values_for(view.case, "infusion_start", site.clock.now())
    r = _post_form(site, "n.alvarez", view.case.case_id, "infusion_start", values)
    assert r.status_code == 422 and "8 h apart" in r.text  # type: ignore[attr-defined]
    assert b.load(view.case.case_id).version == view.version
