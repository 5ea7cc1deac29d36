"""From order to the ward board in Debian's Chromium (issue 12): a prescriber registers a patient,
starts a course with its attestations, opens the first dose by signing its order, and the dose
shows on the ward board and the pharmacy queue, on a landscape and a portrait tablet."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from workflow.dev.walk import order_values

from .conftest import PASSWORD, Site
from .test_e2e_dose import Tablet, browser, server  # noqa: F401  (fixtures)

SIZES = {"landscape": (1280, 800), "portrait": (800, 1280)}


@pytest.mark.parametrize("shape", sorted(SIZES))
def test_order_to_ward_board_in_chromium(
    sqlite_site: Site,
    server: str,  # noqa: F811
    browser: Any,  # noqa: F811
    tmp_path: Path,
    shape: str,
) -> None:
    site = sqlite_site
    tab = Tablet(browser, server, tmp_path, SIZES[shape])
    page = tab.page
    tab.login("dr.okafor")
    page.click("nav a[href='/patients']")
    # Register: two identifiers.
    page.fill("input[name=mrn]", "MRN-5150")
    page.fill("input[name=family_name]", "Moreau")
    page.fill("input[name=given_name]", "Élise")
    page.fill("input[name=date_of_birth]", "1966-09-21")
    tab.shot(f"register-{shape}")
    page.click("#register button[type=submit]")
    assert "MOREAU, Élise" in page.content() and "MRN-5150" in page.content()
    patient = site.bedside.find_patient("MRN-5150")
    assert patient is not None
    # Start the course: every attestation ticked, signed with the password.
    boxes = page.locator("#start-course input[type=checkbox]")
    assert boxes.count() == 5
    for i in range(boxes.count()):
        boxes.nth(i).check()
    page.fill("#start-course input[name=password]", PASSWORD)
    tab.shot(f"course-start-{shape}")
    page.click("#start-course button[type=submit]")
    assert page.locator("#next-due").inner_text().endswith("due now (2026-11-02 06:00 UTC)")
    # Open the first dose by signing its order.
    values = order_values("68", site.clock.now() - timedelta(hours=2))
    tab.fill_step(values)
    page.fill("#open-dose input[name=password]", PASSWORD)
    tab.shot(f"order-{shape}")
    page.click("#open-dose button[type=submit]")
    (course,) = site.bedside.patient_courses(patient.id)
    (dose,) = site.bedside.course_doses(course.id)
    case_id = dose.case.case_id
    assert dose.case.state == "order_verification"
    assert page.locator(f"#dose-{case_id}").is_visible()
    tab.shot(f"patient-{shape}")
    # The ward board: the dose among the ordered ones, due now, not overdue.
    page.click("nav a[href='/ward']")
    row = page.locator(f"#stage-ordered li[data-case='{case_id}']")
    assert row.is_visible()
    assert "OVERDUE" not in row.inner_text() and "2026-11-02 06:00 UTC" in row.inner_text()
    tab.shot(f"ward-board-{shape}")
    # The pharmacy queue: the pharmacist's next step, with its count.
    tab.login("p.lindqvist")
    page.goto(server + "/pharmacy")
    queue_row = page.locator(f"tr[data-case='{case_id}']")
    assert queue_row.is_visible() and "Pharmacist verifies the order" in queue_row.inner_text()
    assert "1 Pharmacist verifies the order" in page.locator("ul.counts").inner_text()
    tab.shot(f"pharmacy-queue-{shape}")
    # Nothing falls off the screen sideways on either tablet.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= SIZES[shape][0], width
