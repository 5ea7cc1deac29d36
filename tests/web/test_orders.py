"""Orders on the web (issue 12): register a patient, start a course with its signed
attestations (and the retreatment override), open a dose by signing its order, the patient page
with the next dose's due time, the ward board and the pharmacy queue, against a real Site."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from workflow.dev.walk import order_values, values_for

from .conftest import PASSWORD, Site, cred, csrf_of, form_of

ATTESTED = {
    "inpatient_icu_setting",
    "no_untreated_infection",
    "no_organ_allograft",
    "no_known_hypersensitivity",
    "stress_test_and_pft_normal",
}


def page_client(site: Site, username: str) -> tuple[TestClient, str]:
    """A browser-like client signed in through the login page; returns it and its CSRF token."""
    client = site.client(username)
    client.headers.pop("X-CSRF-Token", None)  # pages post the form's token, not the header
    r = client.get("/patients")
    assert r.status_code == 200, r.text
    return client, csrf_of(r.text)


def register(client: TestClient, token: str, **fields: str) -> Any:
    body = {
        "csrf_token": token,
        "mrn": "MRN-4401",
        "family_name": "Haddad",
        "given_name": "Lina",
        "date_of_birth": "1969-05-04",
        **fields,
    }
    return client.post("/patients", data=body, follow_redirects=False)


def start(client: TestClient, token: str, patient_id: str, **extra: str) -> Any:
    body = {"csrf_token": token, "password": PASSWORD, **{f"a_{a}": "on" for a in ATTESTED}}
    body.update(extra)
    return client.post(f"/patients/{patient_id}/courses", data=body, follow_redirects=False)


def order_form(site: Site, token: str, weight: str = "68", due: str = "") -> dict[str, str]:
    values = order_values(weight, site.clock.now() - timedelta(hours=2))
    # The browser's datetime-local is site wall time with no zone.
    local = site.clock.now().astimezone(site.bedside.tz) - timedelta(hours=2)
    values["weight_measured_at"] = local.strftime("%Y-%m-%dT%H:%M")
    return {"csrf_token": token, "password": PASSWORD, "due_at": due, **form_of(values)}


def registered(site: Site) -> tuple[TestClient, str, str]:
    """A prescriber's client, its token, and a patient registered and on a course."""
    dr, token = page_client(site, "dr.okafor")
    r = register(dr, token)
    assert r.status_code == 303, r.text
    patient_id = r.headers["location"].rsplit("/", 1)[1]
    r = start(dr, token, patient_id)
    assert r.status_code == 303, r.text
    return dr, token, patient_id


def test_a_prescriber_registers_a_patient_with_two_identifiers(site: Site) -> None:
    dr, token = page_client(site, "dr.okafor")
    r = register(dr, token)
    assert r.status_code == 303, r.text
    patient = site.bedside.find_patient("MRN-4401")
    assert patient is not None and patient.created_by == "dr.okafor"
    page = dr.get(r.headers["location"]).text
    assert "HADDAD, Lina" in page and "MRN-4401" in page and "1969-05-04" in page
    # Found by MRN or by name.
    assert patient.id in dr.get("/patients", params={"q": "hadd"}).text
    assert patient.id in dr.get("/patients", params={"q": "4401"}).text
    assert patient.id not in dr.get("/patients", params={"q": "zzz"}).text


def test_bad_registrations_are_4xx_naming_the_field_and_write_nothing(site: Site) -> None:
    dr, token = page_client(site, "dr.okafor")
    before = len(site.bedside.search_patients())
    for fields, field in (
        ({"date_of_birth": "2999-01-01"}, "date_of_birth"),
        ({"date_of_birth": "04/05/1969"}, "date_of_birth"),
        ({"mrn": ""}, "mrn"),
        ({"mrn": "MRN 1 2"}, "mrn"),
        ({"family_name": ""}, "family_name"),
        ({"mrn": "MRN-7001"}, "mrn"),  # the site's patient: an MRN is registered once
    ):
        r = register(dr, token, **fields)
        assert r.status_code == 422, (fields, r.status_code)
        # The form comes back with the message, what was typed, and the field marked.
        assert 'role="alert"' in r.text and "Register a patient" in r.text
        assert re.search(rf'class="field bad"><label>[^<]*<input name="{field}"', r.text), fields
    assert len(site.bedside.search_patients()) == before


