"""Malformed, huge and binary requests, on the JSON API and on the HTML form routes.

Each is refused with a 4xx in the documented shape (``{code, message, field?, details?}`` as
JSON, or the error page showing that message), naming the field where there is one; never a 5xx
or a traceback; and nothing stored changes: every row of every table is the same afterwards.
Runs on SQLite and PostgreSQL (which, unlike SQLite, refuses a NUL character in text).
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from workflow.core.protocol import load_protocol
from workflow.dev.walk import values_for
from workflow.resources import default_protocol_path
from workflow.store._schema import metadata
from workflow.web import WebSettings, create_app

from .conftest import PASSWORD, Site, form_of

MB = 1024 * 1024
ERROR_KEYS = {"code", "message", "field", "details", "fields"}


def words_for(field: str) -> str:
    """How a message names a field: a protocol item by its label (issue 11.10), anything else
    (a request field) by its name."""
    protocol = load_protocol(default_protocol_path())
    for step in protocol.steps:
        item = step.item(field)
        if item is not None:
            return item.label
    return field


def stored(site: Site, *, but_auth_log: bool = False) -> str:
    """A digest of every row of every table: the whole store, to compare before and after.

    ``but_auth_log``: leave out the authentication log. A request that gets as far as the
    signature's password check is audited there (21 CFR 11.300(d)) even when the case machine
    then refuses its values; nothing else may change."""
    digest = hashlib.sha256()
    with site.bedside.store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            if but_auth_log and table.name == "auth_events":
                continue
            rows = sorted(repr(tuple(row)) for row in conn.execute(select(table)))
            digest.update(f"{table.name}:{len(rows)}:{rows}".encode())
    return digest.hexdigest()


@dataclass
class Bedside:
    """A case at the pre-dose hold checks, the nurse signed in, and the store's state."""

    site: Site
    nurse: TestClient
    case_id: str
    version: int
    body: dict[str, Any]  # a correct step submission
    csrf: str

    @property
    def step_url(self) -> str:
        return f"/api/cases/{self.case_id}/steps/hold_checks"

    @property
    def form_url(self) -> str:
        return f"/cases/{self.case_id}/steps/hold_checks"

    def form(self, **extra: str) -> dict[str, str]:
        """A correct step form as the page posts it, with ``extra`` fields changed."""
        values = {k: v for k, v in self.body["values"].items()}
        fields = {
            **form_of(values),
            "csrf_token": self.csrf,
            "expected_version": str(self.version),
            "password": PASSWORD,
        }
        return {**fields, **extra}


@pytest.fixture
def bed(site: Site) -> Bedside:
    view = site.walk_to("hold_checks")
    nurse = site.client("n.alvarez")
    body = {
        "expected_version": view.version,
        "values": values_for(view.case, "hold_checks", site.clock.now()),
        "password": PASSWORD,
    }
    return Bedside(
        site, nurse, view.case.case_id, view.version, body, nurse.headers["X-CSRF-Token"]
    )


