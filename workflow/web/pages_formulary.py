"""The site formulary page (issue 12.3): the products a vial, diluent or bag scan may be, by
GTIN, listed by pharmacists with a signature; pharmacy staff read it, pharmacists add to it.

Every addition is a signature (password, and the user id when the signing session lapsed, as
for a step) and an audit event, both kept by the service.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from workflow.core.protocol.model import Protocol
from workflow.service.vocabulary import AuthRefused

from .context import Web, web_of
from .formdata import FORM
from .forms import user_id_of
from .present import local
from .security import Viewer, check_csrf, require, signing_proof
from .settings import PHARMACY

router = APIRouter(include_in_schema=False)
EDITORS = ("pharmacist",)


def kind_names(protocol: Protocol) -> dict[str, str]:
    """Each scanned kind in words: the label of its lot item less " lot" ("Sterile water")."""
    out = {}
    for kind, step_id in protocol.scan_steps().items():
        item = protocol.step(step_id).item(f"{kind}_lot")
        label = item.label if item is not None else kind
        out[kind] = label[: -len(" lot")] if label.endswith(" lot") else label
    return out


def formulary_context(
    web: Web, viewer: Viewer, typed: dict[str, str] | None = None
) -> dict[str, Any]:
    b = web.bedside
    names = kind_names(b.protocol)
    tz = b.tz
    users = {u.id: u.printed_name for u in b.list_users()}
    shipped = [
        {"gtin": p.gtin, "kind": names.get(p.kind, p.kind), "description": p.description}
        for p in b.protocol.formulary
    ]
    return {
        "viewer": viewer,
        "title": "Formulary",
        "kinds": names,
        "shipped": shipped,
        "products": [
            {
                "gtin": p.gtin,
                "kind": names.get(p.kind, p.kind),
                "description": p.description,
                "strength": p.strength,
                "added": local(p.added_at, tz),
                "by": users.get(p.added_by_user_id, p.added_by_user_id),
            }
            for p in b.formulary()
        ],
        "events": [
            {
                "at": local(e.at, tz),
                "action": e.action,
                "gtin": e.gtin,
                "detail": e.detail,
                "by": e.printed_name,
                "role": e.role,
                "meaning": e.meaning,
            }
            for e in b.formulary_events()
        ],
        "can_edit": viewer.has_any(EDITORS),
        "typed": typed or {},
    }


@router.get("/pharmacy/formulary")
def formulary(request: Request, gtin: str = "", kind: str = "") -> Response:
    web = web_of(request)
    viewer = web.viewer(request, PHARMACY)
    typed = {"gtin": gtin[:14], "kind": kind[:32]}
    return web.templates.TemplateResponse(
        request, "formulary.html", formulary_context(web, viewer, typed)
    )


@router.post("/pharmacy/formulary")
def add_product(request: Request, form: FormData = FORM) -> Response:
    web = web_of(request)
    viewer = web.viewer(request, PHARMACY)
    check_csrf(viewer, str(form.get("csrf_token", "")))
    require(viewer, EDITORS)
    fields = {k: str(form.get(k, "")) for k in ("gtin", "kind", "description", "strength")}
    request.state.retry = ("formulary.html", formulary_context(web, viewer, fields))
    proof = signing_proof(viewer, str(form.get("password", "")), user_id_of(form))
    try:
        web.bedside.add_to_formulary(
            fields["gtin"], fields["kind"], fields["description"], fields["strength"], proof
        )
    except AuthRefused:
        request.state.retry = ("formulary.html", formulary_context(web, viewer, fields))
        raise
    return RedirectResponse("/pharmacy/formulary", status_code=303)