def test_wrong_roles_and_missing_csrf_are_refused(site: Site) -> None:
    nurse, token = page_client(site, "n.alvarez")
    assert "Register a patient" not in nurse.get("/patients").text
    assert register(nurse, token).status_code == 403
    assert site.client("a.ibrahim").get("/patients").status_code == 403  # an auditor
    dr, _token = page_client(site, "dr.okafor")
    assert register(dr, "forged").status_code == 403
    assert site.bedside.find_patient("MRN-4401") is None
    # A course start and a dose by a nurse: 403, nothing written.
    dr, token = page_client(site, "dr.okafor")
    patient_id = register(dr, token).headers["location"].rsplit("/", 1)[1]
    nurse, ntoken = page_client(site, "n.alvarez")
    assert start(nurse, ntoken, patient_id).status_code == 403
    assert start(dr, "forged", patient_id).status_code == 403
    assert site.bedside.patient_courses(patient_id) == []
    assert start(dr, token, patient_id).status_code == 303
    r = nurse.post(f"/patients/{patient_id}/doses", data=order_form(site, ntoken))
    assert r.status_code == 403
    r = dr.post(f"/patients/{patient_id}/doses", data=order_form(site, "forged"))
    assert r.status_code == 403
    assert site.bedside.course_doses(site.bedside.patient_courses(patient_id)[0].id) == []


def test_course_start_needs_every_attestation_and_is_signed(site: Site) -> None:
    dr, token = page_client(site, "dr.okafor")
    patient_id = register(dr, token).headers["location"].rsplit("/", 1)[1]
    page = dr.get(f"/patients/{patient_id}").text
    assert "Start a course" in page and "Normal thallium stress test" in page
    r = dr.post(
        f"/patients/{patient_id}/courses",
        data={"csrf_token": token, "password": PASSWORD, "a_no_organ_allograft": "on"},
    )
    assert r.status_code == 422, r.text
    assert "4 entries need attention" in r.text and "intensive care facility" in r.text
    assert site.bedside.patient_courses(patient_id) == []
    r = start(dr, token, patient_id, password="wrong password")
    assert r.status_code == 401
    assert site.bedside.patient_courses(patient_id) == []
    r = start(dr, token, patient_id)
    assert r.status_code == 303
    (course,) = site.bedside.patient_courses(patient_id)
    record = course.start_record or {}
    assert set(record["attestations"]) == ATTESTED
    assert record["by"]["role"] == "prescriber"
    page = dr.get(f"/patients/{patient_id}").text
    assert "Active course" in page and "Sign the order" in page and "due now" in page


