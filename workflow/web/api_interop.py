"""JSON API for issue 7: a dose as FHIR, GS1 scans, the scan-failure report, and the pictures
(state diagram and course timeline as SVG, for <img> tags in the pages)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import Field

from workflow.core.blinding import blinding_for, refuse_while_blinded
from workflow.core.gs1 import scan_to_values
from workflow.interop.export import case_bundle, scan_report
from workflow.pictures.state_diagram import state_diagram_svg
from workflow.pictures.timeline import course_timeline, timeline_svg

from . import actions
from .api import BODY_ERRORS, ERRORS, In, need, no_nul_in_url
from .context import web_of
from .security import Viewer
from .settings import AUDIT, CLINICAL, PHARMACY, RECORD_READERS, WARD

# The same error shape, statuses and URL checks as the rest of the API.
router = APIRouter(prefix="/api", responses=ERRORS, dependencies=[Depends(no_nul_in_url)])
SVG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/svg+xml": {}}, "description": "The picture"}
}

PHARMACY_USER = need(PHARMACY, post=True)  # a POST: the CSRF header too
WARD_USER = need(WARD, post=True)


class ScanIn(In):
    # The kinds are the protocol's (its steps' `scans`): the core refuses any other, naming
    # this field and the kinds it allows.
    item: str = Field(
        min_length=1, max_length=64, description="a scanned kind the protocol declares"
    )
    text: str = Field(max_length=512, description="the element string as the scanner typed it")


@router.get("/cases/{case_id}/fhir")
def case_fhir(request: Request, case_id: str) -> dict[str, Any]:
    """A FHIR R4 Bundle: the dose's MedicationAdministration and a Provenance per signature.
    It carries the patient's MRN, the dose and rate and the plan's warnings, so it is refused
    (403 ``blinded``) to someone who may sign an independent check of the dose now."""
    web = web_of(request)
    viewer = web.viewer(request, RECORD_READERS)
    view = web.bedside.load(case_id)
    refuse_while_blinded(actions.blinding_of(web, view, viewer), "This dose as FHIR")
    return case_bundle(web.bedside, case_id)


@router.post("/scan", responses=BODY_ERRORS)
def scan(request: Request, body: ScanIn, viewer: Viewer = PHARMACY_USER) -> dict[str, Any]:
    """Entry values from a GS1 scan, or 422 with reason unreadable|expired|unknown_product.
    The role is checked before the body, so a stranger learns nothing from validation."""
    web = web_of(request)
    bedside = web.bedside
    return scan_to_values(bedside.protocol, body.item, body.text, bedside.clock.now())


class BagScanIn(In):
    text: str = Field(max_length=512, description="the bag label's code as the scanner typed it")


@router.post("/cases/{case_id}/bag-scan", responses=BODY_ERRORS)
def bag_scan(
    request: Request, case_id: str, body: BagScanIn, viewer: Viewer = WARD_USER
) -> dict[str, Any]:
    """The bag label's code checked against this dose (closed loop): the entry values for
    the bedside step, or 422 with reason unreadable|wrong_bag|label_mismatch|bag_expired,
    naming both the bag and this dose. The same core check guards signing the step."""
    # A bag scanned for another dose comes back naming whose it is (the service words it).
    return web_of(request).bedside.check_bag_scan(case_id, body.text)


@router.get("/reports/scan-failures")
def scan_failures(request: Request) -> dict[str, Any]:
    web = web_of(request)
    web.viewer(request, AUDIT)
    return scan_report(web.bedside)


@router.get("/protocol/diagram.svg", response_class=Response, responses=SVG)
def diagram(request: Request) -> Response:
    web = web_of(request)
    web.viewer(request, CLINICAL)
    return Response(state_diagram_svg(web.bedside.protocol), media_type="image/svg+xml")


@router.get("/courses/{course_id}/timeline.svg", response_class=Response, responses=SVG)
def timeline(request: Request, course_id: str) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, CLINICAL)
    cases = web.bedside.course_cases(course_id)
    # The chart places each dose by cycle and number: while the viewer may sign an independent
    # check of one of them that asks for those numbers, it is not shown.
    for case in cases:
        blinding = blinding_for(case, viewer.user.roles, cases)
        if blinding.hides("case.cycle") or blinding.hides("case.dose_in_cycle"):
            refuse_while_blinded(blinding, "The course timeline")
    protocol = cases[-1].protocol if cases else web.bedside.protocol
    title = cases[-1].patient.name if cases and cases[-1].patient else f"course {course_id}"
    svg = timeline_svg(course_timeline(protocol, cases, title))
    return Response(svg, media_type="image/svg+xml")
