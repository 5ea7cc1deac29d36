"""In-process photos (issue 16.2) through the web step form, the service and the archive.

Real JPEGs carrying a real GS1 DataMatrix are posted as the tablet's camera would (multipart);
the hash goes into the signed event, the file into the archive, the barcode is read and
compared; the verifier's page shows the entries beside the photos; `archive verify` finds a
deleted or altered photo.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from workflow.core.photos import photos_of
from workflow.dev.demo import _SIGNERS
from workflow.dev.walk import values_for
from workflow.records.photos import MAX_PHOTO_BYTES
from workflow.service import CaseView

from .conftest import PASSWORD, Site, cred, csrf_of, form_of, version_of
from .photo_images import plain_photo, vial_photo
from .test_pages import page_login

LOT = "PLK2291"  # the lot workflow.dev.walk enters for the vial


def _vial_expiry(site: Site) -> date:
    return (site.clock.now() + timedelta(days=200)).date()


def _post_step(
    site: Site, client: TestClient, view: CaseView, step_id: str, files: dict[str, Any]
) -> Any:
    cid = view.case.case_id
    page = client.get(f"/cases/{cid}?step={step_id}")
    assert page.status_code == 200, page.text
    values = values_for(site.bedside.load(cid).case, step_id, site.clock.now())
    return client.post(
        f"/cases/{cid}/steps/{step_id}",
        data={
            "csrf_token": csrf_of(page.text),
            "expected_version": version_of(page.text),
            "password": PASSWORD,
            **form_of(values),
        },
        files=files,
    )


def _signed_photos(site: Site, cid: str, step_id: str) -> dict[str, Any]:
    case = site.bedside.load(cid).case
    event = next(e for e in reversed(case.events) if e.step == step_id)
    return {ref.id: ref for ref in photos_of(event.data)}


def _reconstituted_with_photos(
    site: Site, lot_in_photo: str = LOT
) -> tuple[CaseView, bytes, bytes]:
    view = site.walk_to("reconstitution")
    tech = page_login(site, "t.mensah")
    vials = vial_photo(lot_in_photo, _vial_expiry(site))
    syringe = plain_photo(fmt="PNG")
    r = _post_step(
        site,
        tech,
        view,
        "reconstitution",
        {
            "photo_vials": ("IMG_0001.jpg", vials, "image/jpeg"),
            "photo_syringe": ("IMG_0002.png", syringe, "image/png"),
        },
    )
    assert r.status_code == 200 and "/cases/" in str(r.url), r.text  # followed the 303
    return site.bedside.load(view.case.case_id), vials, syringe


def test_photo_hash_in_the_signed_event_file_in_the_archive_barcode_compared(site: Site) -> None:
    view, vials, syringe = _reconstituted_with_photos(site)
    cid = view.case.case_id
    assert view.case.state == "dilution"
    refs = _signed_photos(site, cid, "reconstitution")
    assert refs["vials"].sha256 == hashlib.sha256(vials).hexdigest()
    assert refs["syringe"].sha256 == hashlib.sha256(syringe).hexdigest()
    # The barcode read off the photo names the lot and expiry that were entered.
    assert refs["vials"].barcode is not None and LOT in refs["vials"].barcode
    assert refs["vials"].barcode_agrees is True
    assert refs["syringe"].barcode is None  # no scan is compared for this photo
    for ref, data in ((refs["vials"], vials), (refs["syringe"], syringe)):
        stored = site.archive.photos.path(ref.sha256)
        assert stored.read_bytes() == data
        assert stored.stat().st_mode & 0o777 == 0o444
    # The chain vouches for it: the stored events verify and carry the hash.
    assert site.bedside.store.load_events(cid, verify=True)


def test_verifier_sees_entries_beside_the_photos(site: Site) -> None:
    view, vials, _ = _reconstituted_with_photos(site)
    cid = view.case.case_id
    view = site.walk_to("pharmacy_verification", view)
    pharmacist = page_login(site, "p.lindqvist")
    page = pharmacist.get(f"/cases/{cid}?step=pharmacy_verification").text
    sha = hashlib.sha256(vials).hexdigest()
    assert 'id="verified_reconstitution"' in page and 'id="verified_dilution"' in page
    assert f"SHA-256 {sha}" in page and "Vials with their labels" in page
    assert LOT in page  # the entry's lot, beside the photo
    assert "(Pharmacy technician)" in page and "(pharmacy_technician)" not in page
    assert "the code in the photo matches the entry" in page
    assert "No photos were taken at this step." in page  # dilution: none taken
    img = pharmacist.get(f"/cases/{cid}/photos/{sha}")
    assert img.status_code == 200 and img.content == vials
    assert img.headers["content-type"] == "image/jpeg"
    # A hash this case never signed is not served, even when the file exists.
    other = site.archive.photos.put(plain_photo((1, 2, 3)))
    assert pharmacist.get(f"/cases/{cid}/photos/{other}").status_code == 404


def test_a_barcode_that_disagrees_is_recorded_and_shown(site: Site) -> None:
    view, _, _ = _reconstituted_with_photos(site, lot_in_photo="WRONG77")
    cid = view.case.case_id
    ref = _signed_photos(site, cid, "reconstitution")["vials"]
    assert (
        ref.barcode_agrees is False
        and "lot WRONG77 in the photo, PLK2291 entered" in ref.barcode_note
    )
    view = site.walk_to("pharmacy_verification", view)
    pharmacist = page_login(site, "p.lindqvist")
    page = pharmacist.get(f"/cases/{cid}?step=pharmacy_verification").text
    assert "Barcode in the photo disagrees with the entry" in page and "WRONG77" in page
    assert 'name="ack_photo_barcodes"' in page
    # Releasing needs the verifier's acknowledgement, which the signed event then records.
    r = _post_step(site, pharmacist, view, "pharmacy_verification", {})
    assert r.status_code == 422 and "acknowledge it to sign" in r.text, r.text
    assert site.bedside.load(cid).version == view.version
    page = pharmacist.get(f"/cases/{cid}?step=pharmacy_verification").text
    values = values_for(site.bedside.load(cid).case, "pharmacy_verification", site.clock.now())
    r = pharmacist.post(
        f"/cases/{cid}/steps/pharmacy_verification",
        data={
            "csrf_token": csrf_of(page),
            "expected_version": version_of(page),
            "password": PASSWORD,
            "ack_photo_barcodes": "on",
            **form_of(values),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    signed = site.bedside.load(cid).case.events[-1]
    assert signed.step == "pharmacy_verification"
    assert any("WRONG77" in note for note in signed.data["acknowledged_barcodes"])


def test_wrong_type_or_too_large_is_refused_naming_the_field(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("reconstitution")
    tech = page_login(site, "t.mensah")
    gif = plain_photo(fmt="GIF")
    too_big = b"\xff\xd8\xff" + b"\0" * MAX_PHOTO_BYTES
    for files, fragment in (
        ({"photo_vials": ("a.jpg", gif, "image/jpeg")}, "a GIF image"),
        ({"photo_vials": ("a.jpg", b"not an image", "image/jpeg")}, "not a readable image"),
        ({"photo_vials": ("a.jpg", plain_photo()[:-400], "image/jpeg")}, "truncated"),
        ({"photo_syringe": ("a.jpg", too_big, "image/jpeg")}, "larger than the limit"),
        ({"photo_bag": ("a.jpg", plain_photo(), "image/jpeg")}, "this step takes no photo"),
    ):
        before = set(site.archive.photos.iter_hashes())
        r = _post_step(site, tech, view, "reconstitution", files)
        assert r.status_code == 422, (fragment, r.status_code)
        assert fragment in r.text, r.text
        field = next(iter(files))
        assert field.removeprefix("photo_") in r.text or "Vials" in r.text or "Syringe" in r.text
        assert site.bedside.load(view.case.case_id).version == view.version
        assert set(site.archive.photos.iter_hashes()) == before  # nothing half-written


def _finish(site: Site, view: CaseView) -> CaseView:
    while (step := view.case.next_step()) is not None:
        site.clock.advance(minutes=20 if step.id == "hold_checks" else 5)
        values = values_for(view.case, step.id, site.clock.now())
        view = site.bedside.sign_step(
            view.case.case_id, view.version, step.id, values, cred(_SIGNERS[step.id])
        )
    assert view.case.closed and view.archive_error is None
    return view


def test_compounding_record_shows_thumbnails_and_hashes(sqlite_site: Site, tmp_path: Path) -> None:
    site = sqlite_site
    view, vials, syringe = _reconstituted_with_photos(site)
    view = _finish(site, view)
    record = next(
        r for r in site.bedside.search_archive(case_id=view.case.case_id) if r.kind == "compounding"
    )
    pdf = tmp_path / "compounding.pdf"
    pdf.write_bytes(site.archive.blobs.get(record.sha256))
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    assert "In-process photos" in text
    for data in (vials, syringe):
        sha = hashlib.sha256(data).hexdigest()
        # Printed whole in the table, and in two halves under its thumbnail.
        assert sha[:32] in text and sha[32:] in text, sha
    assert "the code in the photo matches" in text  # the barcode note, beside the hash
    listing = subprocess.run(
        ["pdfimages", "-list", str(pdf)], check=True, capture_output=True, text=True
    ).stdout
    images = [line.split() for line in listing.splitlines()[2:]]
    jpegs = [cols for cols in images if cols[2] == "image" and cols[8] == "jpeg"]
    assert len(jpegs) == 2, listing  # the two thumbnails, re-encoded small JPEGs
    assert all(int(cols[3]) <= 480 and int(cols[4]) <= 480 for cols in jpegs), listing
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(pdf), str(tmp_path / "page")], check=True)
    assert list(tmp_path.glob("page-*.png"))


def test_archive_verify_finds_a_missing_or_altered_photo(sqlite_site: Site) -> None:
    site = sqlite_site
    view, vials, syringe = _reconstituted_with_photos(site)
    view = _finish(site, view)
    assert site.archive.verify_all().ok
    vial_path = site.archive.photos.path(hashlib.sha256(vials).hexdigest())
    os.chmod(vial_path, 0o644)
    vial_path.write_bytes(vials[:-10] + b"0123456789")
    syringe_path = site.archive.photos.path(hashlib.sha256(syringe).hexdigest())
    syringe_path.unlink()
    report = site.archive.verify_all()
    assert not report.ok
    problems = dict(report.failed)
    assert "photo 'vials' of step reconstitution" in problems[hashlib.sha256(vials).hexdigest()]
    assert "does not match its SHA-256" in problems[hashlib.sha256(vials).hexdigest()]
    assert "file missing from the archive" in problems[hashlib.sha256(syringe).hexdigest()]


def _reject(site: Site, client: TestClient, cid: str, step_id: str, reason: str) -> Any:
    page = client.get(f"/cases/{cid}?step=pharmacy_verification")
    # Someone who may not verify is shown no form (so no version): post the case's own.
    shown = re.search(r'name="expected_version" value="(\d+)"', page.text)
    version = shown.group(1) if shown else str(site.bedside.load(cid).version)
    return client.post(
        f"/cases/{cid}/reject",
        data={
            "csrf_token": csrf_of(page.text),
            "expected_version": version,
            "password": PASSWORD,
            f"send_back_{step_id}": "Send back to be redone",
            "reject_reason": reason,
        },
        follow_redirects=False,
    )


def test_verifier_sends_a_step_back_and_the_technician_redoes_it(site: Site) -> None:
    view, _, _ = _reconstituted_with_photos(site, lot_in_photo="WRONG77")
    cid = view.case.case_id
    view = site.walk_to("pharmacy_verification", view)
    first = {s: view.case.current[s].seq for s in ("reconstitution", "dilution")}
    pharmacist = page_login(site, "p.lindqvist")
    page = pharmacist.get(f"/cases/{cid}?step=pharmacy_verification").text
    assert 'formaction="/cases/' in page and 'name="reject_reason"' in page
    # No reason, or a step this one does not verify: refused, nothing written.
    r = _reject(site, pharmacist, cid, "reconstitution", "  ")
    assert r.status_code == 422 and "reason" in r.text
    r = _reject(site, pharmacist, cid, "order", "wrong")
    assert r.status_code == 422 and "can be sent back only" in r.text
    assert site.bedside.load(cid).version == view.version
    # The technician cannot send their own work back.
    tech = page_login(site, "t.mensah")
    r = _reject(site, tech, cid, "reconstitution", "mine")
    assert r.status_code == 403, r.text
    reason = "The vial's lot in the photo is not the lot entered"
    r = _reject(site, pharmacist, cid, "reconstitution", reason)
    assert r.status_code == 303, r.text
    view = site.bedside.load(cid)
    assert view.case.state == "reconstitution"
    rejection = view.case.events[-1]
    assert rejection.type == "step_rejected" and rejection.meaning == "reviewed"
    assert rejection.data == {"rejected_step": "reconstitution", "reason": reason}
    assert rejection.actor is not None and rejection.actor.user_id
    superseded = {e.seq: e.superseded_by for e in view.case.history}
    assert all(superseded[seq] == rejection.seq for seq in first.values())
    assert "reconstitution" not in view.case.current and "dilution" not in view.case.current
    # The technician redoes it, with a good photo this time, and the preparation is released.
    r = _post_step(
        site,
        tech,
        view,
        "reconstitution",
        {"photo_vials": ("v.jpg", vial_photo(LOT, _vial_expiry(site)), "image/jpeg")},
    )
    assert r.status_code == 200, r.text
    assert _signed_photos(site, cid, "reconstitution")["vials"].barcode_agrees is True
    view = _finish(site, site.bedside.load(cid))
    assert view.case.state == "completed"
    assert site.archive.verify_all().ok
    record = next(r for r in site.bedside.search_archive(case_id=cid) if r.kind == "compounding")
    text = subprocess.run(
        ["pdftotext", "-", "-"],
        input=site.archive.blobs.get(record.sha256),
        check=True,
        capture_output=True,
    ).stdout.decode()
    words = " ".join(text.split())  # the note wraps in its cell
    assert "sent back by Per Lindqvist" in words and reason.split()[0] in words
    assert site.bedside.store.load_events(cid, verify=True)


def test_api_sends_a_step_back(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("pharmacy_verification")
    cid = view.case.case_id
    client = site.client("p.lindqvist")
    body = {"expected_version": view.version, "step": "dilution", "password": PASSWORD}
    r = client.post(f"/api/cases/{cid}/rejections", json={**body, "reason": ""})
    assert r.status_code == 422 and r.json()["field"] == "reason", r.text
    r = client.post(f"/api/cases/{cid}/rejections", json={**body, "reason": "bag label unreadable"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "dilution"
    case = site.bedside.load(cid).case
    assert "dilution" not in case.current and "reconstitution" in case.current