def test_a_prescriber_opens_a_dose_by_signing_its_order(site: Site) -> None:
    dr, token, patient_id = registered(site)
    # A weight outside the accepted range: 422 naming it; no dose is left half-opened.
    r = dr.post(f"/patients/{patient_id}/doses", data=order_form(site, token, weight="900"))
    assert r.status_code == 422, r.text
    assert 'class="field number bad" id="f_dosing_weight_kg"' in r.text
    (course,) = site.bedside.patient_courses(patient_id)
    assert site.bedside.course_doses(course.id) == []
    r = dr.post(f"/patients/{patient_id}/doses", data=order_form(site, token, due="nonsense"))
    assert r.status_code == 422 and "due_at" in r.text
    r = dr.post(
        f"/patients/{patient_id}/doses", data=order_form(site, token), follow_redirects=False
    )
    assert r.status_code == 303, r.text
    (view,) = site.bedside.course_doses(course.id)
    assert view.case.state == "order_verification"
    order = view.case.current["order"]
    assert order.signer.role == "prescriber" and order.values["dosing_weight_kg"] == 68
    page = dr.get(f"/patients/{patient_id}").text
    assert f'id="dose-{view.case.case_id}"' in page and "Pharmacist verifies the order" in page
    assert "is still open" in page  # the next dose waits for this one
    # On the ward board and the pharmacy queue, the same rows as the JSON API.
    board = site.client("n.alvarez").get("/api/ward").json()
    row = next(r for r in board if r["id"] == view.case.case_id)
    assert row["stage"] == "ordered" and row["overdue"] is False
    queue = site.client("p.lindqvist").get("/api/pharmacy").json()
    assert view.case.case_id in [r["id"] for r in queue]
    html = site.client("p.lindqvist").get("/pharmacy").text
    assert view.case.case_id in html and "Pharmacist verifies the order" in html


