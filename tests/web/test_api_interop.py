"""The issue-7 JSON routes: FHIR bundle of a dose, GS1 scan, scan-failure report, pictures."""

from __future__ import annotations

from fhir.resources.R4B.bundle import Bundle

from .conftest import Site


def test_fhir_scan_report_and_pictures(sqlite_site: Site) -> None:
    view = sqlite_site.walk_to("reconstitution")
    auditor = sqlite_site.client("a.ibrahim")
    r = auditor.get(f"/api/cases/{view.case.case_id}/fhir")
    assert r.status_code == 200, r.text
    bundle = r.json()
    Bundle.model_validate(bundle)
    assert bundle["entry"][0]["resource"]["status"] == "in-progress"
    report = auditor.get("/api/reports/scan-failures")
    assert report.status_code == 200 and report.json()["total"] == 0

    pharmacist = sqlite_site.client("p.lindqvist")
    r = pharmacist.post("/api/scan", json={"item": "vial", "text": "hello"})
    assert r.status_code == 422 and r.json()["code"] == "unreadable"

    nurse = sqlite_site.client("n.alvarez")
    r = nurse.get("/api/protocol/diagram.svg")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    r = nurse.get(f"/api/courses/{view.case.course_id}/timeline.svg")
    assert r.status_code == 200 and b"<svg" in r.content


def test_a_scan_kind_the_protocol_does_not_declare_names_the_field_and_the_kinds(
    sqlite_site: Site,
) -> None:
    pharmacist = sqlite_site.client("p.lindqvist")
    r = pharmacist.post("/api/scan", json={"item": "syringe", "text": "(01)09506000134352"})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "invalid_input" and body["field"] == "item"
    # The kinds come from the protocol's steps (`scans`), not from a list in the web layer.
    kinds = sqlite_site.bedside.protocol.scan_steps()
    assert all(kind in body["message"] + str(body.get("details", "")) for kind in kinds), body
