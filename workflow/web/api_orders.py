"""JSON API for orders from the hospital (issue 16): a FHIR R4 MedicationRequest accepted as an
order, and what orders did to the pharmacy queue.

``POST /api/fhir/MedicationRequest`` answers in FHIR: 201 with an informational
OperationOutcome when applied (200 for a duplicate), 400 (unreadable: the path at fault is
named) or 422 (refused: unknown drug or order, identifier mismatch, a rule) with an error
OperationOutcome. No session, a wrong role or a missing CSRF header is refused before the body
is read, 401/403 in the API's one error shape (as on every route). The order goes through the
same service command as the HL7 v2 feed (``Bedside.receive_fhir`` -> ``receive_order``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from workflow.core.errors import BedsideError
from workflow.interop.fhir_order import operation_outcome

from .api import BODY_ERRORS, ERRORS, need, no_nul_in_url
from .context import web_of
from .security import Viewer
from .settings import PHARMACY

router = APIRouter(prefix="/api", responses=ERRORS, dependencies=[Depends(no_nul_in_url)])

# Who may post an order: the people who may open a dose in Bedside (the order's signer is
# still the ordering provider the resource names; the pharmacist verifies it as usual).
ORDER_POSTERS = ("prescriber", "pharmacist")
PHARMACY_USER = need(PHARMACY)
ORDER_POSTER = need(ORDER_POSTERS, post=True)
FHIR_JSON = "application/fhir+json"
OUTCOME: dict[int | str, dict[str, Any]] = {
    s: {"content": {FHIR_JSON: {}}, "description": "An OperationOutcome"}
    for s in (200, 201, 400, 422)
}


class InterfaceEventOut(BaseModel):
    """What an order from the hospital did to one dose: ``effect`` queued, requeued, removed
    (a discontinued or cancelled order took it off the queue) or flagged_for_waste (it was
    already prepared: a person records the waste); ``open`` while the dose has not ended."""

    at: datetime
    kind: str
    control_id: str
    placer_order: str
    case_id: str
    effect: str
    state: str
    open: bool
    detail: str


@router.post(
    "/fhir/MedicationRequest", response_class=JSONResponse, responses={**OUTCOME, **BODY_ERRORS}
)
async def fhir_medication_request(request: Request, viewer: Viewer = ORDER_POSTER) -> JSONResponse:
    """Apply a FHIR R4 MedicationRequest (in a Bundle with its Patient, weight Observation and
    Practitioner, or with them contained) as an order: new (status active), change (a PUT
    entry), discontinue (stopped) or cancel (cancelled, entered-in-error). Session, role and
    CSRF header are checked first, with the API's own error shape like every route."""
    del viewer
    web = web_of(request)
    raw = (await request.body()).decode("utf-8", errors="replace")
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    try:
        result = await run_in_threadpool(web.bedside.receive_fhir, body, raw)
    except BedsideError as exc:  # the interface log itself could not be written
        return _outcome(503, "fatal", "exception", exc.message)
    if result.ack_code == "AA":
        status = 200 if result.status == "duplicate" else 201
        return _outcome(status, "information", "informational", result.detail)
    if result.ack_code == "AR":
        return _outcome(400, "error", "invalid", result.detail)
    return _outcome(422, "error", "business-rule", result.detail)


@router.get("/pharmacy/interface-events", response_model=list[InterfaceEventOut])
def interface_events(request: Request, viewer: Viewer = PHARMACY_USER) -> list[InterfaceEventOut]:
    """What orders from the hospital did to doses, newest first: the doses a discontinued
    order removed from the queue and the prepared doses it flagged for waste (``open`` until
    someone records the waste), and the doses orders queued or sent back for verification."""
    del viewer
    events = web_of(request).bedside.interface_events(limit=100)
    return [InterfaceEventOut(**e.__dict__) for e in events]


def _outcome(status: int, severity: str, code: str, text: str) -> JSONResponse:
    return JSONResponse(
        operation_outcome(severity, code, text), status_code=status, media_type=FHIR_JSON
    )