def test_the_next_dose_is_due_8_hours_after_the_last_given_in_site_time(site: Site) -> None:
    site.bedside.tz = ZoneInfo("Europe/Oslo")
    dr, token, patient_id = registered(site)
    (course,) = site.bedside.patient_courses(patient_id)
    r = dr.post(
        f"/patients/{patient_id}/doses", data=order_form(site, token), follow_redirects=False
    )
    assert r.status_code == 303, r.text
    (view,) = site.bedside.course_doses(course.id)
    view = site.walk_to("infusion_stop", view)
    given = view.case.given_at
    assert given is not None
    due = (given + timedelta(hours=8)).astimezone(ZoneInfo("Europe/Oslo"))
    dr, token = page_client(site, "dr.okafor")  # the walk outlasted the session
    page = dr.get(f"/patients/{patient_id}").text
    # Given: the next dose's time shows, and it opens once this dose ends.
    hhmm = f"{due:%H:%M}" if due.second == 0 else f"{due + timedelta(minutes=1):%H:%M}"
    assert f"due at {hhmm}" in page and "Europe/Oslo" in page
    assert 'id="open-dose"' not in page
    view = site.walk_to("record_sign_off", view)
    site.bedside.sign_step(
        view.case.case_id,
        view.version,
        "record_sign_off",
        {"record_reviewed": True},
        cred("n.alvarez"),
    )
    dr, token = page_client(site, "dr.okafor")
    page = dr.get(f"/patients/{patient_id}").text
    assert f"due at {hhmm}" in page and 'id="open-dose"' in page
    # Opening it before its time is refused by the schedule (q8h), naming nothing half-done.
    early = order_form(site, token, due=f"{site.clock.now().astimezone(due.tzinfo):%Y-%m-%dT%H:%M}")
    r = dr.post(f"/patients/{patient_id}/doses", data=early)
    assert r.status_code == 422, r.text
    assert "h apart" in r.text
    due_field = re.search(r'name="due_at" type="datetime-local" value="([^"]+)"', page)
    assert due_field
    form = order_form(site, token, due=due_field.group(1))
    r = dr.post(f"/patients/{patient_id}/doses", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    second = site.bedside.course_doses(course.id)[-1]
    assert (second.case.cycle, second.case.dose_in_cycle) == (1, 2)
    # Due in hours: on the board, not overdue.
    board = site.client("n.alvarez").get("/api/ward").json()
    row = next(r for r in board if r["id"] == second.case.case_id)
    assert row["overdue"] is False and row["due_time"] == hhmm
    assert row["due_local"].endswith(("CET", "CEST"))


def test_the_ward_board_shows_every_stage_and_overdue_against_the_schedule(site: Site) -> None:
    b = site.bedside
    now = site.clock.now()
    opened = b.open_case(site.course_id, now, cred("dr.okafor"))
    rows = {r["id"]: r for r in site.client("n.alvarez").get("/api/ward").json()}
    # Opened now for now: due now, not overdue.
    assert rows[opened.case.case_id]["overdue"] is False
    assert rows[opened.case.case_id]["stage"] == "ordered"
    site.clock.advance(minutes=2)
    rows = {r["id"]: r for r in site.client("n.alvarez").get("/api/ward").json()}
    assert rows[opened.case.case_id]["overdue"] is True
    assert rows[opened.case.case_id]["waiting_minutes"] == 2
    view = b.sign_step(
        opened.case.case_id,
        opened.version,
        "order",
        order_values("68", site.clock.now() - timedelta(hours=1)),
        cred("dr.okafor"),
    )
    view = site.walk_to("reconstitution", view)
    html = site.client("n.alvarez").get("/ward").text
    assert 'id="stage-pharmacy"' in html and "In pharmacy" in html
    view = site.walk_to("double_check_first", view)
    rows = {r["id"]: r for r in site.client("n.alvarez").get("/api/ward").json()}
    assert rows[view.case.case_id]["stage"] == "ready"
    view = site.walk_to("infusion_stop", view)
    site.clock.advance(minutes=4)
    rows = {r["id"]: r for r in site.client("n.alvarez").get("/api/ward").json()}
    row = rows[view.case.case_id]
    assert row["stage"] == "infusing" and row["overdue"] is False
    assert row["minutes_left"] == 11
    html = site.client("n.alvarez").get("/ward").text
    assert "Infusing · 11 min left" in html and "Times in UTC" in html
    view = site.walk_to("record_sign_off", view)
    b.sign_step(
        view.case.case_id,
        view.version,
        "record_sign_off",
        {"record_reviewed": True},
        cred("n.alvarez"),
    )
    rows = {r["id"]: r for r in site.client("n.alvarez").get("/api/ward").json()}
    assert rows[view.case.case_id]["stage"] == "ended"
    assert rows[view.case.case_id]["stage_title"] == "Completed today"
    # Tomorrow (site day), the completed dose has left the board.
    site.clock.advance(hours=24)
    rows = {r["id"]: r for r in site.client("n.alvarez").get("/api/ward").json()}
    assert view.case.case_id not in rows


def test_a_held_dose_shows_the_rule_in_words(site: Site) -> None:
    view = site.walk_to("hold_checks")
    values = values_for(view.case, "hold_checks", site.clock.now())
    values["sbp_mmhg"] = "82"
    view = site.bedside.sign_step(
        view.case.case_id, view.version, "hold_checks", values, cred("n.alvarez")
    )
    assert view.case.on_hold
    rows = {r["id"]: r for r in site.client("n.alvarez").get("/api/ward").json()}
    row = rows[view.case.case_id]
    assert row["stage"] == "held" and row["holds"]
    assert any("90" in h for h in row["holds"])
    html = site.client("n.alvarez").get("/ward").text
    assert 'id="stage-held"' in html and row["holds"][0].split(":")[0] in html


def test_the_pharmacy_queue_sorts_by_due_time_and_counts_per_step(site: Site) -> None:
    b = site.bedside
    later = site.new_course("MRN-7002", "Berg", "Ola", "1980-01-01")
    sooner = site.new_course("MRN-7003", "Dahl", "Kari", "1975-06-06")
    now = site.clock.now()
    a = b.open_case(later, now + timedelta(hours=3), cred("dr.okafor"))
    c = b.open_case(sooner, now + timedelta(hours=1), cred("dr.okafor"))
    for view in (a, c):
        b.sign_step(
            view.case.case_id,
            view.version,
            "order",
            order_values("70", now - timedelta(hours=1)),
            cred("dr.okafor"),
        )
    queue = site.client("p.lindqvist").get("/api/pharmacy").json()
    ids = [r["id"] for r in queue]
    assert ids.index(c.case.case_id) < ids.index(a.case.case_id)
    html = site.client("p.lindqvist").get("/pharmacy").text
    assert '<span class="count">2</span> Pharmacist verifies the order' in html
    assert "Waiting" in html


def test_the_pharmacy_queue_filters_by_step(site: Site) -> None:
    """Issue 16.5: each step's count is the filter for that step; the counts stay the whole
    queue's; a step that is not the queue's is 422 naming the ones that are, on the page and
    the JSON API."""
    b = site.bedside
    now = site.clock.now()
    ordered = b.open_case(
        site.new_course("MRN-7002", "Berg", "Ola", "1980-01-01"), now, cred("dr.okafor")
    )
    b.sign_step(
        ordered.case.case_id,
        ordered.version,
        "order",
        order_values("70", now - timedelta(hours=1)),
        cred("dr.okafor"),
    )
    preparing = site.walk_to("reconstitution")  # the site's own patient, MRN-7001
    pharmacist = site.client("p.lindqvist")
    everything = [r["id"] for r in pharmacist.get("/api/pharmacy").json()]
    assert set(everything) == {ordered.case.case_id, preparing.case.case_id}
    only = pharmacist.get("/api/pharmacy?step=reconstitution").json()
    assert [r["id"] for r in only] == [preparing.case.case_id]
    page = pharmacist.get("/pharmacy?step=order_verification").text
    assert f'data-case="{ordered.case.case_id}"' in page
    assert f'data-case="{preparing.case.case_id}"' not in page
    # Every count still shows, each a link to its filter; the one shown is marked current.
    assert '<a href="/pharmacy?step=reconstitution">' in page
    assert 'href="/pharmacy?step=order_verification" aria-current="page"' in page
    for bad in ("/api/pharmacy?step=infusion_start", "/pharmacy?step=nonsense"):
        r = pharmacist.get(bad)
        assert r.status_code == 422, (bad, r.status_code)
        assert "order_verification" in r.text and "held" in r.text, r.text


def test_after_a_contraindicating_toxicity_a_course_needs_the_signed_override(site: Site) -> None:
    b = site.bedside
    dr, token, patient_id = registered(site)
    (course,) = b.patient_courses(patient_id)
    r = dr.post(
        f"/patients/{patient_id}/doses", data=order_form(site, token), follow_redirects=False
    )
    assert r.status_code == 303, r.text
    (view,) = b.course_doses(course.id)
    view = site.walk_to("hold_checks", view)
    values = values_for(view.case, "hold_checks", site.clock.now())
    values["vt_sustained_beats"] = "6"
    view = b.sign_step(view.case.case_id, view.version, "hold_checks", values, cred("n.alvarez"))
    assert view.case.state == "discontinued"
    dr, token = page_client(site, "dr.okafor")
    page = dr.get(f"/patients/{patient_id}").text
    assert 'id="retreatment"' in page and "sustained_vt" in page
    assert 'name="override_reason"' in page
    r = start(dr, token, patient_id)
    assert r.status_code == 422 and "override_reason" in r.text
    assert len(b.patient_courses(patient_id)) == 1
    r = start(dr, token, patient_id, override_reason="Tumour response; cardiology cleared")
    assert r.status_code == 303, r.text
    new = b.patient_courses(patient_id)[-1]
    override = (new.start_record or {})["retreatment_override"]
    assert override["reason"] == "Tumour response; cardiology cleared"
    assert "Retreatment override signed" in dr.get(f"/patients/{patient_id}").text


def test_a_look_alike_name_is_registered_only_once_confirmed(site: Site) -> None:
    dr, token = page_client(site, "dr.okafor")
    mixed = "Ivаnov"  # the second "a" is Cyrillic
    r = register(dr, token, family_name=mixed)
    assert r.status_code == 422, r.text
    assert 'name="confirm_mixed_script"' in r.text
    assert site.bedside.find_patient("MRN-4401") is None
    r = register(dr, token, family_name=mixed, confirm_mixed_script="on")
    assert r.status_code == 303, r.text
    patient = site.bedside.find_patient("MRN-4401")
    assert patient is not None and patient.family_name == mixed
