"""The case page a nurse trusts (issue 12, items 5-8): the infusion timer and the reason for
an early or late stop, dangerous actions in two steps, confirmations and tries left in words,
and the evidence a verifier signs on. Real store, real signatures, pages through TestClient."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from workflow.core.errors import InputError, StepRefused
from workflow.dev.walk import values_for

from .conftest import PASSWORD, Site, cred, csrf_of, form_of, version_of
from .test_blinding_web import asked_values, shows_number

REASON_LABEL = "Why the infusion ran shorter or longer than planned"


def post_step(site: Site, who: str, cid: str, step: str, values: dict[str, object], **extra: str):  # type: ignore[no-untyped-def]
    client = site.client(who)
    page = client.get(f"/cases/{cid}?step={step}")
    assert page.status_code == 200, page.text
    data = {
        **form_of(values),
        "csrf_token": csrf_of(page.text),
        "expected_version": version_of(page.text),
        "password": PASSWORD,
        **extra,
    }
    return client, client.post(f"/cases/{cid}/steps/{step}", data=data, follow_redirects=False)


# --- 5. the infusion timer and the reason for an early or late stop ----------------------


def test_timer_shows_start_stop_and_minutes_left_on_the_case_page(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("infusion_stop")
    cid = view.case.case_id
    site.clock.advance(minutes=6)  # the walker started it; 6 of 15 minutes have run
    page = site.client("n.alvarez").get(f"/cases/{cid}").text
    assert 'id="infusion-timer"' in page and "Infusion running" in page
    started = view.case.given_at
    assert started is not None
    assert f"{started:%Y-%m-%d %H:%M} UTC" in page  # start, in the site's zone (UTC here)
    assert f"{started + timedelta(minutes=15):%Y-%m-%d %H:%M} UTC (15 min)" in page
    assert "9 min left" in page
    # Live region for the end alert; the early-stop notice names the rule's numbers.
    assert 'role="alert" aria-live="assertive"' in page
    assert "Stopping now is early or late (Infusion ran 6 min; the protocol says 15 min)" in page
    # The script is a file (CSP: no inline script) that counts down on the server's clock.
    assert "<script>" not in page and 'src="/static/bedside.js"' in page
    site.clock.advance(minutes=9)
    page = site.client("n.alvarez").get(f"/cases/{cid}").text
    assert "Infusion time reached (15 min): stop the infusion now." in page
    assert "0 min left" in page and "Stopping now is early" not in page


def test_early_stop_without_reason_is_refused_on_every_path(site: Site) -> None:
    # SQLite and PostgreSQL (the ``site`` fixture runs both).
    view = site.walk_to("infusion_stop")
    cid = view.case.case_id
    site.clock.advance(minutes=9)
    values = {"outcome": "stopped_early"}
    # The page: 422, the field named and marked on the form shown again.
    _client, r = post_step(site, "n.alvarez", cid, "infusion_stop", values)
    assert r.status_code == 422
    assert f"{REASON_LABEL}: required. Infusion ran 9 min; the protocol says 15 min" in r.text
    field = re.search(r'<input name="v_duration_reason"[^>]*>', r.text)
    assert field is not None
    assert 'aria-invalid="true"' in field.group(0) and 'aria-describedby="error"' in field.group(0)
    # The JSON API: the same rule, the field in the body.
    api = site.client("n.alvarez")
    body = {"expected_version": site.bedside.load(cid).version, "values": values}
    r = api.post(f"/api/cases/{cid}/steps/infusion_stop", json={**body, "password": PASSWORD})
    assert r.status_code == 422 and r.json()["field"] == "duration_reason", r.text
    # The service (what the command line calls): refused, nothing written.
    version = site.bedside.load(cid).version
    with pytest.raises(StepRefused) as refused:
        site.bedside.sign_step(cid, version, "infusion_stop", values, cred("n.alvarez"))
    assert refused.value.field == "duration_reason"
    assert refused.value.code == "acknowledgement_needed"
    assert site.bedside.load(cid).version == version
    # With the reason it is signed, and the record keeps both the deviation and the reason.
    why = {**values, "duration_reason": "Rigors; stopped on the prescriber's order"}
    _client, r = post_step(site, "n.alvarez", cid, "infusion_stop", why)
    assert r.status_code == 303, r.text
    case = site.bedside.load(cid).case
    assert case.current["infusion_stop"].values["duration_reason"].startswith("Rigors")
    assert [f.code for f in case.flags] == ["infusion_duration_deviation"]


def test_on_time_stop_needs_no_reason(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("infusion_stop")
    site.clock.advance(minutes=15)
    _client, r = post_step(
        site, "n.alvarez", view.case.case_id, "infusion_stop", {"outcome": "completed"}
    )
    assert r.status_code == 303, r.text


# --- 6. dangerous actions in two steps --------------------------------------------------


def test_cancel_takes_two_steps_and_no_reason_is_preselected(site: Site) -> None:
    # SQLite and PostgreSQL (the ``site`` fixture runs both).
    view = site.walk_to("hold_checks")
    cid = view.case.case_id
    client = site.client("dr.okafor")
    page = client.get(f"/cases/{cid}").text
    # First step: links to confirmation pages; no form on the case page can end the dose.
    assert f'href="/cases/{cid}/exit/cancel"' in page
    assert f'href="/cases/{cid}/exit/discontinue"' in page
    assert 'action="/cases/' + cid + '/exit"' not in page
    # Nothing was prepared yet: waste is not offered (and the case refuses it).
    assert f"/cases/{cid}/exit/waste" not in page
    assert client.get(f"/cases/{cid}/exit/waste").status_code == 404
    confirm = client.get(f"/cases/{cid}/exit/cancel").text
    assert "This dose is cancelled and ends here" in confirm
    assert "MRN-7001" in confirm and "Cycle 1" in confirm
    select = re.search(r'<select id="exit-reason".*?</select>', confirm, re.S)
    assert select is not None
    assert '<option value="">Choose a reason</option>' in select.group(0)
    assert "selected" not in select.group(0)
    # The second step without a reason: refused by the case, the field marked for assistive tech.
    data = {
        "csrf_token": csrf_of(confirm),
        "expected_version": version_of(confirm),
        "action": "cancel",
        "reason": "",
        "password": PASSWORD,
    }
    r = client.post(f"/cases/{cid}/exit", data=data)
    assert r.status_code == 422 and "reason: choose a reason" in r.text
    assert 'aria-invalid="true" aria-describedby="error"' in r.text
    assert site.bedside.load(cid).case.state == "hold_checks"
    # With a reason it is done, and the page confirms what was signed.
    data.update(reason="patient_unavailable", expected_version=version_of(r.text))
    r = client.post(f"/cases/{cid}/exit", data=data)
    assert r.status_code == 200 and site.bedside.load(cid).case.state == "cancelled"
    assert "Signed: Cancel the dose by Dr. Amara Okafor at" in r.text


def test_waste_is_offered_once_a_bag_was_prepared(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("pharmacy_verification")
    cid = view.case.case_id
    page = site.client("p.lindqvist").get(f"/cases/{cid}").text
    assert f'href="/cases/{cid}/exit/waste"' in page
    assert f"/cases/{cid}/exit/cancel" not in page  # a prepared bag is wasted, not cancelled


def test_empty_reason_is_refused_by_the_case_itself(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    with pytest.raises(StepRefused) as refused:
        site.bedside.side_exit(view.case.case_id, view.version, "cancel", "", "", cred("dr.okafor"))
    assert refused.value.field == "reason" and "choose a reason" in refused.value.message


def test_deactivation_takes_two_steps_and_never_yourself(sqlite_site: Site) -> None:
    site = sqlite_site
    admin = site.client("root")
    users = admin.get("/admin/users").text
    assert 'href="/admin/users/n.chen/deactivate"' in users
    assert 'href="/admin/users/root/deactivate"' not in users  # not offered for yourself
    confirm = admin.get("/admin/users/n.chen/deactivate").text
    assert "can no longer sign in or sign anything" in confirm and "Registered nurse" in confirm
    assert site.bedside.identity.get_user("n.chen").active  # opening the page changes nothing
    r = admin.post("/admin/users/n.chen/deactivate", data={"csrf_token": csrf_of(confirm)})
    assert r.status_code == 200 and not site.bedside.identity.get_user("n.chen").active
    # Yourself: refused by the page and by identity (the API and the CLI call it too).
    r = admin.post("/admin/users/root/deactivate", data={"csrf_token": csrf_of(confirm)})
    assert r.status_code == 422 and "cannot deactivate your own account" in r.text
    r = admin.post("/api/users/root/deactivate")
    assert r.status_code == 422 and r.json()["field"] == "username"
    root = site.bedside.identity.get_user("root")
    with pytest.raises(InputError) as refused:
        site.bedside.identity.deactivate("root", by=root.id)
    assert refused.value.field == "username"
    assert site.bedside.identity.get_user("root").active


# --- 7. words for people: the confirmation, the tries left ------------------------------


def test_signature_is_confirmed_in_words(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("order_verification")
    cid = view.case.case_id
    values = values_for(view.case, "order_verification", site.clock.now())
    client, r = post_step(site, "p.lindqvist", cid, "order_verification", values)
    assert r.status_code == 303 and "?signed=" in r.headers["location"]
    page = client.get(r.headers["location"]).text
    at = site.clock.now().strftime("%H:%M")
    title = site.bedside.protocol.step("order_verification").title
    assert f"Signed: {title} by Per Lindqvist, PharmD at {at}" in page
    assert 'role="status"' in page
    # A link cannot make the page say anything: an unsigned or unknown event shows nothing.
    assert "Signed:" not in client.get(f"/cases/{cid}?signed=0").text
    assert "Signed:" not in client.get(f"/cases/{cid}?signed=999").text


def test_failed_signature_says_how_many_tries_are_left(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    cid = view.case.case_id
    values = values_for(view.case, "hold_checks", site.clock.now())
    limit = site.bedside.identity.policy.max_failed_attempts
    _client, r = post_step(site, "n.alvarez", cid, "hold_checks", values, password="wrong-guess-1")
    assert r.status_code == 401
    assert f"{limit - 1} tries left before a 15-minute lockout" in r.text


def test_role_titles_not_ids_on_the_case_page(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    page = site.client("n.alvarez").get(f"/cases/{view.case.case_id}").text
    assert "Prescriber, approved" in page and "Pharmacist, verified" in page
    assert ", pharmacist," not in page and ", prescriber," not in page


# --- 8. evidence for the pharmacist ------------------------------------------------------


def test_order_verification_shows_the_order_weight_plan_and_eligibility(
    sqlite_site: Site,
) -> None:
    site = sqlite_site
    # A first dose given, so the course has eligibility tests on file with their dates.
    first = site.walk_to("record_sign_off")
    site.clock.advance(minutes=5)
    values = values_for(first.case, "record_sign_off", site.clock.now())
    site.bedside.sign_step(
        first.case.case_id, first.version, "record_sign_off", values, cred("n.alvarez")
    )
    site.clock.advance(hours=8)
    second = site.open_case()
    page = site.client("p.lindqvist").get(f"/cases/{second.case.case_id}").text
    assert 'id="evidence-order"' in page
    assert "68 kg" in page and "measured" in page and "3 h 0 min ago" in page
    assert "Ordered dose</dt><dd>600000 IU/kg" in page  # the order entry, as signed
    plan = second.case.plan
    assert plan is not None and f"{int(plan.dose_iu):,} IU" in page
    eligibility = re.search(r'id="evidence-eligibility".*?</table>', page, re.S)
    assert eligibility is not None
    table = eligibility.group(0)
    tests = first.case.current["eligibility"].values
    assert "Thallium stress test" in table and "Pulmonary function tests" in table
    assert str(tests["stress_test_date"]) in table and str(tests["pft_date"]) in table
    assert "cycle 1 dose 1" in table
    # Above the form and its Sign button.
    assert page.index('id="evidence-order"') < page.index("Sign (verified)")


def test_first_dose_says_eligibility_is_not_on_file_yet(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("order_verification")
    page = site.client("p.lindqvist").get(f"/cases/{view.case.case_id}").text
    assert page.count("Not on file yet") == 2


def test_release_shows_plan_beside_measured_with_differences(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("pharmacy_verification")
    cid = view.case.case_id
    page = site.client("p.lindqvist").get(f"/cases/{cid}").text
    table = re.search(r'id="evidence-measured".*?</section>', page, re.S)
    assert table is not None
    assert page.index('id="evidence-measured"') < page.index("Sign (verified)")
    assert table.group(0).count("<tr class=") == 5  # vials, water, withdrawn, bag, final
    plan = view.case.plan
    assert plan is not None
    dilution = view.case.current["dilution"].values
    # The technician measured 2.27 mL for a plan of 2.2666... mL: accepted (within half a unit
    # of the step's 2 decimals) yet not the plan's amount, so the row is highlighted with it.
    withdrawn = next(r for r in table.group(0).split("<tr")[1:] if "withdrawn" in r)
    assert 'class="diff"' in withdrawn
    assert f"{dilution['withdrawn_volume_ml']} mL" in withdrawn
    assert "2.2667 mL" in withdrawn and "(accepted: within 0.005 mL)" in withdrawn
    assert "DIFFERS" not in table.group(0)  # nothing outside what the steps accepted
    # Rows that match exactly are not highlighted.
    vials = next(r for r in table.group(0).split("<tr")[1:] if "Vials used" in r)
    assert 'class="same"' in vials and "none" in vials


def test_preparer_is_told_before_filling_the_release_form(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("reconstitution")
    cid = view.case.case_id
    site.clock.advance(minutes=15)
    values = values_for(view.case, "reconstitution", site.clock.now())
    view = site.bedside.sign_step(cid, view.version, "reconstitution", values, cred("p.lindqvist"))
    view = site.walk_to("pharmacy_verification", view)
    page = site.client("p.lindqvist").get(f"/cases/{cid}").text
    assert 'id="duty-conflict"' in page
    assert "You signed “Reconstitution” on this dose" in page
    assert page.index('id="duty-conflict"') < page.index('<form method="post" action="/cases/')


def test_blinded_checker_sees_no_expected_values(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("double_check_second")
    cid = view.case.case_id
    page = site.client("n.chen").get(f"/cases/{cid}").text
    assert 'id="evidence-measured"' not in page and 'id="evidence-order"' not in page
    for value in asked_values(site, cid):
        assert not shows_number(page, value), value


def test_datetime_widget_and_its_hint_agree(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("reconstitution")
    page = site.client("t.mensah").get(f"/cases/{view.case.case_id}").text
    field = re.search(r'<div class="field datetime[^"]*" id="f_prepared_at">.*?</div>', page, re.S)
    assert field is not None
    assert 'type="datetime-local"' in field.group(0)
    assert "date and time, UTC (the site&#39;s time), not in the future" in field.group(0)
    assert "with a zone" not in field.group(0)  # the API's ISO form is not what the picker takes
    # A refused form shows the typed time again in the picker's own format.
    values = values_for(view.case, "reconstitution", site.clock.now())
    values["vial_count"] = "9"
    _client, r = post_step(site, "t.mensah", view.case.case_id, "reconstitution", values)
    assert r.status_code == 422
    shown = re.search(r'<input name="v_prepared_at"[^>]*value="([^"]*)"', r.text)
    assert shown is not None and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d", shown.group(1))
