"""Issue 12.4: the staff badge. The admin page prints a test badge (Code 128 of the user id with
the printed name and roles); the sign-in page and a signature form that asks for the user id
start with a "Scan your badge" field. A scanner acting as a keyboard types the user id and
Enter: the page fills the user id and moves to the password, never submitting; without script
the server takes the scan. The password is always typed."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import zxingcpp
from PIL import Image

from workflow.dev.walk import values_for

from .conftest import PASSWORD, Site, csrf_of, form_of
from .test_bedside_scan import _post_step
from .test_e2e_dose import Tablet, browser, server  # noqa: F401 (fixtures)
from .test_pages import page_login


def test_admin_prints_a_test_badge_that_scans_as_the_user_id(
    sqlite_site: Site, tmp_path: Path
) -> None:
    site = sqlite_site
    admin = page_login(site, "root")
    assert 'action="/admin/badge.pdf"' in admin.get("/admin/users").text
    r = admin.get("/admin/badge.pdf", params={"username": "n.chen"})
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    pdf = tmp_path / "badge.pdf"
    pdf.write_bytes(r.content)
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    user = site.bedside.get_user("n.chen")
    assert user.printed_name in text and "User id n.chen" in text and "TEST BADGE" in text
    subprocess.run(
        ["pdftoppm", "-png", "-r", "300", "-singlefile", str(pdf), str(tmp_path / "badge")],
        check=True,
    )
    with Image.open(tmp_path / "badge.png") as image:
        found = zxingcpp.read_barcodes(image)
    assert [(b.format, b.text) for b in found] == [(zxingcpp.BarcodeFormat.Code128, "n.chen")]
    assert admin.get("/admin/badge.pdf", params={"username": "nobody"}).status_code == 404
    assert admin.get("/admin/badge.pdf").status_code in (400, 422)
    nurse = page_login(site, "n.alvarez")
    assert nurse.get("/admin/badge.pdf", params={"username": "n.chen"}).status_code == 403


def test_without_script_the_badge_scan_is_the_user_id(sqlite_site: Site) -> None:
    site = sqlite_site
    # The blinded second checker signs on the first nurse's tablet with her badge.
    view = site.walk_to("double_check_second")
    cid = view.case.case_id
    client = site.client()
    page = client.get("/login")
    assert 'name="scan_badge"' in page.text and "Scan your badge" in page.text
    r = client.post(
        "/login",
        data={
            "scan_badge": "n.alvarez\r\n",
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[-1500:]
    values = values_for(view.case, "double_check_second", site.clock.now())
    r = _post_step(
        site, client, cid, "double_check_second", {**form_of(values), "scan_badge": "n.chen"}
    )
    assert r.status_code == 200, r.text[-1500:]
    after = site.bedside.load(cid).case
    assert after.state == "pre_infusion"
    assert after.current["double_check_second"].signer.user_id == site.bedside.get_user("n.chen").id


def test_badge_scan_with_a_keyboard_scanner_in_chromium(
    sqlite_site: Site,
    server: str,  # noqa: F811
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    site = sqlite_site
    view = site.walk_to("double_check_second")
    cid = view.case.case_id
    tab = Tablet(browser, server, tmp_path, (1024, 768))
    page = tab.page
    page.goto(f"{server}/login")
    badge = page.locator("input[data-badge]")
    assert badge.evaluate("e => e === document.activeElement")  # focused, ready for the scanner
    page.keyboard.type("n.alvarez")
    page.keyboard.press("Enter")
    assert page.url.endswith("/login")  # Enter did not submit
    assert page.locator("input[name=username]").input_value() == "n.alvarez"
    assert page.locator("input[name=password]").evaluate("e => e === document.activeElement")
    page.keyboard.type(PASSWORD)  # the password is always typed
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/login" not in url)
    # The second checker's signature on this tablet: her badge, then her password.
    page.goto(f"{server}/cases/{cid}")
    form = page.locator("form.stepform")
    values = values_for(site.bedside.load(cid).case, "double_check_second", site.clock.now())
    bag = str(values.pop("bag_scan"))
    del values["bag_entry"], values["patient_mrn"]
    page.locator("input[data-wristband]").focus()
    page.keyboard.type("MRN-7001")
    page.keyboard.press("Enter")
    form.locator("input[name=v_bag_scan]").focus()
    page.keyboard.type(bag)  # the bag label's code, as the scanner types it
    page.keyboard.press("Enter")
    assert form.locator("input[name=v_bag_entry][value=scanned]").is_checked()
    tab.fill_step(values)
    form.locator("input[data-badge]").focus()
    page.keyboard.type("n.chen")
    page.keyboard.press("Enter")
    assert form.locator("input[name=username]").input_value() == "n.chen"
    assert page.url.endswith(f"/cases/{cid}")
    page.keyboard.type(PASSWORD)
    tab.shot("badge-second-checker")
    form.locator("button[type=submit]").click()
    page.wait_for_url(lambda url: "signed=" in url)
    after = site.bedside.load(cid).case
    assert after.state == "pre_infusion", page.content()[-2000:]
    signed = after.current["double_check_second"]
    assert (
        signed.signer.user_id == site.bedside.get_user("n.chen").id
        and signed.values["drug_name"] == "aldesleukin"
    )