def api_error(r: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """A JSON error in the documented shape; ``field`` is named in it and in its message."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert "Traceback" not in r.text
    body = r.json()
    assert isinstance(body, dict) and set(body) <= ERROR_KEYS, body
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]
    assert all(isinstance(d, str) for d in body.get("details", []))
    if field is not None:
        assert body.get("field") == field, body
        assert words_for(field) in body["message"], body
    return body


def page_error(r: httpx.Response, status: int, field: str | None = None) -> str:
    """The error page: the status, the message (naming ``field``) shown, no traceback."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("text/html"), r.headers
    assert "Traceback" not in r.text
    text = html.unescape(r.text)
    assert 'role="alert"' in r.text, text[:500]
    if field is not None:
        words = words_for(field)
        assert f"{words}:" in text or f"{words} (" in text, text[:2000]
    return text


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_hostile_bodies_on_a_signature_route(bed: Bedside) -> None:
    site, nurse, url = bed.site, bed.nurse, bed.step_url
    before = stored(site)
    good = bed.body
    as_json = {"Content-Type": "application/json"}

    def post(content: bytes | str, headers: dict[str, str] | None = None) -> httpx.Response:
        return nurse.post(url, content=content, headers=headers or as_json)

    def with_(**changes: Any) -> bytes:
        return json.dumps({**good, **changes}).encode()

    def with_value(item: str, value: Any) -> bytes:
        return json.dumps({**good, "values": {**good["values"], item: value}}).encode()

    # Not JSON at all, or not UTF-8: bad input (422), the same shape, no field to name.
    body = api_error(post(b'{"expected_version": 1, "password": '), 422)
    assert body["code"] == "invalid_input" and "not valid JSON" in body["message"]
    body = api_error(
        post(b'{"expected_version": 1, "password": "\xff\xfe\xfa", "values": {}}'), 422
    )
    assert "UTF-8" in body["message"]
    body = api_error(post(b'{"password": "a\x00b"}'), 422)  # a raw control character
    assert "not valid JSON" in body["message"]
    assert "nested too deeply" in api_error(post(nested(100_000)), 422)["message"]
    for shape in (b"[]", b'"a string"', b"42", b"null"):
        api_error(post(shape), 422)
    body = api_error(post(b""), 422)
    assert body["message"].startswith("request body")

    # NUL characters, escaped in JSON: refused by the field that holds one.
    api_error(post(with_(password="pass\x00word")), 422, "password")
    api_error(post(with_(username="n.alvarez\x00")), 422, "username")
    api_error(post(with_value("spo2_pct", "9\x008")), 422, "values")
    api_error(post(with_(values={"spo2\x00pct": "98"})), 422, "values")

    # Numbers past any integer column, past float, past Python's digit limit; NaN and infinity.
    api_error(post(with_(expected_version=10**30)), 422, "expected_version")
    api_error(post(with_(expected_version=-1)), 422, "expected_version")
    api_error(post(with_(expected_version=1.5)), 422, "expected_version")
    body = api_error(post(b'{"expected_version": ' + b"1" * 5000 + b"}"), 422)
    assert body["message"].startswith("request body")
    for literal in (b"1e400", b"NaN", b"Infinity", b"-Infinity"):
        raw = with_(expected_version="X").replace(b'"X"', literal)
        api_error(post(raw), 422, "expected_version")
    raw = with_value("spo2_pct", "X").replace(b'"X"', b"NaN")
    api_error(post(raw), 422, "values.spo2_pct")

    # Shapes the schema does not have: nested lists, unknown fields, wrong types.
    api_error(post(with_value("spo2_pct", json.loads(nested(500)))), 422, "values.spo2_pct")
    api_error(post(with_(sign_as="dr.okafor")), 422, "sign_as")
    api_error(post(with_(values=["spo2_pct", "98"])), 422, "values")
    api_error(post(with_(values={"spo2_pct": {"$gt": 0}})), 422, "values.spo2_pct")
    api_error(post(with_(password=None)), 422, "password")

    # Overlong strings: bounded fields by the schema, item values by the machine.
    api_error(post(with_(password="p" * 10_000)), 422, "password")
    api_error(post(with_(username="u" * 10_000)), 422, "username")
    api_error(post(with_(values={"k" * 200: "1"})), 422)
    api_error(post(with_(values={"": "1"})), 422, "values")

    # Wrong content types: the JSON route wants JSON.
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        api_error(post(json.dumps(good), {"Content-Type": ctype}), 422)
    r = nurse.post(url, files={"values": ("x.bin", bytes(range(256)) * 64, "application/pdf")})
    api_error(r, 422)

    # 10 MB, declared or streamed without a length: 413 as it arrives.
    big = with_(password="p" * (10 * MB))
    assert api_error(post(big), 413)["code"] == "too_large"
    chunks = (b" " * 65536 for _ in range(160))
    r = nurse.post(url, content=chunks, headers=as_json)
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert api_error(r, 413)["code"] == "too_large"

    assert stored(site) == before

    # Past the schema, values reach the case machine, which names the item. "1e999999999" was
    # a decimal.Overflow (500) and "1e999999" a million-digit number: now out of range.
    before = stored(site, but_auth_log=True)
    for text in ("NaN", "Infinity", "-inf", "1e999999999", "1e999999", "1" * 4000, "0x10"):
        api_error(post(with_value("sbp_mmhg", text)), 422, "sbp_mmhg")
    api_error(post(with_value("spo2_pct", "1e-999999999")), 422, "spo2_pct")
    api_error(post(with_value("spo2_pct", "9" * 500_000)), 422, "spo2_pct")
    api_error(post(with_value("pressor_need", "x" * 500_000)), 422, "pressor_need")
    assert stored(site, but_auth_log=True) == before
    assert site.bedside.load(bed.case_id).version == bed.version
    # And the correct submission still goes through afterwards.
    assert nurse.post(url, json=good).status_code == 200


def test_hostile_sign_in_and_admin_bodies(site: Site) -> None:
    """The routes where text reaches a query first: a NUL would be a PostgreSQL error (500)."""
    before = stored(site)
    anon = site.client()
    for body in (
        {"username": "n.alvarez\x00", "password": PASSWORD},
        {"username": "n.alvarez", "password": "\x00"},
        {"username": "u" * 10_000, "password": PASSWORD},
        {"username": "n.alvarez", "password": PASSWORD, "remember_me": True},
        {"username": ["n.alvarez"], "password": PASSWORD},
    ):
        api_error(anon.post("/api/session", json=body), 422, next(iter(body_fields(body))))
    api_error(anon.post("/api/session", content=b'{"username": "\xc3\x28"}'), 422)
    api_error(anon.post("/api/session", content=b"x" * (10 * MB)), 413)

    admin = site.client("root")
    after_login = stored(site)
    user = {
        "username": "n.new",
        "printed_name": "New Nurse",
        "roles": ["nurse"],
        "password": "a-long-temporary-1",
    }
    api_error(admin.post("/api/users", json={**user, "username": "n.new\x00"}), 422, "username")
    api_error(admin.post("/api/users", json={**user, "roles": ["nurse\x00"]}), 422, "roles")
    api_error(admin.post("/api/users", json={**user, "admin": True}), 422, "admin")
    api_error(admin.post("/api/users", json={**user, "printed_name": "N" * 5000}), 422)
    api_error(admin.post("/api/users/n.chen/reset-password", json={"password": "\x00" * 20}), 422)
    api_error(admin.post("/api/users/n.ch%00en/deactivate"), 422, "username")
    api_error(admin.post("/api/users/n.chen/reset-password", content=b"\x89PNG\r\n\x1a\n"), 422)
    assert stored(site) == after_login
    assert before != after_login  # the sign-ins themselves are stored: the digest sees writes


def body_fields(body: dict[str, Any]) -> list[str]:
    """The field a hostile login body gets wrong (its first odd one)."""
    for key, value in body.items():
        if key not in ("username", "password"):
            return [key]
        if not isinstance(value, str) or "\x00" in value or len(value) > 256:
            return [key]
    return []


def test_hostile_paths_and_queries(bed: Bedside) -> None:
    site, nurse = bed.site, bed.nurse
    auditor = site.client("a.ibrahim")
    before = stored(site)
    # An unknown ``step`` was a KeyError (500): now it is bad input naming the parameter.
    api_error(nurse.get(f"/api/cases/{bed.case_id}", params={"step": "nope"}), 422, "step")
    api_error(nurse.get(f"/api/cases/{bed.case_id}", params={"step": "\x00"}), 422, "step")
    api_error(nurse.get(f"/api/cases/{bed.case_id}%00"), 422, "case_id")
    api_error(nurse.get(f"/api/cases/{bed.case_id}/records", params={"x": "\x00"}), 422, "x")
    api_error(nurse.get("/api/cases/" + "c" * 10_000), 404)
    r = nurse.post(f"/api/cases/{bed.case_id}/steps/no_such_step", json=bed.body)
    api_error(r, 422, "step")
    for name in ("q", "mrn", "lot", "signer", "state", "date_from"):
        api_error(auditor.get("/api/archive", params={name: "x\x00y"}), 422, name)
    api_error(auditor.get("/api/archive", params={"date_from": "99999-99-99"}), 422, "date_from")
    assert auditor.get("/api/archive", params={"q": "%_\\" * 1000}).status_code == 200
    api_error(auditor.get("/api/archive/" + "0" * 63 + "%00"), 422, "sha")
    api_error(auditor.get("/api/archive/%ff%fe"), 422)
    api_error(nurse.get(f"/api/cases/{bed.case_id}/fhir%00"), 404)
    api_error(nurse.get("/api/courses/%00/timeline.svg"), 422, "course_id")
    # A stranger's bad scan body is refused for want of a session, not with validation news.
    stranger = site.client()
    api_error(stranger.post("/api/scan", json={"item": "bomb", "text": 1}), 401)
    # The pages: PostgreSQL refuses a NUL in text (a DataError, which was a 500); SQLite finds
    # nothing. Either way a 4xx page, or an empty search.
    pg = site.bedside.store.dialect == "postgresql"
    page_error(nurse.get(f"/cases/{bed.case_id}%00"), 422 if pg else 404)
    r = auditor.get("/archive", params={"mrn": "\x00"})
    if pg:
        page_error(r, 422)
    else:
        assert r.status_code == 200 and "Traceback" not in r.text
    assert stored(site) == before


def test_hostile_forms_on_the_pages(bed: Bedside) -> None:
    site, nurse, url = bed.site, bed.nurse, bed.form_url
    before = stored(site)
    # NUL, a binary file, absurd numbers: the error page names the item.
    page_error(nurse.post(url, data=bed.form(v_spo2_pct="9\x008")), 422, "spo2_pct")
    page_error(nurse.post(url, data=bed.form(password="pass\x00word")), 422, "password")
    binary = bytes(range(256)) * 40
    r = nurse.post(url, data=bed.form(), files={"v_lot": ("vial.bin", binary, "image/png")})
    page_error(r, 422, "lot")  # was the upload's repr, as text, handed to the machine
    page_error(nurse.post(url, data=bed.form(expected_version="9" * 100)), 409)
    page_error(nurse.post(url, data=bed.form(expected_version="-1")), 422, "expected_version")

    # Invalid UTF-8, raw, in an urlencoded and in a multipart form.
    raw = "&".join(f"{k}={v}" for k, v in bed.form().items() if k != "v_spo2_pct")
    urlencoded = {"Content-Type": "application/x-www-form-urlencoded"}
    r = nurse.post(url, content=raw.encode() + b"&v_spo2_pct=%ff%fe9", headers=urlencoded)
    page_error(r, 422, "spo2_pct")
    r = nurse.post(url, content=raw.encode() + b"&v_spo2_pct=\xff\xfe9", headers=urlencoded)
    page_error(r, 422, "spo2_pct")
    boundary = "b0undary"
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in bed.form().items()
        if k != "v_spo2_pct"
    )
    parts += f'--{boundary}\r\nContent-Disposition: form-data; name="v_spo2_pct"\r\n\r\n'.encode()
    parts += b"\xff\xfe98\r\n" + f"--{boundary}--\r\n".encode()
    multipart = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    page_error(nurse.post(url, content=parts, headers=multipart), 422, "spo2_pct")
    page_error(nurse.post(url, content=b"--x\r\nbroken", headers=multipart), 422)

    # Wrong content types: no form, so no CSRF token: refused before anything is read.
    page_error(nurse.post(url, json=bed.form()), 403)
    page_error(nurse.post(url, content=binary, headers={"Content-Type": "image/png"}), 403)

    # Too much: 10 MB in one field, and thousands of fields.
    big = bed.form(v_spo2_pct="9" * (10 * MB))
    page_error(nurse.post(url, data=big), 413)
    many = {**bed.form(), **{f"f{i}": "x" for i in range(5000)}}
    page_error(nurse.post(url, files={k: (None, v) for k, v in many.items()}), 422)

    assert stored(site) == before

    before = stored(site, but_auth_log=True)  # these get past the password to the machine
    for text in ("1e999999999", "1e999999", "NaN", "-Infinity", "9" * 4000):
        page_error(nurse.post(url, data=bed.form(v_sbp_mmhg=text)), 422, "sbp_mmhg")
    page_error(nurse.post(url, data=bed.form(v_pressor_need="x" * 500_000)), 422, "pressor_need")
    assert stored(site, but_auth_log=True) == before
    assert site.bedside.load(bed.case_id).version == bed.version
    r = nurse.post(url, data=bed.form(), follow_redirects=False)
    assert r.status_code == 303, r.text[:500]


