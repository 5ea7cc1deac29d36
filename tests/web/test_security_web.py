"""Security of the pages and the JSON API (issue "Prove it", part 4; anchor OWASP ASVS 4.0.3
level 2, with 21 CFR 11.200/11.300 for signatures).

1. Every route, read from the app's own route table (a route added later is covered, and this
   file fails until the route's roles and a request that would change something are written
   down here): no session is 401 (API) or a redirect to the sign-in (pages); a wrong role is
   403; every POST without a CSRF token, with a forged one, with another user's or a signed-out
   session's token is 403 and the store is byte-for-byte what it was.
2. Sessions: a second person at the same tablet signs with their own id and password and the
   signature is theirs; signed-out and expired cookies are refused; a new session id at login.
3. Brute force through /login, POST /api/session and signatures: lockout after the policy's
   count, every attempt in ``auth_events``, the same answer for a username nobody holds.
4. No password, session token or CSRF token in the database, the log records, the pages or the
   PDFs after a dose walked through the pages.
5. Hostile names stay text on every page and in the PDFs; the security headers.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shutil
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from markupsafe import escape
from pyhanko.pdf_utils.generic import StreamObject
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import MetaData, select

from workflow.core.protocol import load_protocol
from workflow.dev.demo import _SIGNERS
from workflow.dev.walk import course_attestations, order_values, values_for
from workflow.identity import Credentials
from workflow.identity.policy import SecurityPolicy
from workflow.records.embed import extract_events
from workflow.resources import default_protocol_path
from workflow.service import CaseView

from .conftest import EVIL_NAME, PASSWORD, Site, csrf_of, form_of, version_of

COOKIE = "bedside_session"
LOGIN_COOKIE = "bedside_login_csrf"
HOST = "testserver.local"  # where the test client keeps the cookies the app sets

# Who is who in the demo installation (conftest adds "root", the administrator).
PEOPLE = {
    "n.alvarez": "nurse",
    "n.chen": "nurse",
    "dr.okafor": "prescriber",
    "t.mensah": "pharmacy_technician",
    "p.lindqvist": "pharmacist",
    "a.ibrahim": "auditor",
    "root": "admin",
}
CLINICAL = frozenset({"nurse", "prescriber", "pharmacist", "pharmacy_technician"})
WARD = frozenset({"nurse", "prescriber", "pharmacist"})
PHARMACY = frozenset({"pharmacy_technician", "pharmacist"})
AUDIT = frozenset({"auditor"})
READERS = CLINICAL | AUDIT
ADMIN = frozenset({"admin"})
ORDERS = frozenset({"prescriber"})  # the protocol's course_start and order roles
ANYONE = CLINICAL | AUDIT | ADMIN

# Left out of the route walk, and why.
SKIPPED = {
    "/openapi.json": "the API's description, public by design (README); it holds no data",
    "/docs": "Swagger UI, switched off (docs_url=None)",
    "/docs/oauth2-redirect": "belongs to Swagger UI, switched off",
    "/redoc": "ReDoc, switched off (redoc_url=None)",
    "/static": "the stylesheet and the optional script: public files, no data",
}
# Reached without a session by design, and why (each has its own test below).
PUBLIC = {
    ("GET", "/"): "sends to the sign-in, or to the signed-in person's home page",
    ("GET", "/login"): "the sign-in form",
    ("POST", "/login"): "signs in; its CSRF token is a double-submit cookie (no session yet)",
    ("POST", "/api/session"): "signs in; JSON only, so no cross-site form can post it",
}
# The roles each route serves: the README's audience table, written out as the specification.
ROUTE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/logout"): ANYONE,
    ("GET", "/ward"): WARD,
    ("GET", "/pharmacy"): PHARMACY,
    ("GET", "/pharmacy/formulary"): PHARMACY,
    ("POST", "/pharmacy/formulary"): frozenset({"pharmacist"}),
    ("GET", "/cases/{case_id}"): CLINICAL,
    ("GET", "/cases/{case_id}/photos/{sha}"): CLINICAL,
    ("POST", "/cases/{case_id}/steps/{step_id}"): CLINICAL,
    ("GET", "/cases/{case_id}/exit/{action}"): CLINICAL,
    ("POST", "/cases/{case_id}/exit"): CLINICAL,
    ("POST", "/cases/{case_id}/reject"): CLINICAL,
    ("POST", "/api/cases/{case_id}/rejections"): CLINICAL,
    ("POST", "/api/cases/{case_id}/steps/{step_id}/with-photos"): CLINICAL,
    ("GET", "/cases/{case_id}/label.pdf"): PHARMACY,
    ("GET", "/records/{sha}.pdf"): READERS,
    ("GET", "/archive"): AUDIT,
    ("GET", "/archive/{sha}"): AUDIT,
    ("POST", "/archive/{sha}/verify"): AUDIT,
    ("GET", "/admin/users"): ADMIN,
    ("GET", "/admin/wristband.pdf"): ADMIN,
    ("GET", "/admin/badge.pdf"): ADMIN,
    ("POST", "/admin/users"): ADMIN,
    ("GET", "/admin/users/{username}/deactivate"): ADMIN,
    ("POST", "/admin/users/{username}/deactivate"): ADMIN,
    ("POST", "/admin/users/{username}/reset-password"): ADMIN,
    ("GET", "/api/session"): ANYONE,
    ("POST", "/api/session/end"): ANYONE,
    ("GET", "/api/ward"): WARD,
    ("GET", "/api/pharmacy"): PHARMACY,
    ("GET", "/api/pending-orders"): CLINICAL,
    ("GET", "/api/cases/{case_id}"): CLINICAL,
    ("POST", "/api/cases/{case_id}/steps/{step_id}"): CLINICAL,
    ("POST", "/api/cases/{case_id}/sittings"): CLINICAL,
    ("POST", "/api/cases/{case_id}/exit"): CLINICAL,
    ("POST", "/api/cases/{case_id}/corrections"): CLINICAL,
    ("GET", "/api/cases/{case_id}/label.pdf"): PHARMACY,
    ("GET", "/api/cases/{case_id}/records"): READERS,
    ("GET", "/api/cases/{case_id}/records-state"): READERS,
    ("GET", "/api/archive"): AUDIT,
    ("GET", "/api/archive/{sha}"): AUDIT,
    ("GET", "/api/archive/{sha}/pdf"): READERS,
    ("POST", "/api/archive/{sha}/verify"): AUDIT,
    ("GET", "/api/users"): ADMIN,
    ("POST", "/api/users"): ADMIN,
    ("POST", "/api/users/{username}/deactivate"): ADMIN,
    ("POST", "/api/users/{username}/reset-password"): ADMIN,
    ("GET", "/api/cases/{case_id}/fhir"): READERS,
    ("POST", "/api/scan"): PHARMACY,
    ("POST", "/api/cases/{case_id}/bag-scan"): WARD,
    ("POST", "/cases/{case_id}/steps/{step_id}/balance"): PHARMACY,
    ("GET", "/api/reports/scan-failures"): AUDIT,
    ("GET", "/api/protocol/diagram.svg"): CLINICAL,
    ("GET", "/api/courses/{course_id}/timeline.svg"): CLINICAL,
    ("GET", "/patients"): CLINICAL,
    ("POST", "/patients"): ORDERS,
    ("GET", "/patients/{patient_id}"): CLINICAL,
    ("POST", "/patients/{patient_id}/courses"): ORDERS,
    ("POST", "/patients/{patient_id}/doses"): ORDERS,
    ("POST", "/api/patients/{mrn}/courses"): CLINICAL,
    ("GET", "/api/patients/{mrn}/course"): CLINICAL,
    ("POST", "/api/courses/{course_id}/doses"): CLINICAL,
    ("POST", "/api/fhir/MedicationRequest"): frozenset({"prescriber", "pharmacist"}),
    ("GET", "/api/pharmacy/interface-events"): PHARMACY,
}


def route_table(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, HEAD aside, skips left out."""
    try:
        from fastapi.routing import iter_route_contexts

        found = [(rc.path, rc.methods) for rc in iter_route_contexts(app.routes)]
    except ImportError:  # FastAPI before route contexts: the table is flat
        found = [(getattr(r, "path", None), getattr(r, "methods", None)) for r in app.routes]
    out = []
    for path, methods in found:
        assert path is not None, "a route without a path: classify it here"
        if any(path == p or path.startswith(p + "/") for p in SKIPPED):
            continue
        assert methods, f"{path}: a mount or websocket nobody classified (add it to SKIPPED?)"
        out.extend((m, path) for m in sorted(methods) if m != "HEAD")
    return out


