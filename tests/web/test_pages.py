"""Server-rendered pages: sign-in, role checks, CSRF, the 409 path, bad input, blinding,
escaping, the archive and the admin screens."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from workflow.dev.walk import values_for

from .conftest import EVIL_NAME, PASSWORD, Site, csrf_of, form_of, version_of


def page_login(site: Site, username: str, client: TestClient | None = None) -> TestClient:
    """Sign in through the login page, in ``client`` (a browser) or a new one."""
    client = client or site.client()
    page = client.get("/login")
    r = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    return client


def test_login_needs_its_csrf_token_and_right_password(sqlite_site: Site) -> None:
    client = sqlite_site.client()
    page = client.get("/login")
    r = client.post("/login", data={"username": "n.alvarez", "password": PASSWORD})
    assert r.status_code == 403 and "sign-in form expired" in r.text
    r = client.post(
        "/login",
        data={"username": "n.alvarez", "password": "nope", "csrf_token": csrf_of(page.text)},
    )
    assert r.status_code == 401 and "Wrong username or password" in r.text
    assert "bedside_session" not in client.cookies


def test_unsigned_pages_redirect_to_login_and_roles_are_checked(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    cid = view.case.case_id
    anon = site.client()
    pages = [
        "/ward",
        "/pharmacy",
        f"/cases/{cid}",
        f"/cases/{cid}/label.pdf",
        "/archive",
        "/archive/" + "0" * 64,
        "/records/" + "0" * 64 + ".pdf",
        "/admin/users",
    ]
    for path in pages:
        r = anon.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    posts = [
        f"/cases/{cid}/steps/hold_checks",
        f"/cases/{cid}/exit",
        "/admin/users",
        "/admin/users/n.chen/deactivate",
        "/admin/users/n.chen/reset-password",
        "/archive/" + "0" * 64 + "/verify",
    ]
    for path in posts:
        r = anon.post(path, data={}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    denied = {
        "a.ibrahim": ["/ward", "/pharmacy", f"/cases/{cid}", "/admin/users"],
        "n.chen": ["/pharmacy", f"/cases/{cid}/label.pdf", "/archive", "/admin/users"],
        "t.mensah": ["/ward", "/archive", "/admin/users"],
        "root": ["/ward", f"/cases/{cid}", "/archive"],
    }
    for who, paths in denied.items():
        client = page_login(site, who)
        for path in paths:
            assert client.get(path).status_code == 403, (who, path)
        for path in posts:
            r = client.post(path, data={"csrf_token": "x"})
            assert r.status_code in (403, 422), (who, path, r.status_code)


def test_step_form_csrf_409_and_bad_input(site: Site) -> None:
    view = site.walk_to("hold_checks")
    cid = view.case.case_id
    client = page_login(site, "n.alvarez")
    page = client.get(f"/cases/{cid}")
    assert "Step 4 of 14" in page.text or re.search(r"Step \d+ of \d+", page.text)
    assert version_of(page.text) == str(view.version)
    values = form_of(values_for(view.case, "hold_checks", site.clock.now()))
    base = {
        "csrf_token": csrf_of(page.text),
        "expected_version": str(view.version),
        "password": PASSWORD,
        **values,
    }
    url = f"/cases/{cid}/steps/hold_checks"
    # CSRF: missing or wrong token.
    assert client.post(url, data={**base, "csrf_token": ""}).status_code == 403
    assert client.post(url, data={**base, "csrf_token": "0" * 64}).status_code == 403
    # Bad input: 422, message, typed values shown again, nothing stored.
    r = client.post(url, data={**base, "v_spo2_pct": "ninety"})
    assert r.status_code == 422 and "spo2_pct" in r.text and 'value="ninety"' in r.text
    assert site.bedside.load(cid).version == view.version
    assert PASSWORD not in r.text
    # Another tablet signs first: this one gets 409 with a reload link, nothing lost.
    other = page_login(site, "n.chen")
    assert (
        other.post(
            url,
            data={**base, "csrf_token": csrf_of(other.get(f"/cases/{cid}").text)},
            follow_redirects=False,
        ).status_code
        == 303
    )
    r = client.post(url, data=base)
    assert r.status_code == 409 and "This case changed, reload" in r.text
    assert f'href="/cases/{cid}"' in r.text
    assert site.bedside.load(cid).version == view.version + 1


def test_hold_banner_shows_rule_and_values(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    cid = view.case.case_id
    client = page_login(site, "n.alvarez")
    page = client.get(f"/cases/{cid}")
    values = form_of(values_for(view.case, "hold_checks", site.clock.now()))
    values["v_lethargy"] = "moderate"
    r = client.post(
        f"/cases/{cid}/steps/hold_checks",
        data={
            "csrf_token": csrf_of(page.text),
            "expected_version": version_of(page.text),
            "password": PASSWORD,
            **values,
        },
    )
    assert r.status_code == 200
    assert "DOSE HELD" in r.text and 'id="holds"' in r.text
    assert "Lethargy or somnolence: <b>Moderate</b>" in r.text  # the item and option in words
    assert site.bedside.load(cid).case.on_hold


def test_blinded_second_checker_never_sees_first_entries(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("double_check_first")
    cid = view.case.case_id
    nurse = page_login(site, "n.alvarez")
    first = values_for(view.case, "double_check_first", site.clock.now())
    # Distinctive, and wrong: the weight, which the scanned label's code does not carry (a
    # typed value the code contradicts is refused outright).
    first["dosing_weight_kg"] = "77.7"
    page = nurse.get(f"/cases/{cid}")
    assert "Independent check" in page.text
    r = nurse.post(
        f"/cases/{cid}/steps/double_check_first",
        data={
            "csrf_token": csrf_of(page.text),
            "expected_version": version_of(page.text),
            "password": PASSWORD,
            **form_of(first),
        },
    )
    assert r.status_code == 200, r.text[:2000]
    assert site.bedside.load(cid).case.state == "double_check_second"
    assert not _shows_number(r.text, "77.7")
    assert "Double check, first" not in r.text.split("Signed so far")[-1]
    assert 'name="username"' in r.text  # the second nurse signs with their own id
    api = nurse.get(
        f"/api/cases/{cid}",
        params={"step": "double_check_second"},
        headers={"X-CSRF-Token": csrf_of(r.text)},
    )
    assert not _shows_number(api.text, "77.7")


def _shows_number(text: str, number: str) -> bool:
    """Whether `number` appears as a number of its own, not inside a token.

    Pages carry random hex (CSRF tokens, hashes, case ids); a bare substring test
    fails whenever one of them happens to contain the digits.
    """
    return re.search(rf"(?<![0-9A-Za-z]){re.escape(number)}(?![0-9A-Za-z])", text) is not None


def test_patient_name_markup_is_escaped(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    client = page_login(site, "n.alvarez")
    for path in ("/ward", f"/cases/{view.case.case_id}"):
        text = client.get(path).text
        assert EVIL_NAME not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_pharmacy_queue_and_verification_screen(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("pharmacy_verification")
    tech = page_login(site, "t.mensah")
    queue = tech.get("/pharmacy").text
    assert "Compounding queue" in queue and view.case.case_id in queue
    pharmacist = page_login(site, "p.lindqvist")
    page = pharmacist.get(f"/cases/{view.case.case_id}").text
    # Everything the preparer entered is on the verification screen.
    for shown in ("PLK2291", "SW40812", "D5W7731", "Tomas Mensah"):
        assert shown in page
    assert "Print bag label" in page


def test_expired_vial_is_refused_on_the_form(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("reconstitution")
    cid = view.case.case_id
    tech = page_login(site, "t.mensah")
    page = tech.get(f"/cases/{cid}")
    values = values_for(view.case, "reconstitution", site.clock.now())
    values["vial_expiry"] = "2020-01"
    r = tech.post(
        f"/cases/{cid}/steps/reconstitution",
        data={
            "csrf_token": csrf_of(page.text),
            "expected_version": version_of(page.text),
            "password": PASSWORD,
            **form_of(values),
        },
    )
    assert r.status_code == 422 and "expir" in r.text.lower()
    assert site.bedside.load(cid).version == view.version


def test_idle_timeout_signs_out(sqlite_site: Site) -> None:
    site = sqlite_site
    client = page_login(site, "n.alvarez")
    assert client.get("/ward").status_code == 200
    site.clock.advance(minutes=16)
    r = client.get("/ward", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("why=idle")
    shown = client.get(r.headers["location"])
    assert "Signed out after 15 minutes without use" in shown.text


def test_admin_pages(sqlite_site: Site) -> None:
    site = sqlite_site
    admin = page_login(site, "root")
    page = admin.get("/admin/users")
    token = csrf_of(page.text)
    r = admin.post(
        "/admin/users",
        data={
            "csrf_token": token,
            "username": "n.third",
            "printed_name": "Third Nurse",
            "roles": ["nurse"],
            "password": "temporary-pass-77",
        },
    )
    assert r.status_code == 200 and "n.third" in r.text
    r = admin.post(
        "/admin/users",
        data={
            "csrf_token": token,
            "username": "n.fourth",
            "printed_name": "X",
            "roles": ["nurse"],
            "password": "x",
        },
    )
    assert r.status_code == 422 and "password" in r.text
    assert "n.fourth" not in admin.get("/admin/users").text
    r = admin.post(
        "/admin/users/n.third/reset-password",
        data={"csrf_token": token, "password": "another-temp-88"},
    )
    assert r.status_code == 200
    r = admin.post("/admin/users/n.third/deactivate", data={"csrf_token": token})
    assert r.status_code == 200 and "deactivated" in r.text
    assert admin.post("/admin/users/n.third/deactivate", data={}).status_code == 403


def test_logout_ends_the_session(sqlite_site: Site) -> None:
    site = sqlite_site
    client = page_login(site, "n.alvarez")
    token = csrf_of(client.get("/ward").text)
    r = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?why=signed_out"
    assert client.get("/ward", follow_redirects=False).status_code == 303
    assert "Signed out." in client.get(r.headers["location"]).text


def test_signing_in_again_ends_the_session_the_browser_held(sqlite_site: Site) -> None:
    """A second person signing in on a shared tablet (or anyone who saw the old cookie) must
    not find the first session still alive behind the new one (ASVS 3.2.1)."""
    site = sqlite_site
    client = page_login(site, "n.alvarez")
    first = client.cookies["bedside_session"]
    page_login(site, "n.chen", client)  # the next person at the same tablet
    second = client.cookies["bedside_session"]
    assert second != first
    assert client.get("/api/session").json()["username"] == "n.chen"
    stale = site.client()
    old_cookie = {"Cookie": f"bedside_session={first}"}
    assert stale.get("/ward", headers=old_cookie, follow_redirects=False).status_code == 303
    # The JSON API rotates the same way.
    api = site.client()
    r = api.post("/api/session", json={"username": "n.alvarez", "password": PASSWORD})
    assert r.status_code == 200
    third = api.cookies["bedside_session"]
    r = api.post("/api/session", json={"username": "n.alvarez", "password": PASSWORD})
    assert r.status_code == 200 and api.cookies["bedside_session"] != third
    assert api.get("/api/session").status_code == 200  # the new one works
    gone = {"Cookie": f"bedside_session={third}"}
    assert site.client().get("/api/session", headers=gone).status_code == 401
