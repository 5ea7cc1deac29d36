"""The bench's balance on the dilution form (issue 16.3), against a fake MT-SICS balance on a
pseudo-terminal: the "Read balance" buttons appear only when the server has a balance
(``bench.balance_port``); a reading fills the field and keeps what was typed; an overload is
refused with the form shown again; a weighed volume outside the tolerance is refused by the
same core check as everywhere else."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from core.test_gravimetric import HEAD, ITEMS
from interop.test_balance import FakeBalance

from workflow.core.protocol import Protocol, load_protocol
from workflow.core.protocol.overlay import load_overlay
from workflow.dev.walk import values_for
from workflow.records.case_records import compounding_record
from workflow.resources import default_protocol_path

from .conftest import PASSWORD, Site, csrf_of, form_of, version_of
from .photo_images import plain_photo


@pytest.fixture
def protocol(tmp_path: Path) -> Protocol:
    """The shipped protocol with a site overlay that weighs the dose into the bag (a file: the
    store pins the overlay's text with the cases)."""
    path = tmp_path / "site.overlay.yaml"
    path.write_text(HEAD + ITEMS + "gravimetric:\n  enabled: true\n")
    return load_overlay(path, load_protocol(default_protocol_path()))


@pytest.fixture
def balances() -> Iterator[list[FakeBalance]]:
    made: list[FakeBalance] = []
    yield made
    for b in made:
        b.close()


def with_balance(site: Site, made: list[FakeBalance], *replies: str) -> None:
    b = FakeBalance(list(replies))
    made.append(b)
    site.bedside.settings = replace(site.bedside.settings, balance_port=b.port)


def field_value(html: str, item_id: str) -> str | None:
    m = re.search(rf'name="v_{item_id}"[^>]*value="([^"]*)"', html, re.S)
    return m.group(1) if m else None


def test_read_balance_fills_the_field_and_keeps_the_form(
    sqlite_site: Site, balances: list[FakeBalance]
) -> None:
    site = sqlite_site
    view = site.walk_to("dilution")
    cid = view.case.case_id
    tech = site.client("t.mensah")
    page = tech.get(f"/cases/{cid}")
    assert "No balance is connected here" in page.text and "Read balance" not in page.text

    with_balance(site, balances, "S D      61.200 g", "S S      61.250 g")
    page = tech.get(f"/cases/{cid}")
    assert f'formaction="/cases/{cid}/steps/dilution/balance"' in page.text
    assert "Read balance: Bag weight before the dose" in page.text
    values = values_for(site.bedside.load(cid).case, "dilution", site.clock.now())
    form = form_of(values) | {
        "csrf_token": csrf_of(page.text),
        "expected_version": version_of(page.text),
        "weigh": "dose_added_before_g",
    }
    r = tech.post(f"/cases/{cid}/steps/dilution/balance", data=form)
    assert r.status_code == 200, r.text
    assert field_value(r.text, "dose_added_before_g") == "61.250"
    assert field_value(r.text, "d5w_lot") == values["d5w_lot"]  # what was typed stays
    assert re.search(r'value="balance"\s*(checked|selected)', r.text)
    assert "read from the balance (S S      61.250 g)" in r.text

    # An overload: refused, the form shown again as it was.
    with_balance(site, balances, "S +")
    r = tech.post(f"/cases/{cid}/steps/dilution/balance", data=form)
    assert r.status_code in (409, 422) and "overload" in r.text
    assert field_value(r.text, "d5w_lot") == values["d5w_lot"]


def test_the_weighed_volume_is_judged_when_the_form_is_signed(sqlite_site: Site) -> None:
    site = sqlite_site
    view = site.walk_to("dilution")
    cid = view.case.case_id
    plan = view.case.plan
    assert plan is not None
    tech = site.client("t.mensah")
    page = tech.get(f"/cases/{cid}")
    values = values_for(view.case, "dilution", site.clock.now())
    base = form_of(values) | {
        "csrf_token": csrf_of(page.text),
        "expected_version": version_of(page.text),
        "password": PASSWORD,
        "v_dose_added_before_g": "60.000",
        "v_dose_added_weighed_by": "typed",
        "v_dose_added_typed_reason": "no_balance",
    }
    too_much = str(Decimal("60.000") + plan.reconstituted_volume_ml * 2)
    r = tech.post(f"/cases/{cid}/steps/dilution", data=base | {"v_dose_added_after_g": too_much})
    assert r.status_code == 422, r.text
    assert "is outside the tolerance" in r.text and "planned" in r.text
    assert site.bedside.load(cid).case.state == "dilution"
    right = str(Decimal("60.000") + plan.reconstituted_volume_ml)
    r = tech.post(
        f"/cases/{cid}/steps/dilution",
        data=base | {"v_dose_added_after_g": right},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert site.bedside.load(cid).case.state == "pharmacy_verification"


def hidden_readings(html_text: str) -> dict[str, str]:
    return {
        name: html.unescape(value)
        for name, value in re.findall(
            r'<input type="hidden" name="(balance_reading_[a-z_]+)" value="([^"]*)">', html_text
        )
    }


def test_the_balance_reply_and_serial_are_signed_and_printed(
    sqlite_site: Site, balances: list[FakeBalance]
) -> None:
    """Issue 16 (orders16.5): each weight read from the balance carries the balance's reply
    line and serial number (I4) with the form, sealed by the server; the signature keeps them
    in the step's event and the compounding record prints them. A reading altered in the
    browser is refused; a weight typed over a reading is recorded as typed."""
    site = sqlite_site
    view = site.walk_to("dilution")
    cid = view.case.case_id
    plan = view.case.plan
    assert plan is not None
    after_g = f"{Decimal('61.250') + plan.reconstituted_volume_ml:.3f}"
    tech = site.client("t.mensah")
    page = tech.get(f"/cases/{cid}")
    values = values_for(site.bedside.load(cid).case, "dilution", site.clock.now())
    form = form_of(values) | {
        "csrf_token": csrf_of(page.text),
        "expected_version": version_of(page.text),
    }
    with_balance(site, balances, "S S      61.250 g")
    r = tech.post(
        f"/cases/{cid}/steps/dilution/balance", data=form | {"weigh": "dose_added_before_g"}
    )
    assert r.status_code == 200, r.text
    assert "balance serial B842315077" in r.text
    first = hidden_readings(r.text)
    assert list(first) == ["balance_reading_dose_added_before_g"]
    with_balance(site, balances, f"S S      {after_g} g")
    form |= first | {
        "v_dose_added_before_g": "61.250",
        "v_dose_added_weighed_by": "balance",
    }
    r = tech.post(
        f"/cases/{cid}/steps/dilution/balance", data=form | {"weigh": "dose_added_after_g"}
    )
    assert r.status_code == 200, r.text
    both = hidden_readings(r.text)
    assert len(both) == 2  # the first reading rode along
    signed = form | both | {"v_dose_added_after_g": after_g, "password": PASSWORD}

    # Altered in the browser (another reply than the server read): refused, nothing signed.
    forged = json.loads(both["balance_reading_dose_added_after_g"])
    forged["reply"] = "S S      99.999 g"
    r = tech.post(
        f"/cases/{cid}/steps/dilution",
        data=signed | {"balance_reading_dose_added_after_g": json.dumps(forged)},
    )
    assert r.status_code in (409, 422), r.text
    assert "read the balance again" in r.text
    assert site.bedside.load(cid).case.state == "dilution"

    r = tech.post(f"/cases/{cid}/steps/dilution", data=signed, follow_redirects=False)
    assert r.status_code == 303, r.text
    case = site.bedside.load(cid).case
    event = case.events[case.current["dilution"].seq - 1]
    kept = event.data["balance_readings"]
    assert kept["dose_added_before_g"]["reply"] == "S S      61.250 g"
    assert kept["dose_added_after_g"]["reply"] == f"S S      {after_g} g"
    assert {r["serial"] for r in kept.values()} == {"B842315077"}
    record = compounding_record(case, "0" * 64)
    assert record is not None
    [grav] = [s for s in record.sections if s.key == "gravimetric"]
    before = next(row for row in grav.rows if row.label.endswith(": before"))
    assert "reply 'S S      61.250 g', balance serial B842315077" in (before.note or "")


def test_a_weight_typed_over_a_reading_is_recorded_as_typed(
    sqlite_site: Site, balances: list[FakeBalance]
) -> None:
    site = sqlite_site
    view = site.walk_to("dilution")
    cid = view.case.case_id
    plan = view.case.plan
    assert plan is not None
    tech = site.client("t.mensah")
    page = tech.get(f"/cases/{cid}")
    values = values_for(site.bedside.load(cid).case, "dilution", site.clock.now())
    form = form_of(values) | {
        "csrf_token": csrf_of(page.text),
        "expected_version": version_of(page.text),
    }
    with_balance(site, balances, "S S      61.250 g")
    r = tech.post(
        f"/cases/{cid}/steps/dilution/balance", data=form | {"weigh": "dose_added_before_g"}
    )
    signed = (
        form
        | hidden_readings(r.text)
        | {
            "password": PASSWORD,
            "v_dose_added_before_g": "60.000",  # typed over the reading
            "v_dose_added_after_g": f"{Decimal('60.000') + plan.reconstituted_volume_ml:.3f}",
            "v_dose_added_weighed_by": "typed",
            "v_dose_added_typed_reason": "balance_down",
        }
    )
    r = tech.post(f"/cases/{cid}/steps/dilution", data=signed, follow_redirects=False)
    assert r.status_code == 303, r.text
    case = site.bedside.load(cid).case
    assert "balance_readings" not in case.events[case.current["dilution"].seq - 1].data


def test_read_balance_takes_the_form_a_browser_posts_with_its_camera_inputs(
    sqlite_site: Site, balances: list[FakeBalance]
) -> None:
    """A browser posts every file input, an empty one as a file part with no name: the button
    used to be refused ("a file cannot be posted here") on the dilution form, which has the
    final bag's camera input. A photo already chosen is not kept, and the page says so."""
    site = sqlite_site
    view = site.walk_to("dilution")
    cid = view.case.case_id
    tech = site.client("t.mensah")
    with_balance(site, balances, "S S      61.250 g")
    page = tech.get(f"/cases/{cid}")
    values = values_for(site.bedside.load(cid).case, "dilution", site.clock.now())
    form = form_of(values) | {
        "csrf_token": csrf_of(page.text),
        "expected_version": version_of(page.text),
        "weigh": "dose_added_before_g",
    }
    url = f"/cases/{cid}/steps/dilution/balance"
    r = tech.post(url, data=form, files={"photo_final_bag": ("", b"", "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert field_value(r.text, "dose_added_before_g") == "61.250"
    assert "not kept" not in r.text
    photo = plain_photo()
    r = tech.post(url, data=form, files={"photo_final_bag": ("bag.jpg", photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    assert "The photos chosen before the reading were not kept: choose them again." in r.text
    # Only the camera's parts: any other file is still refused, naming it.
    r = tech.post(url, data=form, files={"v_d5w_lot": ("x.txt", b"x", "text/plain")})
    assert r.status_code == 422 and "a file cannot be posted here" in r.text
    assert site.bedside.load(cid).version == view.version