def is_api(path: str) -> bool:
    return path.startswith("/api/")


# --- an installation with something behind every route -------------------------------------


@dataclass
class Ctx:
    site: Site
    case_id: str  # at hold_checks
    course_id: str
    sha: str  # an archived record (a cancelled dose's)
    mrn: str = ""  # a patient with no course yet
    patient_id: str = ""  # another with no course yet (the page's course start)
    dose_patient: str = ""  # a patient whose course has no dose open (the page's order)
    cases: dict[str, str] = field(default_factory=dict)  # purpose -> case id
    n: int = 0

    def fill(self, template: str) -> str:
        values = {
            "case_id": self.case_id,
            "step_id": "hold_checks",
            "sha": self.sha,
            "username": "n.target",
            "course_id": self.course_id,
            "mrn": self.mrn,
            "patient_id": self.patient_id,
            "action": "cancel",
        }

        def one(m: re.Match[str]) -> str:
            assert m.group(1) in values, f"{template}: no test value for {{{m.group(1)}}}"
            return values[m.group(1)]

        return re.sub(r"\{(\w+)(?::\w+)?\}", one, template)


def cred(username: str, password: str = PASSWORD) -> Credentials:
    return Credentials(username, password)


def new_case(site: Site, mrn: str, given: str = "Sam", family: str = "Probe") -> CaseView:
    """A patient of its own with a case walked to hold_checks (signed through the service)."""
    b = site.bedside
    patient = b.store.add_patient(
        mrn=mrn, family_name=family, given_name=given, date_of_birth="1970-05-05", created_by="t"
    )
    p = b.protocol
    course = b.store.start_course(
        patient.id, protocol_id=p.id, protocol_version=p.version, protocol_hash=p.content_hash
    )
    view = b.open_case(course.id, site.clock.now() + timedelta(hours=2), cred("dr.okafor"))
    site.clock.advance(minutes=5)
    weighed = site.clock.now() - timedelta(hours=3)
    view = b.sign_step(
        view.case.case_id, view.version, "order", order_values("68", weighed), cred("dr.okafor")
    )
    return site.walk_to("hold_checks", view)


def prepare(site: Site, purposes: tuple[str, ...] = ()) -> Ctx:
    """A case at hold_checks, an archived record, a user to act on, and one case per purpose.
    Everything that moves the clock happens here, before anyone signs in (idle timeout)."""
    main = site.walk_to("hold_checks")
    done = new_case(site, "MRN-7900")
    cancelled = site.bedside.side_exit(
        done.case.case_id, done.version, "cancel", "patient_unavailable", "", cred("n.alvarez")
    )
    assert cancelled.case.closed
    records = site.bedside.store.search_archive(case_id=done.case.case_id)
    assert records, "a cancelled dose is archived"
    # A patient without a course (to start one) and a course with no dose open (to open one).
    b = site.bedside
    fresh = b.store.add_patient(
        mrn="MRN-7990",
        family_name="Fresh",
        given_name="Pat",
        date_of_birth="1971-01-01",
        created_by="t",
    )
    other = b.store.add_patient(
        mrn="MRN-7991",
        family_name="Idle",
        given_name="Pat",
        date_of_birth="1972-02-02",
        created_by="t",
    )
    p = b.protocol
    idle = b.store.start_course(
        other.id, protocol_id=p.id, protocol_version=p.version, protocol_hash=p.content_hash
    )
    page_start = b.store.add_patient(
        mrn="MRN-7992",
        family_name="Page",
        given_name="Pat",
        date_of_birth="1973-03-03",
        created_by="t",
    )
    page_dose = b.store.add_patient(
        mrn="MRN-7993",
        family_name="Order",
        given_name="Pat",
        date_of_birth="1974-04-04",
        created_by="t",
    )
    b.store.start_course(
        page_dose.id, protocol_id=p.id, protocol_version=p.version, protocol_hash=p.content_hash
    )
    ctx = Ctx(
        site, main.case.case_id, idle.id, records[0].sha256, fresh.mrn, page_start.id, page_dose.id
    )
    for i, purpose in enumerate(purposes):
        view = new_case(site, f"MRN-79{10 + i}")
        if purpose == "correction":  # a signed hold_checks to correct
            values = values_for(view.case, "hold_checks", site.clock.now())
            site.bedside.sign_step(
                view.case.case_id, view.version, "hold_checks", values, cred("n.alvarez")
            )
        if purpose in ("page_reject", "api_reject"):  # a preparation the pharmacist may send back
            view = site.walk_to("pharmacy_verification", view)
        if purpose == "api_sitting":  # a bag at the bedside, to hang and start
            view = site.walk_to("pre_infusion", view)
        ctx.cases[purpose] = view.case.case_id
    for name in ("n.target", "n.target1", "n.target2", "n.target3", "n.target4"):
        site.bedside.identity.add_user(name, f"Target Nurse {name}", ["nurse"], PASSWORD, by="test")
    return ctx


