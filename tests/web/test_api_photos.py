"""In-process photos through the JSON API (issue 16.2): ``POST .../steps/{step}/with-photos``,
multipart with the step's JSON body as the part ``step`` and one ``photo_<id>`` file per photo.
The same service call as the step form: type by content, size limit, required photos, the
barcode read and compared; a refusal is a 422 naming the photo and writes nothing."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from workflow.dev.walk import values_for
from workflow.records.photos import MAX_PHOTO_BYTES
from workflow.service import CaseView

from .conftest import PASSWORD, Site
from .photo_images import plain_photo, vial_photo
from .test_photos_web import LOT, _signed_photos


def _values(site: Site, view: CaseView, step_id: str) -> dict[str, Any]:
    values = values_for(view.case, step_id, site.clock.now())
    return {k: v if isinstance(v, bool) else str(v) for k, v in values.items()}


def _post(
    client: TestClient,
    view: CaseView,
    step_id: str,
    body: dict[str, Any] | str,
    files: list[tuple[str, tuple[str, bytes, str]]],
) -> Any:
    text = body if isinstance(body, str) else json.dumps(body)
    return client.post(
        f"/api/cases/{view.case.case_id}/steps/{step_id}/with-photos",
        files=[("step", (None, text, "application/json")), *files],  # type: ignore[list-item]
    )


def _body(site: Site, view: CaseView, step_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "expected_version": view.version,
        "password": PASSWORD,
        "values": _values(site, view, step_id),
        **extra,
    }


def test_a_step_signed_with_photos_through_the_api(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("reconstitution")
    cid = view.case.case_id
    vials = vial_photo(LOT, (site.clock.now() + timedelta(days=200)).date())
    syringe = plain_photo(fmt="PNG")
    tech = site.client("t.mensah")
    r = _post(
        tech,
        view,
        "reconstitution",
        _body(site, view, "reconstitution"),
        [
            ("photo_vials", ("IMG_0001.jpg", vials, "image/jpeg")),
            ("photo_syringe", ("IMG_0002.png", syringe, "image/png")),
        ],
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["state"] == "dilution"
    [entry] = [e for e in out["entries"] if e["step"] == "reconstitution"]
    shown = {p["id"]: p for p in entry["photos"]}
    assert shown["vials"]["sha256"] == hashlib.sha256(vials).hexdigest()
    assert shown["syringe"]["sha256"] == hashlib.sha256(syringe).hexdigest()
    assert shown["vials"]["label"] == "Vials with their labels"
    assert shown["vials"]["barcode_agrees"] is True and LOT in shown["vials"]["barcode"]
    assert shown["syringe"]["barcode"] is None
    # The same signed event and archive file as the step form makes.
    refs = _signed_photos(site, cid, "reconstitution")
    assert refs["vials"].sha256 == shown["vials"]["sha256"]
    assert site.archive.photos.path(refs["vials"].sha256).read_bytes() == vials
    img = tech.get(shown["vials"]["url"])
    assert img.status_code == 200 and img.content == vials
    # The JSON route is the same signature without photos: dilution takes them optionally.
    view = site.bedside.load(cid)
    r = tech.post(f"/api/cases/{cid}/steps/dilution", json=_body(site, view, "dilution"))
    assert r.status_code == 200 and r.json()["state"] == "pharmacy_verification", r.text


def test_bad_photos_and_bad_parts_are_refused_naming_them(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("reconstitution")
    cid = view.case.case_id
    tech = site.client("t.mensah")
    good = _body(site, view, "reconstitution")
    too_big = b"\xff\xd8\xff" + b"\0" * MAX_PHOTO_BYTES  # past the limit, within the body's
    jpeg = ("a.jpg", plain_photo(), "image/jpeg")
    cases: list[tuple[Any, list[Any], str, str]] = [
        (
            good,
            [("photo_vials", ("a.jpg", plain_photo(fmt="GIF"), "image/jpeg"))],
            "photo_vials",
            "a GIF image",
        ),
        (
            good,
            [("photo_vials", ("a.jpg", b"not an image", "image/jpeg"))],
            "photo_vials",
            "not a readable image",
        ),
        (
            good,
            [("photo_syringe", ("a.jpg", too_big, "image/jpeg"))],
            "photo_syringe",
            "larger than the limit",
        ),
        (good, [("photo_final_bag", jpeg)], "photo_final_bag", "this step takes no photo"),
        (good, [("photo_vials", (None, "text", "text/plain"))], "photo_vials", "must be a file"),
        (good, [("values", (None, "{}", "text/plain"))], "values", "is not a part of this request"),
        (good, [("other", jpeg)], "other", "a file cannot be posted here"),
        ("{not json", [("photo_vials", jpeg)], "step", "is not valid JSON"),
        ({**good, "expected_version": "x"}, [], "expected_version", "integer"),
        ({**good, "passwrd": "x"}, [], "passwrd", "Extra inputs"),
    ]
    for body, files, field, fragment in cases:
        before = set(site.archive.photos.iter_hashes())
        r = _post(tech, view, "reconstitution", body, files)
        assert r.status_code == 422, (field, r.status_code, r.text)
        error = r.json()
        assert error["field"] == field and fragment in error["message"], (field, error)
        assert site.bedside.load(cid).version == view.version
        assert set(site.archive.photos.iter_hashes()) == before  # nothing half-written
    # No part "step" at all; a JSON body posted here is not a multipart form either.
    r = tech.post(
        f"/api/cases/{cid}/steps/reconstitution/with-photos", files=[("photo_vials", jpeg)]
    )
    assert r.status_code == 422 and r.json()["field"] == "step", r.text
    r = tech.post(f"/api/cases/{cid}/steps/reconstitution/with-photos", json=good)
    assert r.status_code == 422 and r.json()["field"] == "step", r.text
    assert site.bedside.load(cid).version == view.version


def test_session_and_csrf_come_before_the_body(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("reconstitution")
    files = [("photo_vials", ("a.jpg", plain_photo(), "image/jpeg"))]
    r = _post(site.client(), view, "reconstitution", "{not json", files)
    assert r.status_code == 401, r.text
    tech = site.client("t.mensah")
    del tech.headers["X-CSRF-Token"]
    r = _post(tech, view, "reconstitution", "{not json", files)
    assert r.status_code == 403 and "step" not in r.text, r.text


def test_verifier_acknowledges_a_disagreeing_barcode_through_the_api(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("reconstitution")
    cid = view.case.case_id
    wrong = vial_photo("WRONG77", (site.clock.now() + timedelta(days=200)).date())
    tech = site.client("t.mensah")
    r = _post(
        tech,
        view,
        "reconstitution",
        _body(site, view, "reconstitution"),
        [("photo_vials", ("v.jpg", wrong, "image/jpeg"))],
    )
    assert r.status_code == 200, r.text
    [photo] = next(e for e in r.json()["entries"] if e["step"] == "reconstitution")["photos"]
    assert photo["barcode_agrees"] is False and "WRONG77" in photo["barcode_note"]
    view = site.walk_to("pharmacy_verification", site.bedside.load(cid))
    pharmacist = site.client("p.lindqvist")
    body = _body(site, view, "pharmacy_verification")
    r = pharmacist.post(f"/api/cases/{cid}/steps/pharmacy_verification", json=body)
    assert r.status_code == 422 and "acknowledge it to sign" in r.text, r.text
    assert site.bedside.load(cid).version == view.version
    r = pharmacist.post(
        f"/api/cases/{cid}/steps/pharmacy_verification",
        json={**body, "acknowledge_photo_barcodes": True},
    )
    assert r.status_code == 200 and r.json()["state"] == "double_check_first", r.text
    signed = site.bedside.load(cid).case.events[-1]
    assert any("WRONG77" in note for note in signed.data["acknowledged_barcodes"])
    # A nurse who may sign the blinded double check now is shown no photo (their labels show
    # what the check asks for); the pharmacist still is.
    nurse = site.client("n.chen").get(f"/api/cases/{cid}").json()
    assert nurse["blinded_steps"] and all(not e["photos"] for e in nurse["entries"])
    shown = pharmacist.get(f"/api/cases/{cid}").json()
    assert any(e["photos"] for e in shown["entries"])


def test_the_openapi_schema_documents_the_parts(sqlite_site: Site) -> None:
    schema = sqlite_site.client().get("/openapi.json").json()
    op = schema["paths"]["/api/cases/{case_id}/steps/{step_id}/with-photos"]["post"]
    form = op["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["required"] == ["step"]
    assert "StepIn" in form["schema"]["properties"]["step"]["description"]
    [photo] = form["schema"]["patternProperties"].values()
    assert photo["format"] == "binary"
    assert {"200", "413", "422"} <= set(op["responses"])
    step_in = schema["components"]["schemas"]["StepIn"]["properties"]
    assert step_in["acknowledge_photo_barcodes"]["type"] == "boolean"
