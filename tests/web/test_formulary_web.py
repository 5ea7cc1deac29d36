"""The site formulary (issue 12.3): an unknown GTIN scan is refused with the offer to list it
(pharmacist only), the listing is signed with the pharmacist's password and audited, and the
same scan then works; other roles are refused."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi.testclient import TestClient

from workflow.dev.walk import values_for
from workflow.identity import audit

from .conftest import PASSWORD, Site, csrf_of, form_of, version_of
from .test_pages import page_login

GTIN = "00614141000418"  # a made-up GTIN with a valid check digit (test data, not a product)


def _vial_scan(site: Site) -> str:
    expiry = (site.clock.now() + timedelta(days=200)).date()
    return f"01{GTIN}17{expiry:%y%m%d}10PLK2291"


def _scanned_reconstitution(site: Site, cid: str) -> dict[str, str]:
    values = values_for(site.bedside.load(cid).case, "reconstitution", site.clock.now())
    for k in ("vial_typed_reason", "vial_lot", "vial_expiry", "vial_gtin"):
        values.pop(k, None)
    values.update(vial_entry="scanned", vial_scan=_vial_scan(site))
    return form_of(values)


def _sign(client: TestClient, cid: str, data: dict[str, str]) -> httpx.Response:
    page = client.get(f"/cases/{cid}")
    return client.post(
        f"/cases/{cid}/steps/reconstitution",
        data={
            "csrf_token": csrf_of(page.text),
            "expected_version": version_of(page.text),
            "password": PASSWORD,
            **data,
        },
    )


def _add(client: TestClient, **fields: str) -> httpx.Response:
    page = client.get("/pharmacy/formulary")
    assert page.status_code == 200
    data = {"csrf_token": csrf_of(page.text), "password": PASSWORD, "kind": "vial"}
    data.update(description="Proleukin (aldesleukin) vial", strength="22 million IU", gtin=GTIN)
    data.update(fields)
    return client.post("/pharmacy/formulary", data=data, follow_redirects=False)


def test_unknown_gtin_is_refused_with_an_offer_then_listed_and_scanned(site: Site) -> None:
    view = site.walk_to("reconstitution")
    cid = view.case.case_id
    tech = page_login(site, "t.mensah")
    r = _sign(tech, cid, _scanned_reconstitution(site, cid))
    assert r.status_code == 422
    text = r.text
    assert "not a product the formulary lists" in text and 'id="formulary-offer"' in text
    assert "A pharmacist can list it" in text and "/pharmacy/formulary?gtin=" not in text
    pharmacist = page_login(site, "p.lindqvist")
    r = _sign(pharmacist, cid, _scanned_reconstitution(site, cid))
    assert f"/pharmacy/formulary?gtin={GTIN}&amp;kind=vial" in r.text
    offer = pharmacist.get("/pharmacy/formulary", params={"gtin": GTIN, "kind": "vial"})
    assert f'value="{GTIN}"' in offer.text

    # A wrong password lists nothing; the right one lists the product, signed and audited.
    assert _add(pharmacist, password="wrong").status_code == 401
    assert site.bedside.formulary() == []
    r = _add(pharmacist)
    assert r.status_code == 303, r.text
    (product,) = site.bedside.formulary()
    assert (product.gtin, product.kind, product.strength) == (GTIN, "vial", "22 million IU")
    (event,) = site.bedside.formulary_events()
    assert event.action == "added" and event.gtin == GTIN
    assert (event.printed_name, event.role, event.meaning) == (
        "Per Lindqvist, PharmD",
        "pharmacist",
        "approved",
    )
    signs = site.bedside.identity.auth_events(username="p.lindqvist")
    assert any(e.action == audit.SIGN and e.outcome == audit.OK for e in signs)
    listed = pharmacist.get("/pharmacy/formulary").text
    assert GTIN in listed and "22 million IU" in listed and "signed by" in listed

    # The same scan now fills the vial's GTIN, lot and expiry.
    r = _sign(tech, cid, _scanned_reconstitution(site, cid))
    assert r.status_code == 200, r.text[-1500:]
    after = site.bedside.load(cid)
    assert after.case.state == "dilution"
    entry = after.case.current["reconstitution"].values
    assert entry["vial_gtin"] == GTIN and entry["vial_lot"] == "PLK2291"
    # A listed GTIN is listed once.
    r = _add(pharmacist)
    assert r.status_code == 422 and "in the formulary already" in r.text


def test_formulary_input_and_roles(sqlite_site: Site) -> None:
    site = sqlite_site
    pharmacist = page_login(site, "p.lindqvist")
    r = _add(pharmacist, gtin="00614141000419")
    assert r.status_code == 422 and "check digit" in r.text
    r = _add(pharmacist, gtin="12ab")
    assert r.status_code == 422 and "8, 12, 13 or 14 digits" in r.text
    r = _add(pharmacist, kind="syringe")
    assert r.status_code == 422 and "not a scanned item" in r.text
    r = _add(pharmacist, strength="")
    assert r.status_code == 422
    assert site.bedside.formulary() == [] and site.bedside.formulary_events() == []
    tech = page_login(site, "t.mensah")
    assert tech.get("/pharmacy/formulary").status_code == 200  # pharmacy staff read it
    assert 'id="add-product"' not in tech.get("/pharmacy/formulary").text
    assert _add(tech).status_code == 403
    nurse = page_login(site, "n.alvarez")
    assert nurse.get("/pharmacy/formulary").status_code == 403
    assert site.bedside.formulary() == []
