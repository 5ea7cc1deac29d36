"""The JSON API on SQLite and PostgreSQL: a whole dose, its rules, its error shape."""

from __future__ import annotations

import shutil
import subprocess

from workflow.dev.demo import _SIGNERS
from workflow.dev.walk import values_for

from .conftest import EVIL_NAME, PASSWORD, Site


def test_whole_dose_through_the_api_then_auditor_verifies(site: Site) -> None:
    view = site.walk_to("hold_checks")
    case_id = view.case.case_id
    clients = {}
    while True:
        view = site.bedside.load(case_id)
        step = view.case.next_step()
        if step is None:
            break
        who = _SIGNERS[step.id]
        if who not in clients:
            clients[who] = site.client(who)
        site.clock.advance(minutes=15 if step.id == "infusion_stop" else 3)
        body = {
            "expected_version": view.version,
            "values": values_for(view.case, step.id, site.clock.now()),
            "password": PASSWORD,
        }
        if step.blinded_against:
            body["username"] = who
        r = clients[who].post(f"/api/cases/{case_id}/steps/{step.id}", json=body)
        assert r.status_code == 200, r.text
    assert view.case.state == "completed"
    nurse = clients["n.alvarez"]
    records = nurse.get(f"/api/cases/{case_id}/records").json()
    assert {r["kind"] for r in records} >= {"administration"}
    pdf = nurse.get(f"/api/archive/{records[0]['sha256']}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

    auditor = site.client("a.ibrahim")
    found = auditor.get("/api/archive", params={"mrn": "MRN-7001"}).json()
    assert {r["sha256"] for r in found} == {r["sha256"] for r in records}
    result = auditor.post(f"/api/archive/{found[0]['sha256']}/verify").json()
    assert result["ok"] is True, result
    # A nurse cannot search the archive.
    assert nurse.get("/api/archive").status_code == 403


def test_stale_version_is_409_and_nothing_is_stored(site: Site) -> None:
    view = site.walk_to("hold_checks")
    case_id = view.case.case_id
    a, b = site.client("n.alvarez"), site.client("n.chen")
    values = values_for(view.case, "hold_checks", site.clock.now())
    body = {"expected_version": view.version, "values": values, "password": PASSWORD}
    assert a.post(f"/api/cases/{case_id}/steps/hold_checks", json=body).status_code == 200
    r = b.post(f"/api/cases/{case_id}/steps/hold_checks", json=body)
    assert r.status_code == 409
    assert r.json()["code"] == "conflict"
    assert "this case changed, reload" in r.json()["message"]
    assert site.bedside.load(case_id).version == view.version + 1


def test_bad_input_is_422_with_field_and_nothing_stored(site: Site) -> None:
    view = site.walk_to("hold_checks")
    case_id = view.case.case_id
    client = site.client("n.alvarez")
    values = values_for(view.case, "hold_checks", site.clock.now())
    values["spo2_pct"] = "lots"
    body = {"expected_version": view.version, "values": values, "password": PASSWORD}
    r = client.post(f"/api/cases/{case_id}/steps/hold_checks", json=body)
    assert r.status_code == 422
    assert r.json()["field"] == "spo2_pct" and r.json()["message"]
    assert site.bedside.load(case_id).version == view.version
    # Malformed JSON body: same error shape.
    r = client.post(f"/api/cases/{case_id}/steps/hold_checks", json={"values": {}})
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    assert site.bedside.load(case_id).version == view.version


def test_wrong_password_on_a_signature_is_refused(site: Site) -> None:
    view = site.walk_to("hold_checks")
    client = site.client("n.alvarez")
    values = values_for(view.case, "hold_checks", site.clock.now())
    body = {"expected_version": view.version, "values": values, "password": "wrong-password-1"}
    r = client.post(f"/api/cases/{view.case.case_id}/steps/hold_checks", json=body)
    assert r.status_code == 401 and r.json()["code"] == "bad_credentials"
    assert site.bedside.load(view.case.case_id).case.state == "hold_checks"


def test_hold_fires_with_its_values(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    client = site.client("n.alvarez")
    values = values_for(view.case, "hold_checks", site.clock.now())
    values["spo2_pct"] = "88"
    body = {"expected_version": view.version, "values": values, "password": PASSWORD}
    r = client.post(f"/api/cases/{view.case.case_id}/steps/hold_checks", json=body)
    assert r.status_code == 200
    data = r.json()
    assert data["state"] == "held" and data["on_hold"]
    assert any(h["values"].get("spo2_pct") == "88" for h in data["holds"])
    # Only a prescriber documents the decision.
    bad = client.post(
        f"/api/cases/{view.case.case_id}/exit",
        json={
            "expected_version": data["version"],
            "action": "resume",
            "reason": "criteria_met",
            "password": PASSWORD,
        },
    )
    assert bad.status_code == 403 and bad.json()["code"] == "wrong_role"
    # A wrong role writes nothing into the case (issue 11.11): the security log keeps it.
    version = site.bedside.load(view.case.case_id).version
    assert version == data["version"]
    refusals = site.bedside.identity.auth_events(username="n.alvarez")
    assert any(e.reason == "wrong_role" for e in refusals)
    dr = site.client("dr.okafor")
    ok = dr.post(
        f"/api/cases/{view.case.case_id}/exit",
        json={
            "expected_version": version,
            "action": "cancel",
            "reason": "dose_skipped_after_hold",
            "password": PASSWORD,
        },
    )
    assert ok.status_code == 200 and ok.json()["state"] == "cancelled", ok.text


def test_csrf_header_is_required_for_cookie_posts(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    client = site.client("n.alvarez")
    del client.headers["X-CSRF-Token"]
    values = values_for(view.case, "hold_checks", site.clock.now())
    body = {"expected_version": view.version, "values": values, "password": PASSWORD}
    r = client.post(f"/api/cases/{view.case.case_id}/steps/hold_checks", json=body)
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    assert site.bedside.load(view.case.case_id).version == view.version


def test_session_cookie_flags_and_idle_timeout(sqlite_site: Site) -> None:
    site = sqlite_site
    client = site.client()
    r = client.post("/api/session", json={"username": "n.alvarez", "password": PASSWORD})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    assert client.get("/api/ward").status_code == 200
    site.clock.advance(minutes=16)
    r = client.get("/api/ward")
    assert r.status_code == 401 and r.json()["code"] == "not_signed_in"
    # Over HTTPS the cookie is Secure.
    secure = site.client()
    secure.base_url = secure.base_url.copy_with(scheme="https")
    r = secure.post("/api/session", json={"username": "n.alvarez", "password": PASSWORD})
    assert "secure" in r.headers["set-cookie"].lower()


def test_lapsed_signing_session_needs_the_username(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    client = site.client("n.alvarez")
    # Keep the web session alive but let the 11.200 signing continuity lapse.
    for _ in range(4):
        site.clock.advance(minutes=5)
        assert client.get("/api/ward").status_code == 200
    assert client.get("/api/session").json()["signing_lapsed"] is True
    values = values_for(view.case, "hold_checks", site.clock.now())
    body = {"expected_version": view.version, "values": values, "password": PASSWORD}
    r = client.post(f"/api/cases/{view.case.case_id}/steps/hold_checks", json=body)
    assert r.status_code == 401 and r.json()["code"] == "session_ended"
    view = site.bedside.load(view.case.case_id)  # the refused attempt is in the case's trail
    body = {**body, "expected_version": view.version, "username": "n.alvarez"}
    r = client.post(f"/api/cases/{view.case.case_id}/steps/hold_checks", json=body)
    assert r.status_code == 200, r.text
    assert client.get("/api/session").json()["signing_lapsed"] is False


def test_roles_on_every_api_route(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    cid = view.case.case_id
    anon = site.client()
    routes = [
        ("get", "/api/ward"),
        ("get", "/api/pharmacy"),
        ("get", f"/api/cases/{cid}"),
        ("post", f"/api/cases/{cid}/steps/hold_checks"),
        ("post", f"/api/cases/{cid}/exit"),
        ("post", f"/api/cases/{cid}/corrections"),
        ("get", f"/api/cases/{cid}/label.pdf"),
        ("get", f"/api/cases/{cid}/records"),
        ("get", "/api/archive"),
        ("get", "/api/archive/" + "0" * 64),
        ("get", "/api/archive/" + "0" * 64 + "/pdf"),
        ("post", "/api/archive/" + "0" * 64 + "/verify"),
        ("get", "/api/users"),
        ("post", "/api/users"),
        ("post", "/api/users/n.chen/deactivate"),
        ("post", "/api/users/n.chen/reset-password"),
        ("get", "/api/session"),
        ("post", "/api/session/end"),
    ]
    for method, path in routes:
        r = getattr(anon, method)(path, **({"json": {}} if method == "post" else {}))
        assert r.status_code == 401, (path, r.status_code)
        assert r.json()["code"] == "not_signed_in"
    denied = {
        "a.ibrahim": [  # the auditor: no clinical or admin route
            ("get", "/api/ward"),
            ("get", "/api/pharmacy"),
            ("get", f"/api/cases/{cid}"),
            ("post", f"/api/cases/{cid}/steps/hold_checks"),
            ("get", "/api/users"),
        ],
        "t.mensah": [("get", "/api/ward"), ("get", "/api/archive"), ("post", "/api/users")],
        "n.chen": [
            ("get", "/api/pharmacy"),
            ("get", f"/api/cases/{cid}/label.pdf"),
            ("get", "/api/archive"),
            ("post", "/api/archive/" + "0" * 64 + "/verify"),
            ("get", "/api/users"),
            ("post", "/api/users/n.chen/deactivate"),
        ],
        "root": [("get", "/api/ward"), ("get", f"/api/cases/{cid}"), ("get", "/api/archive")],
    }
    for who, paths in denied.items():
        client = site.client(who)
        for method, path in paths:
            r = getattr(client, method)(path, **({"json": {}} if method == "post" else {}))
            assert r.status_code == 403, (who, path, r.status_code, r.text)
            assert r.json()["code"] == "forbidden"


def test_admin_users_api(sqlite_site: Site) -> None:
    site = sqlite_site
    admin = site.client("root")
    r = admin.post(
        "/api/users",
        json={
            "username": "n.new",
            "printed_name": "New Nurse",
            "roles": ["nurse"],
            "password": "a-long-temporary-1",
        },
    )
    assert r.status_code == 201 and r.json()["must_change_password"]
    assert (
        admin.post(
            "/api/users",
            json={
                "username": "n.new",
                "printed_name": "X",
                "roles": ["nurse"],
                "password": "another-long-pw-2",
            },
        ).status_code
        == 422
    )
    assert (
        admin.post(
            "/api/users",
            json={
                "username": "n.bad",
                "printed_name": "X",
                "roles": ["wizard"],
                "password": "another-long-pw-2",
            },
        ).json()["field"]
        == "role"
    )
    r = admin.post("/api/users/n.chen/reset-password", json={"password": "short"})
    assert r.status_code == 422 and r.json()["field"] == "password"
    r = admin.post("/api/users/n.chen/reset-password", json={"password": "a-new-temporary-9"})
    assert r.json()["must_change_password"] is True
    chen = site.client()
    r = chen.post("/api/session", json={"username": "n.chen", "password": "a-new-temporary-9"})
    assert r.status_code == 401 and r.json()["code"] == "password_change_required"
    nurse = site.client("n.alvarez")
    r = admin.post("/api/users/n.alvarez/deactivate")
    assert r.json()["active"] is False
    assert nurse.get("/api/ward").status_code == 401  # the live session ends too
    users = {u["username"]: u for u in admin.get("/api/users").json()}
    assert users["n.alvarez"]["active"] is False


def test_openapi_documents_every_api_route(sqlite_site: Site) -> None:
    spec = sqlite_site.client().get("/openapi.json").json()
    paths = spec["paths"]
    for p in (
        "/api/session",
        "/api/cases/{case_id}/steps/{step_id}",
        "/api/archive",
        "/api/archive/{sha}/verify",
        "/api/users",
        "/api/pharmacy",
        "/api/ward",
    ):
        assert p in paths
    step = paths["/api/cases/{case_id}/steps/{step_id}"]["post"]
    assert "409" in step["responses"] and "200" in step["responses"]
    assert not any(p.startswith("/cases") for p in paths)  # pages are not the API


def test_label_pdf_only_after_preparation_and_markup_stays_text(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("reconstitution")
    tech = site.client("t.mensah")
    r = tech.get(f"/api/cases/{view.case.case_id}/label.pdf")
    assert r.status_code == 422 and r.json()["code"] == "not_prepared"
    view = site.walk_to("pharmacy_verification", view)
    r = tech.get(f"/api/cases/{view.case.case_id}/label.pdf")
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", "-", "-"], input=r.content, capture_output=True, check=True
        ).stdout.decode()
        assert EVIL_NAME in text and "MRN-7001" in text and "Use before" in text