def sign_in(site: Site, username: str, password: str = PASSWORD) -> tuple[TestClient, str]:
    """A client signed in through the API (no default CSRF header) and its CSRF token."""
    client = site.client()
    r = client.post("/api/session", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return client, str(r.json()["csrf_token"])


def signed_out_token(site: Site, username: str) -> str:
    """The CSRF token of a session of ``username`` that has since been signed out."""
    client, token = sign_in(site, username)
    r = client.post("/api/session/end", headers={"X-CSRF-Token": token})
    assert r.status_code == 204
    return token


def send(
    client: TestClient, method: str, path: str, body: dict[str, Any], csrf: str | None
) -> Response:
    if method == "GET":
        return client.get(path, follow_redirects=False)
    if is_api(path):
        headers = {"X-CSRF-Token": csrf} if csrf is not None else {}
        if path.endswith("/with-photos"):  # multipart: the step's JSON body as part "step"
            step = (None, json.dumps(body), "application/json")
            return client.post(path, files={"step": step}, headers=headers, follow_redirects=False)
        return client.post(path, json=body, headers=headers, follow_redirects=False)
    data = {**body, **({"csrf_token": csrf} if csrf is not None else {})}
    return client.post(path, data=data, follow_redirects=False)


def snapshot(site: Site) -> dict[str, list[str]]:
    """Every row of every table, as text: what "nothing stored" is compared against."""
    engine = site.bedside.store.engine
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        return {
            t.name: sorted(repr(tuple(row)) for row in conn.execute(select(t)))
            for t in meta.sorted_tables
        }


# --- a request per POST route that would change something (or act) if it got through ------

Built = tuple[str, str, dict[str, Any], tuple[int, ...]]  # who, path, body, success statuses


def _step_body(ctx: Ctx, purpose: str, api: bool, suffix: str = "") -> Built:
    view = ctx.site.bedside.load(ctx.cases[purpose])
    values = values_for(view.case, "hold_checks", ctx.site.clock.now())
    path = f"{'/api' if api else ''}/cases/{view.case.case_id}/steps/hold_checks{suffix}"
    if api:
        body = {"expected_version": view.version, "values": values, "password": PASSWORD}
        return "n.alvarez", path, body, (200,)
    form = {"expected_version": str(view.version), "password": PASSWORD, **form_of(values)}
    return "n.alvarez", path, form, (303,)


def _sitting_body(ctx: Ctx) -> Built:
    """The bedside sitting (identify, hang and start), both steps under one signature."""
    view = ctx.site.bedside.load(ctx.cases["api_sitting"])
    now = ctx.site.clock.now()
    steps = [
        {"step": sid, "values": values_for(view.case, sid, now)}
        for sid in ("pre_infusion", "infusion_start")
    ]
    body = {"expected_version": view.version, "steps": steps, "password": PASSWORD}
    return "n.alvarez", f"/api/cases/{view.case.case_id}/sittings", body, (200,)


def _exit_body(ctx: Ctx, purpose: str, api: bool) -> Built:
    view = ctx.site.bedside.load(ctx.cases[purpose])
    path = f"{'/api' if api else ''}/cases/{view.case.case_id}/exit"
    body: dict[str, Any] = {
        "expected_version": view.version if api else str(view.version),
        "action": "cancel",
        "reason": "patient_unavailable",
        "password": PASSWORD,
    }
    return "n.alvarez", path, body, (200,) if api else (303,)


def _reject_body(ctx: Ctx) -> Built:
    view = ctx.site.bedside.load(ctx.cases["page_reject"])
    form = {
        "expected_version": str(view.version),
        "send_back_reconstitution": "Send back to be redone",
        "reject_reason": "the vial label is not readable in the photo",
        "password": PASSWORD,
    }
    return "p.lindqvist", f"/cases/{view.case.case_id}/reject", form, (303,)


def _api_reject_body(ctx: Ctx) -> Built:
    view = ctx.site.bedside.load(ctx.cases["api_reject"])
    body = {
        "expected_version": view.version,
        "step": "dilution",
        "reason": "the bag label is not in the photo",
        "password": PASSWORD,
    }
    return "p.lindqvist", f"/api/cases/{view.case.case_id}/rejections", body, (200,)


def _correction_body(ctx: Ctx) -> Built:
    view = ctx.site.bedside.load(ctx.cases["correction"])
    body = {
        "expected_version": view.version,
        "target_seq": view.case.current["order"].seq,
        "values": {"dosing_weight_kg": "70"},
        "reason": "weighed again",
        "password": PASSWORD,
    }
    return "dr.okafor", f"/api/cases/{view.case.case_id}/corrections", body, (200,)


def _new_user(ctx: Ctx, api: bool) -> Built:
    ctx.n += 1
    name = f"n.probe{ctx.n}"
    printed = f"P {ctx.n}"  # no two active accounts print the same name (issue 13.9)
    if api:
        body = {"username": name, "printed_name": printed, "roles": ["nurse"], "password": "x" * 14}
        return "root", "/api/users", body, (201,)
    form = {"username": name, "printed_name": printed, "roles": "nurse", "password": "x" * 14}
    return "root", "/admin/users", form, (303,)


POSTS: dict[tuple[str, str], Callable[[Ctx], Built]] = {
    ("POST", "/logout"): lambda c: ("n.alvarez", "/logout", {}, (303,)),
    ("POST", "/cases/{case_id}/steps/{step_id}"): lambda c: _step_body(c, "page_step", False),
    ("POST", "/cases/{case_id}/exit"): lambda c: _exit_body(c, "page_exit", False),
    ("POST", "/cases/{case_id}/reject"): lambda c: _reject_body(c),
    ("POST", "/api/cases/{case_id}/rejections"): lambda c: _api_reject_body(c),
    ("POST", "/archive/{sha}/verify"): lambda c: (
        "a.ibrahim",
        f"/archive/{c.sha}/verify",
        {},
        (200,),
    ),
    ("POST", "/admin/users"): lambda c: _new_user(c, False),
    ("POST", "/pharmacy/formulary"): lambda c: (
        "p.lindqvist",
        "/pharmacy/formulary",
        {
            "gtin": "00614141000418",
            "kind": "vial",
            "description": "Probe vial",
            "strength": "1 unit",
            "password": PASSWORD,
        },
        (303,),
    ),
    ("POST", "/admin/users/{username}/deactivate"): lambda c: (
        "root",
        "/admin/users/n.target1/deactivate",
        {},
        (303,),
    ),
    ("POST", "/admin/users/{username}/reset-password"): lambda c: (
        "root",
        "/admin/users/n.target2/reset-password",
        {"password": "a-new-temporary-9"},
        (303,),
    ),
    ("POST", "/api/session/end"): lambda c: ("n.alvarez", "/api/session/end", {}, (204,)),
    ("POST", "/api/cases/{case_id}/steps/{step_id}"): lambda c: _step_body(c, "api_step", True),
    ("POST", "/api/cases/{case_id}/steps/{step_id}/with-photos"): lambda c: _step_body(
        c, "api_photo_step", True, "/with-photos"
    ),
    ("POST", "/api/cases/{case_id}/sittings"): lambda c: _sitting_body(c),
    ("POST", "/api/cases/{case_id}/exit"): lambda c: _exit_body(c, "api_exit", True),
    ("POST", "/api/cases/{case_id}/corrections"): _correction_body,
    ("POST", "/api/archive/{sha}/verify"): lambda c: (
        "a.ibrahim",
        f"/api/archive/{c.sha}/verify",
        {},
        (200,),
    ),
    ("POST", "/api/users"): lambda c: _new_user(c, True),
    ("POST", "/api/users/{username}/deactivate"): lambda c: (
        "root",
        "/api/users/n.target3/deactivate",
        {},
        (200,),
    ),
    ("POST", "/api/users/{username}/reset-password"): lambda c: (
        "root",
        "/api/users/n.target4/reset-password",
        {"password": "a-new-temporary-9"},
        (200,),
    ),
    # Reads only, but every POST carries the token: a route added later needs no judgement.
    # 422 "unreadable" is the scan's own answer, past the session, role and token checks.
    ("POST", "/api/scan"): lambda c: (
        "p.lindqvist",
        "/api/scan",
        {"item": "vial", "text": "hello"},
        (422,),
    ),
    # The bag's code checked against a dose: 422 "unreadable" likewise.
    ("POST", "/api/cases/{case_id}/bag-scan"): lambda c: (
        "n.alvarez",
        f"/api/cases/{c.case_id}/bag-scan",
        {"text": "hello"},
        (422,),
    ),
    # The shipped protocol weighs nothing: 422 naming the weight asked for, past every check.
    ("POST", "/cases/{case_id}/steps/{step_id}/balance"): lambda c: (
        "t.mensah",
        f"/cases/{c.case_id}/steps/hold_checks/balance",
        {"weigh": "nothing"},
        (422,),
    ),
}
ATTESTED = course_attestations(load_protocol(default_protocol_path()))
POSTS[("POST", "/api/patients/{mrn}/courses")] = lambda c: (
    "dr.okafor",
    f"/api/patients/{c.mrn}/courses",
    {"attestations": ATTESTED, "password": PASSWORD},
    (201,),
)
POSTS[("POST", "/api/courses/{course_id}/doses")] = lambda c: (
    "dr.okafor",
    f"/api/courses/{c.course_id}/doses",
    {"password": PASSWORD},
    (201,),
)
POSTS[("POST", "/patients")] = lambda c: (
    "dr.okafor",
    "/patients",
    {"mrn": "MRN-7999", "family_name": "New", "given_name": "Pat", "date_of_birth": "1975-05-05"},
    (303,),
)
POSTS[("POST", "/patients/{patient_id}/courses")] = lambda c: (
    "dr.okafor",
    f"/patients/{c.patient_id}/courses",
    {"password": PASSWORD, **{f"a_{a}": "on" for a in ATTESTED}},
    (303,),
)
POSTS[("POST", "/patients/{patient_id}/doses")] = lambda c: (
    "dr.okafor",
    f"/patients/{c.dose_patient}/doses",
    {"password": PASSWORD, **_order_form(c)},
    (303,),
)


def _order_form(c: Ctx) -> dict[str, str]:
    """The order as the patient page posts it (datetime-local is the site's wall time)."""
    weighed = c.site.clock.now().astimezone(c.site.bedside.tz) - timedelta(hours=1)
    values = order_values("68", weighed)
    values["weight_measured_at"] = weighed.strftime("%Y-%m-%dT%H:%M")
    return {f"v_{k}": str(v) for k, v in values.items()}


# An order the interface reads and refuses (400 OperationOutcome): past session, role, token.
POSTS[("POST", "/api/fhir/MedicationRequest")] = lambda c: (
    "dr.okafor",
    "/api/fhir/MedicationRequest",
    {"resourceType": "Patient"},
    (400,),
)
PURPOSES = (
    "page_step",
    "page_exit",
    "api_step",
    "api_sitting",
    "api_photo_step",
    "api_exit",
    "correction",
    "page_reject",
    "api_reject",
)


# --- 1. every route ------------------------------------------------------------------------


def test_every_route_is_classified(sqlite_site: Site) -> None:
    routes = set(route_table(sqlite_site.app))
    assert len(routes) >= 40  # the table was read, not an empty list
    unknown = routes - set(ROUTE_ROLES) - set(PUBLIC)
    assert not unknown, f"new routes: give them roles in ROUTE_ROLES (and POSTS): {unknown}"
    stale = (set(ROUTE_ROLES) | set(PUBLIC)) - routes
    assert not stale, f"routes this file lists that the app no longer has: {stale}"
    posts = {r for r in routes if r[0] == "POST"} - set(PUBLIC)
    assert posts == set(POSTS), "every POST route needs a request in POSTS"
    assert not {r for r in routes if r[0] not in ("GET", "POST")}, "only GET and POST exist"


def test_every_route_needs_a_live_session(sqlite_site: Site) -> None:
    site = sqlite_site
    ctx = prepare(site)
    routes = [r for r in route_table(site.app) if r not in PUBLIC]
    # Four ways to have no live session: none, a made-up token, signed out, expired.
    forged = site.client()
    forged.cookies.set(COOKIE, secrets.token_urlsafe(32), domain=HOST)
    ended, token = sign_in(site, "n.alvarez")
    assert ended.post("/api/session/end", headers={"X-CSRF-Token": token}).status_code == 204
    expired, _ = sign_in(site, "n.chen")
    site.clock.advance(minutes=16)  # past the 15-minute idle timeout
    clients = {"none": site.client(), "forged": forged, "ended": ended, "expired": expired}
    for kind, client in clients.items():
        before = snapshot(site) if kind != "expired" else None  # expiry ends the row once
        for method, template in routes:
            path = ctx.fill(template)
            r = send(client, method, path, {}, "0" * 64)
            where = (kind, method, path, r.status_code, r.text[:200])
            if is_api(path):
                assert r.status_code == 401, where
                body = r.json()
                assert body["code"] == "not_signed_in" and body["message"], where
                assert set(body) <= {"code", "message", "field", "details", "fields"}, where
            else:
                assert r.status_code == 303, where
                location = r.headers["location"]
                if method == "GET":
                    assert location.startswith("/login?next=" + quote(path)), where
                else:
                    assert location.startswith("/login"), where
        if before is not None:
            assert snapshot(site) == before, kind
    # The expired session ended for good: the clock does not need to move back for it to stay so.
    assert expired.get("/api/session").status_code == 401
    # The public routes answer without a session.
    anon = site.client()
    assert anon.get("/", follow_redirects=False).headers["location"] == "/login"
    assert anon.get("/login").status_code == 200


def test_wrong_role_is_403_on_every_route_and_changes_nothing(sqlite_site: Site) -> None:
    site = sqlite_site
    ctx = prepare(site, PURPOSES)
    signed = {who: sign_in(site, who) for who in PEOPLE}
    before = snapshot(site)
    checked = 0
    for method, template in route_table(site.app):
        if (method, template) in PUBLIC:
            continue
        roles = ROUTE_ROLES[(method, template)]
        if method == "POST":
            _who, path, body, _ok = POSTS[(method, template)](ctx)
        else:
            path, body = ctx.fill(template), {}
        for who, role in PEOPLE.items():
            client, token = signed[who]
            if role in roles:
                if method == "GET":  # allowed: past the role check (200, or 404/422 on data)
                    r = send(client, method, path, body, token)
                    assert r.status_code not in (401, 403), (who, path, r.status_code, r.text)
                continue
            r = send(client, method, path, body, token)
            assert r.status_code == 403, (who, method, path, r.status_code, r.text[:300])
            if is_api(path):
                assert r.json()["code"] == "forbidden", (who, path, r.text)
            checked += 1
    assert checked > 100
    assert snapshot(site) == before


def test_every_post_refuses_missing_forged_and_replayed_csrf(sqlite_site: Site) -> None:
    site = sqlite_site
    ctx = prepare(site, PURPOSES)
    posts = [r for r in route_table(site.app) if r[0] == "POST" and r not in PUBLIC]
    for route in posts:
        who, path, body, ok = POSTS[route](ctx)
        client, token = sign_in(site, who)
        _other, others = sign_in(site, "n.chen" if who != "n.chen" else "n.alvarez")
        stale = signed_out_token(site, who)
        attempts = {
            "missing": None,
            "empty": "",
            "forged": secrets.token_hex(32),
            "the session cookie itself": client.cookies[COOKIE],
            "another user's": others,
            "a signed-out session's": stale,
        }
        before = snapshot(site)
        for label, sent in attempts.items():
            r = send(client, "POST", path, body, sent)
            assert r.status_code == 403, (label, path, r.status_code, r.text[:300])
            if is_api(path):
                assert r.json()["code"] == "csrf_failed", (label, path, r.text)
            else:
                assert "security token" in r.text, (label, path)
        assert snapshot(site) == before, path
        # The same request with the session's own token goes through: the body was good.
        r = send(client, "POST", path, body, token)
        assert r.status_code in ok, (path, r.status_code, r.text[:500])


def test_sign_in_routes_resist_cross_site_posts(sqlite_site: Site) -> None:
    site = sqlite_site
    before = snapshot(site)
    # POST /login: the token must match the double-submit cookie the form came with.
    client = site.client()
    page = client.get("/login")
    good = {"username": "n.alvarez", "password": PASSWORD}
    r = client.post("/login", data=good, follow_redirects=False)
    assert r.status_code == 403 and COOKIE not in client.cookies
    r = client.post("/login", data={**good, "csrf_token": "0" * 32}, follow_redirects=False)
    assert r.status_code == 403 and COOKIE not in client.cookies
    stranger = site.client()  # a cross-site form: a token, but not this browser's cookie
    r = stranger.post("/login", data={**good, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 403 and COOKIE not in stranger.cookies
    # POST /api/session takes JSON only: a cross-site form (text/plain, urlencoded) cannot.
    raw = json.dumps({"username": "n.alvarez", "password": PASSWORD})
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        r = site.client().post("/api/session", content=raw, headers={"content-type": kind})
        assert r.status_code == 422 and COOKIE not in r.cookies, (kind, r.status_code)
    assert snapshot(site) == before
    # Regression: the form re-shown after a refused token works (it used to carry a token
    # matching no cookie, so the next try was refused again).
    retry = client.post("/login", data={**good, "csrf_token": "x"})
    assert retry.status_code == 403 and "sign-in form expired" in retry.text
    r = client.post(
        "/login", data={**good, "csrf_token": csrf_of(retry.text)}, follow_redirects=False
    )
    assert r.status_code == 303 and COOKIE in client.cookies, r.text[:300]


# --- 2. whose signature, whose session ---------------------------------------------------

ASH_PW = "ash-own-password-1"  # the test accounts' own passwords
BAY_PW = "bay-own-password-2"


def session_row(site: Site, client: TestClient) -> Any:
    from workflow.store import web_sessions

    return web_sessions.get(site.bedside.store.engine, client.cookies[COOKIE])


def test_a_second_person_at_the_tablet_signs_as_themselves(site: Site) -> None:
    """11.200(a)(1): each signature takes both components of the person signing; 11.300: the
    password proves who signs, so the record names them, whoever's session the tablet holds."""
    identity = site.bedside.identity
    identity.add_user("n.ash", "Ash Nurse, RN", ["nurse"], ASH_PW, by="test")
    identity.add_user("n.bay", "Bay Nurse, RN", ["nurse"], BAY_PW, by="test")
    view = site.walk_to("hold_checks")
    cid = view.case.case_id
    ash, token = sign_in(site, "n.ash", ASH_PW)
    ash.headers["X-CSRF-Token"] = token
    own_session = session_row(site, ash)
    url = f"/api/cases/{cid}/steps/hold_checks"
    values = values_for(view.case, "hold_checks", site.clock.now())

    def body(password: str, username: str | None = None) -> dict[str, Any]:
        out = {"expected_version": site.bedside.load(cid).version, "values": values}
        return {**out, "password": password, **({"username": username} if username else {})}

    # Ash's session, Bay's id, Ash's password: refused, and counted against Bay's account.
    r = ash.post(url, json=body(ASH_PW, "n.bay"))
    assert r.status_code == 401 and r.json()["code"] == "bad_credentials"
    assert identity.get_user("n.bay").failed_attempts == 1
    assert identity.get_user("n.ash").failed_attempts == 0
    # Ash's session, no id, Bay's password: the session's owner is implied, so refused too.
    r = ash.post(url, json=body(BAY_PW))
    assert r.status_code == 401 and identity.get_user("n.ash").failed_attempts == 1
    # Bay's own id and password at Ash's tablet: Bay signed.
    r = ash.post(url, json=body(BAY_PW, "N.Bay "))
    assert r.status_code == 200, r.text
    signed = site.bedside.load(cid).case.current["hold_checks"]
    assert signed.signer.name == "Bay Nurse, RN" and signed.signer.role == "nurse"
    assert signed.signer.user_id == identity.get_user("n.bay").id
    assert identity.get_user("n.bay").failed_attempts == 0
    failed = [e for e in site.bedside.load(cid).case.events if e.type == "signature_failed"]
    assert [e.data["username"] for e in failed] == ["n.bay", "n.ash"]
    # Bay's signature does not extend Ash's continuous signing session.
    after = session_row(site, ash)
    assert after.signing_last_used_at == own_session.signing_last_used_at
    assert after.user_id == own_session.user_id
    ok = identity.auth_events(username="n.bay", outcome="ok")
    assert ok[0].action == "sign" and ok[0].user_id == identity.get_user("n.bay").id

    # The blinded second check on a page: the same tablet, Bay types id and password.
    view = site.walk_to("double_check_first", site.bedside.load(cid))
    ash, token = sign_in(site, "n.ash", ASH_PW)  # the walk outlasted the idle timeout
    ash.headers["X-CSRF-Token"] = token
    first = values_for(view.case, "double_check_first", site.clock.now())
    r = ash.post(
        f"/api/cases/{cid}/steps/double_check_first",
        json={"expected_version": view.version, "values": first, "password": ASH_PW},
    )
    assert r.status_code == 200, r.text
    page = ash.get(f"/cases/{cid}")
    assert 'name="username"' in page.text
    view = site.bedside.load(cid)
    second = form_of(values_for(view.case, "double_check_second", site.clock.now()))
    form = {"csrf_token": csrf_of(page.text), "expected_version": version_of(page.text)}
    r = ash.post(
        f"/cases/{cid}/steps/double_check_second",
        data={**form, **second, "username": "n.bay", "password": BAY_PW},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:2000]
    case = site.bedside.load(cid).case
    assert case.current["double_check_second"].signer.name == "Bay Nurse, RN"
    assert case.current["double_check_first"].signer.name == "Ash Nurse, RN"


def test_signed_out_and_expired_cookies_stay_dead(sqlite_site: Site) -> None:
    site = sqlite_site
    client = site.client()
    page = client.get("/login")
    r = client.post(
        "/login",
        data={"username": "n.alvarez", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
    )
    cookie = client.cookies[COOKIE]
    r = client.post("/logout", data={"csrf_token": csrf_of(r.text)}, follow_redirects=False)
    assert r.status_code == 303 and COOKIE not in client.cookies
    from workflow.store import web_sessions

    ended = web_sessions.get(site.bedside.store.engine, cookie)
    assert ended is not None and ended.ended_at is not None  # ended on the server, not only here
    replay = site.client()
    replay.cookies.set(COOKIE, cookie, domain=HOST)
    assert replay.get("/api/session").status_code == 401
    assert replay.get("/ward", follow_redirects=False).headers["location"].startswith("/login")
    # Expired: ended by the server on first use after the idle timeout, and ended for good.
    idle, _ = sign_in(site, "n.chen")
    site.clock.advance(minutes=15, seconds=1)
    r = idle.get("/api/ward")
    assert r.status_code == 401 and "without use" in r.json()["message"]
    assert session_row(site, idle).ended_at is not None
    assert idle.get("/api/ward").status_code == 401


def test_session_id_is_new_at_every_sign_in(sqlite_site: Site) -> None:
    """No session fixation: a token planted before sign-in is never the one signed in."""
    site = sqlite_site
    planted = secrets.token_urlsafe(32)
    victim = site.client()
    victim.cookies.set(COOKIE, planted, domain=HOST)
    page = victim.get("/login")
    r = victim.post(
        "/login",
        data={"username": "n.alvarez", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    fresh = victim.cookies[COOKIE]
    assert fresh != planted
    attacker = site.client()
    attacker.cookies.set(COOKIE, planted, domain=HOST)
    assert attacker.get("/api/session").status_code == 401
    # The attacker's own live session planted in the victim's browser: the victim's sign-in
    # gets a new id, and ends the session the browser presented (the attacker's), so nothing
    # the victim does afterwards can be seen or ridden through the planted token.
    attacker, _ = sign_in(site, "n.chen")
    theirs = attacker.cookies[COOKIE]
    victim = site.client()
    victim.cookies.set(COOKIE, theirs, domain=HOST)
    r = victim.post("/api/session", json={"username": "n.alvarez", "password": PASSWORD})
    assert r.status_code == 200 and victim.cookies[COOKIE] not in (theirs, fresh)
    assert victim.get("/api/session").json()["username"] == "n.alvarez"
    assert attacker.get("/api/session").status_code == 401
    # Each sign-in of the same person is a new session with its own CSRF token.
    one, t1 = sign_in(site, "n.alvarez")
    two, t2 = sign_in(site, "n.alvarez")
    assert one.cookies[COOKIE] != two.cookies[COOKIE] and t1 != t2


# --- 3. brute force ----------------------------------------------------------------------

WRONG = [f"Wrong-guess-{i:04d}" for i in range(1, 7)]


def alert_text(html: str) -> str:
    m = re.search(r'<div class="alert error"[^>]*>(.*?)</div>', html, re.S)
    assert m, "no error shown"
    return " ".join(re.sub(r"<[^>]+>", " ", m.group(1)).split())


def test_policy_is_the_one_these_tests_count_on(sqlite_site: Site) -> None:
    policy = sqlite_site.bedside.identity.policy
    assert policy == SecurityPolicy()
    assert policy.max_failed_attempts == 5 and policy.lockout == timedelta(minutes=15)


def test_brute_force_at_the_sign_in_page(sqlite_site: Site) -> None:
    site = sqlite_site
    tries = site.bedside.identity.policy.max_failed_attempts

    def attack(username: str) -> list[tuple[int, str]]:
        client = site.client()
        page = client.get("/login")
        seen = []
        for guess in [*WRONG[:tries], PASSWORD]:
            # Each try from the form the last answer showed (as a person would).
            data = {"username": username, "password": guess, "csrf_token": csrf_of(page.text)}
            page = client.post("/login", data=data, follow_redirects=False)
            seen.append((page.status_code, alert_text(page.text)))
        assert COOKIE not in client.cookies
        return seen

    real = attack("n.chen")
    ghost = attack("n.nobody")  # no such account
    # Each refusal says how many tries are left (the policy's words), the last one the lock.
    said = [site.bedside.identity.policy.refused_message(n) for n in range(1, tries + 1)]
    assert real[:tries] == [(401, f"Not done: {words}") for words in said]
    assert "4 tries left before a 15-minute lockout" in said[0]
    assert "Locked for 15 minutes after 5 tries" in said[-1]
    assert real[tries][0] == 401 and "locked until" in real[tries][1]
    assert ghost == real  # the answers do not tell which username exists
    for who, wrong in (("n.chen", "wrong_password"), ("n.nobody", "unknown_user")):
        events = site.bedside.identity.auth_events(username=who)
        refused = [e.reason for e in events if e.outcome == "refused" and e.action == "login"]
        assert refused == ["account_locked"] + [wrong] * tries, (who, refused)
        assert [e.action for e in events].count("locked") == 1
    # After the lockout the person signs in again; the real account was never weakened.
    site.clock.advance(minutes=15, seconds=1)
    client = site.client()
    page = client.get("/login")
    r = client.post(
        "/login",
        data={"username": "n.chen", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303 and COOKIE in client.cookies


def test_brute_force_at_the_api(sqlite_site: Site) -> None:
    site = sqlite_site
    tries = site.bedside.identity.policy.max_failed_attempts

    def attack(username: str) -> list[tuple[int, dict[str, Any]]]:
        client = site.client()
        seen = []
        for guess in [*WRONG[:tries], PASSWORD]:
            r = client.post("/api/session", json={"username": username, "password": guess})
            seen.append((r.status_code, r.json()))
        assert COOKIE not in client.cookies
        return seen

    real = attack("n.alvarez")
    ghost = attack("x.ghost")
    policy = site.bedside.identity.policy
    wrong = [
        {"code": "bad_credentials", "message": policy.refused_message(n)}
        for n in range(1, tries + 1)
    ]
    assert real[:tries] == [(401, w) for w in wrong]
    assert real[tries][0] == 401 and real[tries][1]["code"] == "account_locked"
    assert ghost == real
    refused = site.bedside.identity.auth_events(username="n.alvarez", outcome="refused")
    assert len(refused) == tries + 1
    assert site.bedside.identity.get_user("n.alvarez").locked_until is not None


def test_wrong_passwords_on_signatures_count_toward_the_lockout(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    cid = view.case.case_id
    identity = site.bedside.identity
    tries = identity.policy.max_failed_attempts
    values = values_for(view.case, "hold_checks", site.clock.now())
    # On the page first. Regression: the form shown again after the refusal carries the
    # case's new version (the refusal is in its trail), so the next try is not a 409.
    client, token = sign_in(site, "n.alvarez")
    page = client.get(f"/cases/{cid}")
    form = {**form_of(values), "csrf_token": csrf_of(page.text)}
    r = client.post(
        f"/cases/{cid}/steps/hold_checks",
        data={**form, "expected_version": version_of(page.text), "password": WRONG[0]},
    )
    assert r.status_code == 401 and "Wrong username or password" in r.text
    assert version_of(r.text) == str(site.bedside.load(cid).version)
    for guess in WRONG[1:tries]:
        body = {"expected_version": site.bedside.load(cid).version, "values": values}
        r = client.post(
            f"/api/cases/{cid}/steps/hold_checks",
            json={**body, "password": guess},
            headers={"X-CSRF-Token": token},
        )
        assert r.status_code == 401 and r.json()["code"] == "bad_credentials", r.text
    # Locked now: the right password no longer signs, nor signs in.
    body = {"expected_version": site.bedside.load(cid).version, "values": values}
    r = client.post(
        f"/api/cases/{cid}/steps/hold_checks",
        json={**body, "password": PASSWORD},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 401 and r.json()["code"] == "account_locked", r.text
    r = site.client().post("/api/session", json={"username": "n.alvarez", "password": PASSWORD})
    assert r.status_code == 401 and r.json()["code"] == "account_locked"
    signs = [e for e in identity.auth_events(username="n.alvarez") if e.action == "sign"]
    assert [e.reason for e in signs if e.outcome == "refused"] == ["account_locked"] + [
        "wrong_password"
    ] * tries
    case = site.bedside.load(cid).case
    assert case.state == "hold_checks"
    assert len([e for e in case.events if e.type == "signature_failed"]) == tries + 1


# --- 4. secrets never leak ---------------------------------------------------------------


def pdf_texts(data: bytes) -> list[bytes]:
    """The file itself and every stream in it decompressed, read with pyHanko's parser (what
    verification uses); streams it cannot decode are inflated with zlib when they can be."""
    out = [data]
    reader = PdfFileReader(BytesIO(data), strict=False)
    for revision in range(reader.xrefs.total_revisions):
        for ref in reader.xrefs.explicit_refs_in_revision(revision):
            try:
                obj = reader.get_object(ref)
            except Exception:  # a freed or odd object: the raw scan has it
                continue
            if isinstance(obj, StreamObject):
                try:
                    out.append(obj.data)
                except Exception:  # a filter pyHanko does not decode
                    raw = obj.encoded_data
                    try:
                        out.append(zlib.decompress(raw))
                    except zlib.error:
                        out.append(raw)
    return out


def pdf_plain_text(data: bytes, *options: str) -> str | None:
    if not shutil.which("pdftotext"):
        return None
    done = subprocess.run(
        ["pdftotext", *options, "-", "-"], input=data, capture_output=True, check=True
    )
    return " ".join(done.stdout.decode().split())


def table_texts(site: Site) -> list[str]:
    return [cell for rows in snapshot(site).values() for cell in rows]


def test_no_secret_in_the_database_logs_pages_or_pdfs(
    sqlite_site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    site = sqlite_site
    passwords = {PASSWORD, WRONG[0], WRONG[1]}
    html: list[str] = []
    pdfs: list[bytes] = []
    session_tokens: set[str] = set()
    login_tokens: set[str] = set()
    clients: dict[str, TestClient] = {}

    def keep(r: Response) -> Response:
        if r.headers.get("content-type", "").startswith("text/html"):
            html.append(r.text)
        for c in r.cookies.jar:
            (session_tokens if c.name == COOKIE else login_tokens).add(str(c.value))
        return r

    def client_for(who: str) -> TestClient:
        if who not in clients:
            client = site.client()
            page = keep(client.get("/login"))
            if who == "n.alvarez":  # a wrong password first
                wrong = {"username": who, "password": WRONG[0], "csrf_token": csrf_of(page.text)}
                page = keep(client.post("/login", data=wrong))
                assert page.status_code == 401
            data = {"username": who, "password": PASSWORD, "csrf_token": csrf_of(page.text)}
            r = keep(client.post("/login", data=data, follow_redirects=False))
            assert r.status_code == 303, r.text
            keep(client.get(r.headers["location"]))
            clients[who] = client
        return clients[who]

    view = site.open_case()
    cid = view.case.case_id
    while True:
        view = site.bedside.load(cid)
        step = view.case.next_step()
        if step is None:
            break
        who = _SIGNERS[step.id]
        site.clock.advance(minutes=15 if step.id == "infusion_stop" else 3)
        client = client_for(who)
        page = keep(client.get(f"/cases/{cid}"))
        assert page.status_code == 200, page.text[:300]
        values = form_of(values_for(view.case, step.id, site.clock.now()))
        form = {**values, "csrf_token": csrf_of(page.text), "password": PASSWORD}
        if step.blinded_against:
            form["username"] = who
        if step.id == "hold_checks":  # a wrong signature password, then the right one
            bad = {**form, "password": WRONG[1], "expected_version": version_of(page.text)}
            page = keep(client.post(f"/cases/{cid}/steps/{step.id}", data=bad))
            assert page.status_code == 401
        form["expected_version"] = version_of(page.text)
        r = keep(client.post(f"/cases/{cid}/steps/{step.id}", data=form))
        assert r.status_code == 200 and not re.search(r'class="alert error"', r.text), r.text
        if step.id == "pharmacy_verification":
            label = client_for("t.mensah").get(f"/cases/{cid}/label.pdf")
            assert label.status_code == 200
            pdfs.append(label.content)
    assert site.bedside.load(cid).case.state == "completed"
    nurse = client_for("n.alvarez")
    done = keep(nurse.get(f"/cases/{cid}"))
    shas = re.findall(r'href="/records/([0-9a-f]{64})\.pdf"', done.text)
    assert shas
    for sha in sorted(set(shas)):
        pdfs.append(nurse.get(f"/records/{sha}.pdf?download=1").content)
    auditor = client_for("a.ibrahim")
    keep(auditor.get("/archive", params={"mrn": "MRN-7001"}))
    record = keep(auditor.get(f"/archive/{shas[0]}"))
    keep(auditor.post(f"/archive/{shas[0]}/verify", data={"csrf_token": csrf_of(record.text)}))
    keep(client_for("root").get("/admin/users"))
    keep(nurse.post("/logout", data={"csrf_token": csrf_of(done.text)}))
    pdfs.extend(p.read_bytes() for p in sorted(site.archive.home.rglob("*.pdf")))

    csrf_tokens = {
        t for page in html for t in re.findall(r'name="csrf_token" value="([^"]+)"', page)
    }
    assert len(session_tokens) >= 6 and len(csrf_tokens) >= 6 and login_tokens
    secrets_ = passwords | session_tokens | csrf_tokens | login_tokens
    assert all(len(s) >= 16 for s in secrets_)  # long enough that a hit is no coincidence
    # The database: every table, every row.
    cells = table_texts(site)
    assert any(EVIL_NAME in c for c in cells)  # the scan reads the real rows
    for s in secrets_:
        assert not [c for c in cells if s in c], f"secret in the database: {s[:6]}..."
    # ...and the SQLite file's bytes, free pages and write-ahead log included.
    database = Path(str(site.bedside.store.engine.url.database))
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    assert b"MRN-7001" in stored
    for s in secrets_:
        assert s.encode() not in stored, f"secret in the database file: {s[:6]}..."
    # The server's log records (everything, debug included).
    logged = [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    assert logged, "nothing was logged at all: is the capture working?"
    for s in secrets_:
        assert not [line for line in logged if s in line], f"secret in the log: {s[:6]}..."
    # The pages: no password or session token; a CSRF token only in its form field.
    assert len(html) > 30
    for page in html:
        for s in passwords | session_tokens:
            assert s not in page, s[:6]
        for t in csrf_tokens | login_tokens:
            assert page.count(t) == page.count(f'name="csrf_token" value="{t}"'), t[:6]
    # The PDFs, decompressed.
    assert len(pdfs) >= 3
    for data in pdfs:
        for chunk in pdf_texts(data):
            for s in secrets_:
                assert s.encode() not in chunk, f"secret in a PDF: {s[:6]}..."


# --- 5. hostile text and the security headers --------------------------------------------

IMG = '"><img src=x onerror=alert(1)>'
SQL = "Robert'); DROP TABLE users; --"
TAG = "<b onmouseover=alert(1)>Tech</b> & Co"
FAMILY = "O'Brien\"><svg onload=alert(2)>'; DROP TABLE patients; --"
LIVE = ("<script>alert", "<img src=x", "<svg onload", "<b onmouseover")  # as markup: live


def assert_inert(page: str, shown: list[str], where: str) -> None:
    """Each hostile text shows as text (escaped), never as markup."""
    assert page.count("<script") == 1, where  # the page's own /static/bedside.js only
    for live in LIVE:
        assert live not in page, (where, live)
    for text in shown:
        assert str(escape(text)) in page, (where, text)


def test_hostile_names_stay_text_on_every_page_and_in_the_pdfs(sqlite_site: Site) -> None:
    site = sqlite_site
    b = site.bedside
    people = {
        "n.evil": (IMG, "nurse"),
        "p.evil": (SQL, "pharmacist"),
        "t.evil": (TAG, "pharmacy_technician"),
    }
    for username, (name, role) in people.items():
        b.identity.add_user(username, name, [role], PASSWORD, by="test")
    patient = b.store.add_patient(
        mrn="MRN-6660", family_name=FAMILY, given_name=EVIL_NAME, date_of_birth="1960-06-06",
        created_by="test",
    )  # fmt: skip
    shown_name = patient.display_name  # "FAMILY, given": the family name upper-cased
    assert EVIL_NAME in shown_name and "<SVG ONLOAD" in shown_name
    p = b.protocol
    course = b.store.start_course(
        patient.id, protocol_id=p.id, protocol_version=p.version, protocol_hash=p.content_hash
    )
    signers = {**_SIGNERS, "order_verification": "p.evil", "eligibility": "p.evil"}
    signers.update(hold_checks="n.evil", reconstitution="t.evil", dilution="t.evil")
    signers.update(pharmacy_verification="p.evil", double_check_first="n.evil")
    signers.update({s: "n.evil" for s in ("pre_infusion", "infusion_start", "infusion_stop")})
    signers.update(observation="n.evil", record_sign_off="n.evil")
    view = b.open_case(course.id, site.clock.now() + timedelta(hours=2), cred("dr.okafor"))
    cid = view.case.case_id

    def walk_until(step_id: str | None) -> None:
        nonlocal view
        while (step := view.case.next_step()) is not None and step.id != step_id:
            site.clock.advance(minutes=15 if step.id == "infusion_stop" else 3)
            if step.id == "order":
                values = order_values("68", site.clock.now() - timedelta(hours=3))
            else:
                values = values_for(view.case, step.id, site.clock.now())
            view = b.sign_step(cid, view.version, step.id, values, cred(signers[step.id]))

    def page(who: str, path: str) -> str:
        client, _ = sign_in(site, who)
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return r.text

    walk_until("hold_checks")
    assert_inert(page("n.chen", "/ward"), [shown_name], "ward")
    assert_inert(page("n.chen", f"/cases/{cid}"), [shown_name, SQL], "case at hold checks")
    walk_until("reconstitution")
    assert_inert(page("t.mensah", "/pharmacy"), [shown_name], "pharmacy queue")
    walk_until("double_check_first")
    tech, _ = sign_in(site, "t.mensah")
    label = tech.get(f"/cases/{cid}/label.pdf")
    assert label.status_code == 200 and label.headers["content-type"] == "application/pdf"
    walk_until(None)
    assert view.case.state == "completed"
    done = page("n.chen", f"/cases/{cid}")
    assert_inert(done, [shown_name, IMG, SQL, TAG], "case, completed")
    shas = sorted(set(re.findall(r'href="/records/([0-9a-f]{64})\.pdf"', done)))
    assert shas
    archive = page("a.ibrahim", "/archive?mrn=MRN-6660")
    assert_inert(archive, [shown_name], "archive")
    for who in (IMG, SQL, TAG):  # searching by a hostile signer finds the records, as text
        found = page("a.ibrahim", f"/archive?signer={quote(who)}")
        assert_inert(found, [shown_name, who], "archive by signer")
    auditor, _ = sign_in(site, "a.ibrahim")
    record = auditor.get(f"/archive/{shas[0]}")
    assert_inert(record.text, [shown_name], "record view")
    verified = auditor.post(f"/archive/{shas[0]}/verify", data={"csrf_token": csrf_of(record.text)})
    assert verified.status_code == 200
    assert_inert(verified.text, [shown_name], "record verified")
    assert_inert(page("root", "/admin/users"), [IMG, SQL, TAG], "admin users")
    # Markup in the sign-in page's own parameters stays text too.
    login = site.client().get("/login", params={"why": EVIL_NAME, "next": f'/x"{IMG}'})
    assert "<script>alert" not in login.text and "<img src=x" not in login.text
    # The page shows only its own texts: a link cannot put words of its own on it.
    assert str(escape(EVIL_NAME)) not in login.text
    idle = site.client().get("/login", params={"why": "idle"})
    assert "Signed out after 15 minutes without use" in idle.text
    # The PDFs: the names are there, literally (the text is text, not parsed as markup).
    texts = [pdf_plain_text(label.content)]
    laid_out = []
    for sha in shas:
        data = auditor.get(f"/api/archive/{sha}/pdf").content
        texts.append(pdf_plain_text(data))
        laid_out.append(pdf_plain_text(data, "-layout"))
        events = extract_events(data)  # the record's own payload keeps the exact strings
        payload = repr(events)
        for s in (EVIL_NAME, IMG, SQL, TAG):
            assert s in payload or repr(s)[1:-1] in payload, s
    for text in texts:
        if text is not None:  # pdftotext present (the Makefile installs poppler)
            assert EVIL_NAME in text and "O'BRIEN\"><SVG ONLOAD=ALERT(2)>" in text, text[:500]
    if texts[1] is not None:  # the records name their signers, each literally
        # pdftotext's reading order joins a line ending in "-" to the next one and drops the
        # hyphen, which eats one "-" of "--" when the user id beside the name wraps after it;
        # its -layout mode keeps the printed lines as they are.
        records = " ".join(str(t) for t in texts[1:] + laid_out)
        assert all(s in records for s in (IMG, SQL, TAG)), records
    # Regression: the label printed the first 70 characters at 12 pt, so a long name ran off
    # its edge and the given name was lost. pdftotext reads only what is on the label.
    assert texts[0] is None or shown_name in texts[0], texts[0]
    # The database holds them unchanged (parameterised SQL: the DROP TABLEs did nothing).
    assert b.store.get_patient(patient.id).family_name == FAMILY
    assert b.identity.get_user("p.evil").printed_name == SQL
    assert len(b.identity.list_users()) == len(PEOPLE) + len(people)


def test_security_headers_on_every_kind_of_response(sqlite_site: Site) -> None:
    site = sqlite_site
    ctx = prepare(site)
    nurse, token = sign_in(site, "n.alvarez")
    auditor, _ = sign_in(site, "a.ibrahim")
    anon = site.client()
    responses = {
        "login page": anon.get("/login"),
        "redirect": anon.get("/ward", follow_redirects=False),
        "ward page": nurse.get("/ward"),
        "case page": nurse.get(f"/cases/{ctx.case_id}"),
        "403 page": nurse.get("/archive"),
        "404 page": nurse.get("/no/such/page"),
        "record pdf": nurse.get(f"/records/{ctx.sha}.pdf"),
        "archive page": auditor.get("/archive"),
        "api json": nurse.get("/api/ward"),
        "api 401": anon.get("/api/ward"),
        "api 403": nurse.get("/api/archive"),
        "api 409": nurse.post(
            f"/api/cases/{ctx.case_id}/steps/hold_checks",
            json={"expected_version": 1, "values": {}, "password": PASSWORD},
            headers={"X-CSRF-Token": token},
        ),
        "api pdf": nurse.get(f"/api/archive/{ctx.sha}/pdf"),
        "svg": nurse.get("/api/protocol/diagram.svg"),
        "static": anon.get("/static/bedside.css"),
    }
    for what, r in responses.items():
        h = r.headers
        csp = h.get("content-security-policy", "")
        directives = {d.split()[0]: d for d in (p.strip() for p in csp.split(";")) if d}
        assert directives.get("frame-ancestors") == "frame-ancestors 'none'", (what, csp)
        assert directives.get("script-src") == "script-src 'self'", (what, csp)
        assert directives.get("object-src") == "object-src 'none'", (what, csp)
        assert directives.get("base-uri") == "base-uri 'none'", (what, csp)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, what
        assert h.get("x-content-type-options") == "nosniff", what
        assert h.get("x-frame-options") == "DENY", what
        assert h.get("referrer-policy") in ("same-origin", "no-referrer", "strict-origin"), what
        assert "no-store" in h.get("cache-control", ""), what
        assert "strict-transport-security" not in h, what  # plain HTTP: it would be ignored
        kind = h.get("content-type", "")
        if kind.startswith("text/html"):
            assert "charset=utf-8" in kind, what
        if r.request.url.path.startswith("/api/") and kind.startswith("application/json"):
            assert h.get("content-disposition", "").startswith("attachment"), what
    assert responses["api 409"].status_code == 409
    # Over HTTPS: HSTS, and the cookies are Secure.
    secure = site.client()
    secure.base_url = secure.base_url.copy_with(scheme="https")
    page = secure.get("/login")
    assert "max-age=31536000" in page.headers["strict-transport-security"]
    r = secure.post(
        "/login",
        data={"username": "n.chen", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "strict-transport-security" in r.headers
    cookies = [c.lower() for c in r.headers.get_list("set-cookie")]
    session = next(c for c in cookies if c.startswith(COOKIE + "="))
    for flag in ("httponly", "samesite=strict", "secure", "path=/"):
        assert flag in session, (flag, session)
    login_cookie = page.headers["set-cookie"].lower()
    assert "httponly" in login_cookie and "samesite=strict" in login_cookie
    assert "secure" in login_cookie


def test_redirect_after_sign_in_stays_on_this_site(sqlite_site: Site) -> None:
    site = sqlite_site
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "\\\\evil"):
        client = site.client()
        page = client.get("/login", params={"next": target})
        r = client.post(
            "/login",
            data={
                "username": "n.chen",
                "password": PASSWORD,
                "csrf_token": csrf_of(page.text),
                "next": target,
            },
            follow_redirects=False,
        )
        location = r.headers["location"]
        assert r.status_code == 303 and location.startswith("/"), (target, location)
        assert not location.startswith(("//", "/\\")) and "evil.example" not in location[:3]
