"""JSON API for the verifier's send-back (issue 16.2): the same service action as the page's
"Send back to be redone" button."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from workflow.core.rejection import MAX_REASON

from .api import BODY_ERRORS, CLINICAL_POST, ERRORS, CaseOut, Signature, _case, no_nul_in_url
from .context import web_of
from .security import Viewer, signing_proof

router = APIRouter(prefix="/api", responses=ERRORS, dependencies=[Depends(no_nul_in_url)])


class RejectionIn(Signature):
    step: str = Field(max_length=64, description="The step sent back (one the open step verifies)")
    reason: str = Field(max_length=MAX_REASON, description="Why it is sent back")


@router.post("/cases/{case_id}/rejections", response_model=CaseOut, responses=BODY_ERRORS)
def reject(
    request: Request, case_id: str, body: RejectionIn, viewer: Viewer = CLINICAL_POST
) -> CaseOut:
    """Send a step back to be redone: its entries are superseded, the case returns to it."""
    view = web_of(request).bedside.reject_step(
        case_id,
        body.expected_version,
        body.step,
        body.reason,
        signing_proof(viewer, body.password, body.username),
    )
    return _case(request, viewer, case_id, view=view)
