"""In-process photos on the web (issue 16.2): the step form's uploads, the verifier's panel
(each verified step's entries beside its photos) and the photo itself for a case's readers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile

from workflow.core.blinding import Blinding, is_unprimed
from workflow.core.errors import InputError
from workflow.core.photos import PHOTO_FIELD_PREFIX, photos_of
from workflow.core.protocol.model import Step
from workflow.service import CaseView

from .context import web_of
from .formdata import PHOTO_FORM
from .forms import user_id_of
from .present import entry_json, photo_json
from .security import check_csrf, signing_proof
from .settings import CLINICAL

router = APIRouter(include_in_schema=False)
SEND_BACK = "send_back_"


def uploads(form: FormData) -> dict[str, bytes]:
    """The photos posted with a step's form, by photo id (a file input left empty posts an
    empty part with no file name: no photo taken)."""
    out: dict[str, bytes] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile) and name.startswith(PHOTO_FIELD_PREFIX):
            data = value.file.read()
            if data or value.filename:
                out[name.removeprefix(PHOTO_FIELD_PREFIX)] = data
    return out


def photo_inputs(step: Step) -> list[dict[str, Any]]:
    """The camera inputs of the step being signed."""
    return [
        {"name": PHOTO_FIELD_PREFIX + p.id, "label": p.label, "required": p.required}
        for p in step.photos
    ]


def verifier_panel(view: CaseView, step: Step, tz: Any, blinding: Blinding) -> list[dict[str, Any]]:
    """For a step that verifies others: each verified step's current entry and its photos, so
    the pharmacist outside the clean room checks what was done against what was typed."""
    case = view.case
    if is_unprimed(case.protocol, step):
        # An independent check verifies the first checker's entry: showing it would prime the
        # second checker (workflow.core.blinding); the comparison is the machine's.
        return []
    events = {e.seq: e for e in case.events}
    out = []
    for sid in step.verifies:
        entry = case.current.get(sid)
        if entry is None:
            continue
        photos = [
            photo_json(case, sid, ref)
            for ref in photos_of(events[entry.seq].data if entry.seq in events else {})
        ]
        shown = entry_json(case, entry, tz, blinding)
        role = case.protocol.roles.get(entry.signer.role)
        shown["role"] = role.title if role else entry.signer.role  # words, not the role's id
        out.append({"entry": shown, "photos": photos})
    return out


@router.get("/cases/{case_id}/photos/{sha}")
def photo(request: Request, case_id: str, sha: str) -> Response:
    web = web_of(request)
    web.viewer(request, CLINICAL)
    data, media_type = web.bedside.photo(case_id, sha)
    # Content-addressed: the bytes behind this address never change.
    headers = {"Cache-Control": "private, max-age=86400, immutable"}
    return Response(data, media_type=media_type, headers=headers)


@router.post("/cases/{case_id}/reject")
def reject_step(request: Request, case_id: str, form: FormData = PHOTO_FORM) -> Response:
    """The verifier's "send back" button, posted from the verification step's form."""
    web = web_of(request)
    viewer = web.viewer(request, CLINICAL)
    check_csrf(viewer, str(form.get("csrf_token", "")))
    request.state.reload_url = f"/cases/{case_id}"
    fields = {k: str(v) for k, v in form.items() if not isinstance(v, UploadFile)}
    # The button pressed names the step (``send_back_<step>``); its text is for people.
    pressed = [k.removeprefix(SEND_BACK) for k in fields if k.startswith(SEND_BACK)]
    step_id = pressed[0] if len(pressed) == 1 else fields.get("reject_step", "")
    try:
        version = int(fields.get("expected_version", ""))
    except ValueError:
        raise InputError("expected_version", "must be a whole number") from None
    web.bedside.reject_step(
        case_id,
        version,
        step_id,
        fields.get("reject_reason", ""),
        signing_proof(viewer, fields.get("password", ""), user_id_of(fields) or None),
    )
    return RedirectResponse(f"/cases/{case_id}", status_code=303)
