"""Sittings through the pages and the JSON API: the steps one person does at one sitting
shown in one form and signed by one signature (each still its own signed entry), signable
one at a time, and all or nothing when a step is refused."""

from __future__ import annotations

import re

from workflow.dev.walk import values_for

from .conftest import PASSWORD, Site, csrf_of, form_of, version_of
from .test_pages import page_login


def _bedside_form(site: Site, cid: str, **changed: object) -> dict[str, str]:
    view = site.bedside.load(cid)
    now = site.clock.now()
    values = {
        **values_for(view.case, "pre_infusion", now),
        **values_for(view.case, "infusion_start", now),
    }
    values.update(changed)
    return form_of({k: v for k, v in values.items() if v is not None})


def test_the_bedside_sitting_is_one_form_and_one_signature(sqlite_site: Site) -> None:
    site = sqlite_site
    cid = site.walk_to("pre_infusion").case.case_id
    nurse = page_login(site, "n.alvarez")
    page = nurse.get(f"/cases/{cid}").text
    # Both steps on the page, in one form, with one password field and the sitting named.
    assert 'name="together" value="infusion_start"' in page
    assert 'id="sitting_infusion_start"' in page and "Start the infusion" in page
    assert page.count('name="password"') == 1
    assert "One signature signs these 2 steps" in page
    # The first step is an unprimed check: the sitting shows no plan value either.
    assert "Planned duration: min" not in page and "Signing records the infusion start" in page
    assert 'name="only" value="Sign “At the bedside before hanging the bag” only"' in page
    assert page.index('name="v_no_in_line_filter"') < page.index('name="v_line_patent"')
    r = nurse.post(
        f"/cases/{cid}/steps/pre_infusion",
        data={
            "csrf_token": csrf_of(page),
            "expected_version": version_of(page),
            "together": "infusion_start",
            "password": PASSWORD,
            **_bedside_form(site, cid),
        },
    )
    assert r.status_code == 200, r.text[-2000:]
    after = site.bedside.load(cid)
    assert after.case.state == "infusion_stop"
    assert after.case.given_at is not None
    # The confirmation names both steps of the one signature.
    flash = " ".join(r.text.split())
    assert re.search(
        r"Signed: At the bedside before hanging the bag and Start the infusion by Nadia Alvarez",
        flash,
    ), flash[:3000]


def test_sign_this_step_only_leaves_the_next_for_later(sqlite_site: Site) -> None:
    site = sqlite_site
    cid = site.walk_to("pre_infusion").case.case_id
    nurse = page_login(site, "n.alvarez")
    page = nurse.get(f"/cases/{cid}").text
    form = _bedside_form(site, cid)
    form.pop("v_line_patent")  # the later step left blank: not signed now
    r = nurse.post(
        f"/cases/{cid}/steps/pre_infusion",
        data={
            "csrf_token": csrf_of(page),
            "expected_version": version_of(page),
            "together": "infusion_start",
            "only": "1",
            "password": PASSWORD,
            **form,
        },
    )
    assert r.status_code == 200, r.text[-2000:]
    assert site.bedside.load(cid).case.state == "infusion_start"
    # The next step alone now: no sitting starts at it.
    assert 'name="together"' not in nurse.get(f"/cases/{cid}").text


def test_a_refused_later_step_stores_nothing_and_marks_its_field(sqlite_site: Site) -> None:
    site = sqlite_site
    cid = site.walk_to("pre_infusion").case.case_id
    before = site.bedside.load(cid).version
    nurse = page_login(site, "n.alvarez")
    page = nurse.get(f"/cases/{cid}").text
    form = _bedside_form(site, cid)
    form.pop("v_line_patent")  # required on the later step
    r = nurse.post(
        f"/cases/{cid}/steps/pre_infusion",
        data={
            "csrf_token": csrf_of(page),
            "expected_version": version_of(page),
            "together": "infusion_start",
            "password": PASSWORD,
            **form,
        },
    )
    assert r.status_code == 422, r.status_code
    assert "Line patent and connected" in r.text
    assert re.search(r'name="v_line_patent"[^>]*aria-invalid="true"', r.text)
    # What was typed on the first step is shown again; nothing was stored.
    assert 'id="sitting_infusion_start"' in r.text
    after = site.bedside.load(cid)
    assert after.version == before and after.case.state == "pre_infusion"


def test_a_made_up_sitting_is_refused_by_the_service(sqlite_site: Site) -> None:
    """A form cannot make its own sitting: the protocol's sittings decide."""
    site = sqlite_site
    cid = site.walk_to("double_check_first").case.case_id
    nurse = page_login(site, "n.alvarez")
    page = nurse.get(f"/cases/{cid}").text
    assert 'name="together"' not in page  # the double checks are never signed together
    r = nurse.post(
        f"/cases/{cid}/steps/double_check_first",
        data={
            "csrf_token": csrf_of(page),
            "expected_version": version_of(page),
            "together": "double_check_second",
            "password": PASSWORD,
        },
    )
    assert r.status_code == 422, r.status_code
    assert "not signed together in this protocol" in r.text
    assert site.bedside.load(cid).case.state == "double_check_first"


def test_the_api_signs_a_sitting_all_or_nothing(sqlite_site: Site) -> None:
    site = sqlite_site
    cid = site.walk_to("infusion_stop").case.case_id
    site.clock.advance(minutes=15)
    client = page_login(site, "n.alvarez")
    token = csrf_of(client.get(f"/cases/{cid}").text)
    view = site.bedside.load(cid)
    now = site.clock.now()
    stop = values_for(view.case, "infusion_stop", now)
    observation = values_for(view.case, "observation", now)
    body = {
        "expected_version": view.version,
        "password": PASSWORD,
        "steps": [
            {"step": "infusion_stop", "values": form_values(stop)},
            {"step": "observation", "values": {**form_values(observation), "spo2_pct": "101"}},
        ],
    }
    headers = {"X-CSRF-Token": token}
    r = client.post(f"/api/cases/{cid}/sittings", json=body, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "spo2_pct"
    assert site.bedside.load(cid).version == view.version  # the stop was not stored either
    body["steps"][1]["values"]["spo2_pct"] = "97"
    r = client.post(f"/api/cases/{cid}/sittings", json=body, headers=headers)
    assert r.status_code == 200, r.text
    after = site.bedside.load(cid)
    assert after.version == view.version + 2 and after.case.state == "record_sign_off"
    wrong = {**body, "expected_version": after.version, "steps": body["steps"][::-1]}
    r = client.post(f"/api/cases/{cid}/sittings", json=wrong, headers=headers)
    assert r.status_code in (409, 422), r.text


def form_values(values: dict[str, object]) -> dict[str, str | bool]:
    return {k: v if isinstance(v, bool) else str(v) for k, v in values.items() if v is not None}
