"""The pharmacy bench's balance on the step form (issue 16.3), without script: the partial
``_balance.html`` adds a "Read balance" button per weight the step asks for, which posts the
whole step form here; the server reads one stable weight from its balance (the service's
``read_balance``), puts it in that field (weighed by: balance) and shows the form again with
everything else as it was typed. Without a configured balance (``bench.balance_port``) the
partial says so, and the weights are typed with a reason.

Each reading travels with the form as a hidden field ``balance_reading_<item>`` holding the
balance's reply line, its serial number, when it was read and the server's seal over them
(``Bedside.read_balance_for``); the signature sends them back, the service checks the seal and
the core keeps the reply in the signed step event (and checks it is the weight entered), so
the compounding record shows the weight came from the balance. A reading whose weight was
typed over, or whose addition was set to "typed", is not sent: that weight is a typed one.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
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


READING = "balance_reading_"  # + the weight item's id: a reading's hidden form field


def balance_context(
    web: Web,
    protocol: Protocol,
    step_id: str | None,
    readings: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """What ``_balance.html`` needs: the weight fields, whether a balance is configured, and
    the readings made so far on this form (carried as hidden fields)."""
    fields = weight_fields(protocol, step_id) if step_id else []
    return {
        "fields": fields,
        "configured": web.bedside.settings.balance_port is not None,
        "readings": [
            {"name": f"{READING}{item}", "value": json.dumps(r, sort_keys=True)}
            for item, r in sorted((readings or {}).items())
        ],
    }


def readings_from_form(fields: dict[str, str]) -> dict[str, dict[str, str]]:
    """The readings a posted form carries, by item (unreadable ones are dropped: the weight
    is then a typed one)."""
    out: dict[str, dict[str, str]] = {}
    for name, raw in fields.items():
        if not name.startswith(READING):
            continue
        try:
            found = json.loads(raw)
        except ValueError:
            continue
        if isinstance(found, dict):
            out[name[len(READING) :]] = {str(k): str(v) for k, v in found.items()}
    return out


def readings_to_sign(
    protocol: Protocol, step_id: str, fields: dict[str, str], values: dict[str, Any]
) -> dict[str, dict[str, str]]:
    """The readings that still are the form's weights: the entered weight is the one read and
    its addition says "weighed by: balance". The others are left out (typed weights)."""
    additions = {f["item"]: f["addition"] for f in weight_fields(protocol, step_id)}
    out = {}
    for item, reading in readings_from_form(fields).items():
        addition = additions.get(item)
        if addition is None or values.get(f"{addition}_weighed_by") != "balance":
            continue
        try:
            same = Decimal(str(values.get(item))) == Decimal(reading.get("grams", ""))
        except (InvalidOperation, ValueError):
            same = False
        if same:
            out[item] = reading
    return out


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
    reading = web.bedside.read_balance_for(case_id, target)
    echo[target] = str(reading.grams)
    echo[f"{wanted[target]['addition']}_weighed_by"] = "balance"
    readings = readings_from_form(fields)
    readings[target] = {**reading.form_value(), "grams": str(reading.grams)}
    context = case_context(web, viewer, case_id, step_id, echo, view)
    context["balance"] = balance_context(web, protocol, step_id, readings)
    context["balance_read"] = {
        "label": wanted[target]["label"],
        "reply": reading.reply,
        "serial": reading.serial,
        "photos_dropped": bool(dropped),
    }
    return web.templates.TemplateResponse(request, "case.html", context)