def test_hostile_sign_in_and_admin_forms(site: Site) -> None:
    before = stored(site)
    browser = site.client()
    token = browser.get("/login").cookies.get("bedside_login_csrf")
    assert token
    login = {"csrf_token": token, "username": "n.alvarez", "password": PASSWORD, "next": ""}
    page_error(browser.post("/login", data={**login, "username": "n.alvarez\x00"}), 422, "username")
    r = browser.post("/login", data=login, files={"password": ("pw.bin", b"\x00\xff" * 100)})
    page_error(r, 422, "password")
    page_error(browser.post("/login", data={**login, "username": "x" * (10 * MB)}), 413)
    r = browser.post(
        "/login",
        content=f"csrf_token={token}&username=%ff%fe&password=x".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    page_error(r, 422, "username")
    assert stored(site) == before

    admin = site.client("root")
    after_login = stored(site)
    csrf = admin.headers["X-CSRF-Token"]
    add = {
        "csrf_token": csrf,
        "username": "n.new\x00",
        "printed_name": "New",
        "roles": "nurse",
        "password": "a-long-temporary-1",
    }
    page_error(admin.post("/admin/users", data=add), 422, "username")
    r = admin.post(
        "/admin/users/n.chen/reset-password",
        data={"csrf_token": csrf},
        files={"password": ("p", b"\x00")},
    )
    page_error(r, 422, "password")
    assert stored(site) == after_login


def test_the_body_limit_is_a_setting(sqlite_site: Site) -> None:
    site = sqlite_site
    # A second app on the same store, with a tiny limit.
    small = TestClient(
        create_app(site.bedside, WebSettings(max_body_bytes=64), archive=site.archive)
    )
    r = small.post("/api/session", json={"username": "n.alvarez", "password": PASSWORD})
    assert r.status_code == 200  # 49 bytes
    r = small.post("/api/session", json={"username": "n.alvarez", "password": PASSWORD * 3})
    assert api_error(r, 413)["code"] == "too_large"
    assert "64 bytes" in r.json()["message"]
    assert WebSettings().max_body_bytes == MB
    spec = site.client().get("/openapi.json").json()
    step = spec["paths"]["/api/cases/{case_id}/steps/{step_id}"]["post"]["responses"]
    assert "413" in step
