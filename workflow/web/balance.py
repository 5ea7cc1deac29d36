"""The pharmacy bench's balance on the step form (issue 16.3), without script: the partial
``_balance.html`` adds a "Read balance" button per weight the step asks for, which posts the
whole step form here; the server reads one stable weight from its balance (the service's
``read_balance``), puts it in that field (weighed by: balance) and shows the form again with
everything else as it was typed. Without a configured balance (``bench.balance_port``) the
partial says so, and the weights are typed with a reason.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData, UploadFile

from workflow.core.errors import InputError
from workflow.core.protocol.model import Protocol

from .context import Web, web_of
from .formdata import PHOTO_FORM
from .forms import form_echo
from .photos import uploads
from .security import check_csrf
from .settings import PHARMACY

router = APIRouter(include_in_schema=False)


def weight_fields(protocol: Protocol, step_id: str) -> list[dict[str, str]]:
    """The weights the step asks for when the site weighs (none otherwise), with labels."""
    g = protocol.gravimetric
    if g is None:
        return []
    step = protocol.step(step_id)
    out: list[dict[str, str]] = []
    for addition in g.at(step_id):
        for suffix in ("before_g", "after_g"):
            item = step.item(f"{addition.id}_{suffix}")
            if item is not None:
                out.append({"item": item.id, "label": item.label, "addition": addition.id})
    return out


def balance_context(web: Web, protocol: Protocol, step_id: str | None) -> dict[str, Any]:
    """What ``_balance.html`` needs: the weight fields and whether a balance is configured."""
    fields = weight_fields(protocol, step_id) if step_id else []
    return {"fields": fields, "configured": web.bedside.settings.balance_port is not None}


@router.post("/cases/{case_id}/steps/{step_id}/balance")
def read_into_form(
    request: Request, case_id: str, step_id: str, form: FormData = PHOTO_FORM
) -> Response:
    from .pages_clinical import case_context  # the case page's own context, shown again

    web = web_of(request)
    viewer = web.viewer(request, PHARMACY)
    check_csrf(viewer, str(form.get("csrf_token", "")))
    request.state.reload_url = f"/cases/{case_id}"
    view = web.bedside.load(case_id)
    protocol = view.case.protocol
    if step_id not in protocol.step_ids():
        raise InputError("step", f"'{step_id}' is not a step of this case's protocol")
    # The step form has the camera's file inputs, which a browser posts even when empty: they
    # are taken, and not kept (a page cannot put a file back into a file input).
    fields = {k: str(v) for k, v in form.items() if not isinstance(v, UploadFile)}
    dropped = [name for name, data in uploads(form).items() if data]
    echo = form_echo(protocol.step(step_id), fields)
    # A refused reading (no balance, overload, no stable weight) shows the form again as typed.
    request.state.retry = ("case.html", case_context(web, viewer, case_id, step_id, echo, view))
    wanted = {f["item"]: f for f in weight_fields(protocol, step_id)}
    target = fields.get("weigh", "")
    if target not in wanted:
        raise InputError("weigh", f"'{target}' is not a weight of this step", ", ".join(wanted))
    weight = web.bedside.read_balance()
    echo[target] = str(weight.grams)
    echo[f"{wanted[target]['addition']}_weighed_by"] = "balance"
    context = case_context(web, viewer, case_id, step_id, echo, view)
    context["balance_read"] = {
        "label": wanted[target]["label"],
        "reply": weight.reply,
        "photos_dropped": bool(dropped),
    }
    return web.templates.TemplateResponse(request, "case.html", context)
