"""JSON API for in-process photos (issue 16.2): a step signed with its photos, and the
verifier's send-back (the same service actions as the step form and its "Send back to be
redone" button)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import Field, ValidationError
from starlette.datastructures import FormData, UploadFile

from workflow.core.errors import InputError
from workflow.core.photos import PHOTO_FIELD_PREFIX
from workflow.core.rejection import MAX_REASON
from workflow.records.photos import MAX_PHOTO_BYTES

from .api import (
    BODY_ERRORS,
    CLINICAL_POST,
    ERRORS,
    CaseOut,
    Signature,
    StepIn,
    _case,
    no_nul_in_url,
    signed_step,
)
from .context import web_of
from .formdata import PHOTO_FORM
from .photos import uploads
from .security import Viewer, signing_proof

router = APIRouter(prefix="/api", responses=ERRORS, dependencies=[Depends(no_nul_in_url)])

STEP_PART = "step"
# The request body FastAPI cannot infer from a form read by a dependency: documented here so
# /openapi.json (and clients generated from it) knows the parts.
WITH_PHOTOS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [STEP_PART],
                    "properties": {
                        STEP_PART: {
                            "type": "string",
                            "description": "The step's JSON body, exactly as POST "
                            "/api/cases/{case_id}/steps/{step_id} takes it (StepIn: "
                            "expected_version, password, values, ...)",
                        }
                    },
                    "patternProperties": {
                        f"^{PHOTO_FIELD_PREFIX}[A-Za-z0-9_]+$": {
                            "type": "string",
                            "format": "binary",
                            "description": "A photo the step declares (photo_<id>): JPEG, PNG "
                            f"or WebP, judged by its content, up to {MAX_PHOTO_BYTES // 2**20} MB",
                        }
                    },
                    "additionalProperties": False,
                },
                "encoding": {STEP_PART: {"contentType": "application/json"}},
            }
        },
    }
}


def step_body(form: FormData) -> StepIn:
    """The ``step`` part, validated as the JSON route validates its body; any other text part
    is refused (a misspelt part is not silently dropped)."""
    for name, value in form.multi_items():
        if isinstance(value, UploadFile) or name == STEP_PART:
            continue
        if name.startswith(PHOTO_FIELD_PREFIX):
            raise InputError(name, "must be a file (the photo), not text")
        raise InputError(name, "is not a part of this request", f"'{STEP_PART}' and photo_<id>")
    parts = form.getlist(STEP_PART)
    if len(parts) != 1 or not isinstance(parts[0], str):
        raise InputError(STEP_PART, "one part 'step' holding the step's JSON body is required")
    try:
        return StepIn.model_validate_json(parts[0])
    except ValidationError as exc:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            raise InputError(STEP_PART, "is not valid JSON") from None
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


@router.post(
    "/cases/{case_id}/steps/{step_id}/with-photos",
    response_model=CaseOut,
    responses=BODY_ERRORS,
    openapi_extra=WITH_PHOTOS_BODY,
)
def sign_step_with_photos(
    request: Request,
    case_id: str,
    step_id: str,
    viewer: Viewer = CLINICAL_POST,
    form: FormData = PHOTO_FORM,
) -> CaseOut:
    """Sign a step with its photos (``multipart/form-data``): the part ``step`` is the JSON
    body of ``POST /api/cases/{case_id}/steps/{step_id}``, each ``photo_<id>`` part one image
    the step declares. The images go through the same checks as the step form's (type by
    content, size, required photos, a barcode in a photo read and compared with the entry);
    a refused one is a 422 naming the photo and nothing is signed. The answer's entries list
    each photo's stored SHA-256."""
    body = step_body(form)
    return signed_step(request, viewer, case_id, step_id, body, uploads(form))


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
