"""The bedside wristband scan in Debian's Chromium: a scanner acting as a keyboard types the
MRN into the focused scan field and presses Enter; the page moves on instead of submitting, and
the signed step records the MRN the wristband carried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workflow.dev.walk import values_for

from .conftest import Site
from .test_e2e_dose import Tablet, browser, server  # noqa: F401 (fixtures)


def test_wristband_scan_with_a_keyboard_scanner(
    sqlite_site: Site,
    server: str,  # noqa: F811
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    site = sqlite_site
    site.new_course("MRN-7002", "Doe", "Jane", "1980-05-01")
    view = site.walk_to("pre_infusion")
    cid = view.case.case_id
    tab = Tablet(browser, server, tmp_path, (1024, 768))
    tab.login("n.alvarez")
    page = tab.page
    page.goto(f"{server}/cases/{cid}")
    scan = page.locator("input[data-wristband]")
    assert scan.evaluate("e => e === document.activeElement")  # focused, ready for the scanner
    values = values_for(site.bedside.load(cid).case, "pre_infusion", site.clock.now())
    del values["patient_identifier_mrn"]
    # The wrong patient's wristband first: refused in words, nothing signed.
    page.keyboard.type("MRN-7002")
    page.keyboard.press("Enter")
    assert not scan.evaluate("e => e === document.activeElement")  # Enter moved on
    assert page.url.endswith(f"/cases/{cid}")  # and did not submit the half-filled form
    tab.fill_step(values)
    tab.sign()
    error = page.locator("#error")
    assert error.is_visible()
    assert "wristband: DOE, Jane MRN MRN-7002 — this dose: RIVERA," in error.inner_text()
    tab.shot("wristband-wrong-patient")
    assert site.bedside.load(cid).case.state == "pre_infusion"
    # The right wristband: the step is signed with the scanned MRN.
    page.goto(f"{server}/cases/{cid}")
    page.locator("input[data-wristband]").focus()
    page.keyboard.type("MRN-7001")
    page.keyboard.press("Enter")
    tab.fill_step(values)
    tab.shot("wristband-scanned")
    tab.sign()
    after = site.bedside.load(cid)
    assert after.case.state == "infusion_start", page.content()[-2000:]
    assert after.case.current["pre_infusion"].values["patient_identifier_mrn"] == "MRN-7001"
