"""A whole dose in Debian's Chromium, from patient registration to the archived record, using
only the browser (issue 12's "done when"), on a landscape and a portrait tablet.

Each person works on their own browser context and signs in on the sign-in page. The order of
the steps and who signs each follow the protocol (checklists/aldesleukin.yaml): the prescriber
registers the patient, starts the course and signs the order; the pharmacist verifies it and
signs the eligibility; a nurse's hold checks fire the SpO2 rule (held) and the prescriber
resumes (side exit ``resume``, prescriber only), after which the nurse's fresh hold checks meet
the rule's resume criterion; the pharmacist lists the vial and sterile water in the formulary;
the technician prepares with the scans typed by a keyboard-wedge scanner and photos; the
pharmacist releases from the photos; two nurses check blind (wristband scans); at the bedside the
label code of another patient's bag (set up through the service) is refused with both
identities in words, then this bag's code, read off the label PDF's DataMatrix with zxing-cpp,
is accepted; the infusion runs with its timer, the case ends, and the signed records are
downloaded from the case page and verified.

The server shares the test's clock, so the test moves time as a ward would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from workflow.core.bag_check import bag_code_of
from workflow.core.gs1 import bag_element_string
from workflow.dev.walk import order_values, values_for

from .conftest import EVIL_NAME, PASSWORD, Site
from .photo_images import GTIN as VIAL_GTIN
from .photo_images import plain_photo, vial_photo
from .test_bag_label_loop import decoded
from .test_e2e_dose import DOCS, Tablet, browser, record_links, server  # noqa: F401  (fixtures)
from .test_e2e_orders import SIZES  # the two tablet viewports the orders walk uses

pytestmark = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="poppler-utils (pdftoppm, pdftotext) reads the label and the records",
)

WATER_GTIN = "00614141000418"  # a made-up GTIN with a valid check digit (test data)
LOT = "PLK2291"
# The screens the README shows, drawn from the landscape walk with BEDSIDE_SCREENSHOTS=1.
DOC_SHOTS = {
    "patient-registration",
    "course-start",
    "ward-board",
    "pharmacy-queue-ordered",
    "formulary",
    "hold-banner-rule",
    "remote-verification",
    "bag-scan-mismatch",
}


class Person:
    """One member of staff on their own browser context (their own tablet or workstation)."""

    def __init__(
        self, chromium: Any, base: str, shots: Path, shape: str, username: str, docs: bool
    ) -> None:
        self.tab = Tablet(chromium, base, shots, SIZES[shape])
        self.tab.context.set_default_timeout(10_000)
        self.page = self.tab.page
        self.base = base
        self.username = username
        self.docs = docs

    def sign_in(self) -> None:
        """On the sign-in page, as every turn starts (a session idles out in 15 minutes)."""
        self.tab.login(self.username)
        assert "/login" not in self.page.url, self.page.content()[-1500:]

    def shot(self, name: str) -> None:
        path = self.tab.shot(name)
        if self.docs and name in DOC_SHOTS:
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, DOCS / f"{name}.png")

    def open_case(self, case_id: str) -> None:
        self.page.goto(f"{self.base}/cases/{case_id}")
        assert self.page.locator(".progress").count() == 1, self.page.content()[-2500:]

    def scan(self, field: str, code: str) -> None:
        """A keyboard-wedge scanner: the code typed into the focused field, then Enter (which
        the page turns into "next field", never a submit)."""
        self.page.locator(f"input[name={field}]").focus()
        self.page.keyboard.type(code)
        self.page.keyboard.press("Enter")

    def sign(self, only: bool = False) -> None:
        """The signature: of every step the form shows (a sitting), or with ``only`` of the
        first alone (the sitting's "Sign ... only")."""
        form = self.page.locator("form.stepform")
        who = form.locator("input[name=username]")
        if who.count():  # a second checker on a shared tablet, or a lapsed signing session
            who.fill(self.username)
        form.locator("input[name=password]").fill(PASSWORD)
        form.locator("input[name=only]" if only else "button[type=submit]").click()

    def also(self, site: Site, case_id: str, step_id: str, **changes: Any) -> None:
        """The next step of a sitting, filled on the same page: the same form, one signature."""
        assert self.page.locator(f"#sitting_{step_id}").is_visible(), self.page.content()[-2500:]
        values = values_for(site.bedside.load(case_id).case, step_id, site.clock.now())
        values.update(changes)
        self.tab.fill_step({k: v for k, v in values.items() if v is not None})

    def step(self, site: Site, case_id: str, step_id: str, **changes: Any) -> None:
        """Open the step's page and fill it the way the case's own plan, label and wristband
        say (``values_for``), less what the test scans (None) or changes; the caller signs."""
        self.open_case(case_id)
        values = values_for(site.bedside.load(case_id).case, step_id, site.clock.now())
        values.update(changes)
        self.tab.fill_step({k: v for k, v in values.items() if v is not None})


def _text(pdf: Path) -> str:
    out = subprocess.run(["pdftotext", "-raw", str(pdf), "-"], capture_output=True, check=True)
    return " ".join(out.stdout.decode().split())


def _other_patients_bag(site: Site) -> str:
    """Another patient's prepared and released bag (the fixture's MRN-7001), through the
    service: its label code is what a nurse would scan by picking up the wrong bag."""
    view = site.walk_to("double_check_first")
    return bag_element_string(bag_code_of(view.case))


@pytest.mark.parametrize("shape", sorted(SIZES))
def test_whole_course_dose_in_the_browser(
    sqlite_site: Site,
    server: str,  # noqa: F811
    browser: Any,  # noqa: F811
    tmp_path: Path,
    shape: str,
) -> None:
    site = sqlite_site
    wrong_bag = _other_patients_bag(site)
    docs = os.environ.get("BEDSIDE_SCREENSHOTS") == "1" and shape == "landscape"

    def person(username: str) -> Person:
        folder = tmp_path / username
        folder.mkdir()
        return Person(browser, server, folder, shape, username, docs)

    prescriber, pharmacist = person("dr.okafor"), person("p.lindqvist")
    technician, nurse, second = person("t.mensah"), person("n.alvarez"), person("n.chen")

    # The prescriber registers the patient (two identifiers) and starts the course.
    prescriber.sign_in()
    page = prescriber.page
    page.click("nav a[href='/patients']")
    page.fill("input[name=mrn]", "MRN-5150")
    page.fill("input[name=family_name]", "Moreau")
    page.fill("input[name=given_name]", "Élise")
    page.fill("input[name=date_of_birth]", "1966-09-21")
    prescriber.shot("patient-registration")
    page.click("#register button[type=submit]")
    assert "MOREAU, Élise" in page.content()
    patient = site.bedside.find_patient("MRN-5150")
    assert patient is not None
    boxes = page.locator("#start-course input[type=checkbox]")
    assert boxes.count() >= 1
    for i in range(boxes.count()):
        boxes.nth(i).check()
    page.fill("#start-course input[name=password]", PASSWORD)
    prescriber.shot("course-start")
    page.click("#start-course button[type=submit]")
    assert "due now" in page.locator("#next-due").inner_text()
    # ... and signs the order for the first dose, due in two hours (pharmacy's time to prepare).
    due = site.clock.now() + timedelta(hours=2)
    page.fill("#open-dose input[name=due_at]", due.strftime("%Y-%m-%dT%H:%M"))
    prescriber.tab.fill_step(order_values("68", site.clock.now() - timedelta(hours=2)))
    page.fill("#open-dose input[name=password]", PASSWORD)
    page.click("#open-dose button[type=submit]")
    (course,) = site.bedside.patient_courses(patient.id)
    (dose,) = site.bedside.course_doses(course.id)
    cid = dose.case.case_id
    assert page.locator(f"#dose-{cid}").is_visible()
    page.click("nav a[href='/ward']")
    assert page.locator(f"#stage-ordered li[data-case='{cid}']").is_visible()
    prescriber.shot("ward-board")

    # The pharmacist verifies the order from the queue, and signs the eligibility on file.
    site.clock.advance(minutes=10)
    pharmacist.sign_in()
    page = pharmacist.page
    page.goto(server + "/pharmacy")
    assert "Pharmacist verifies the order" in page.locator(f"tr[data-case='{cid}']").inner_text()
    pharmacist.shot("pharmacy-queue-ordered")
    page.click(f"tr[data-case='{cid}'] a.btn")
    assert "Pharmacist verifies the order" in page.locator(".step h2").first.inner_text()
    # One sitting: both steps in one form, one signature (each its own signed entry).
    pharmacist.step(site, cid, "order_verification")
    pharmacist.also(site, cid, "eligibility")
    pharmacist.sign()
    assert site.bedside.load(cid).case.state == "hold_checks", page.content()[-2000:]
    flash = page.locator("#flash").inner_text()
    assert "Pharmacist verifies the order and Eligibility on file" in flash, flash
    # The site formulary: the vial and the sterile water the bench scans, each listed signed.
    for gtin, kind, product, strength in (
        (VIAL_GTIN, "vial", "Proleukin (aldesleukin) vial", "22 million IU"),
        (WATER_GTIN, "diluent", "Sterile Water for Injection, USP", "10 mL vial"),
    ):
        page.goto(f"{server}/pharmacy/formulary")
        page.fill("#add-product input[name=gtin]", gtin)
        page.select_option("#add-product select[name=kind]", kind)
        page.fill("#add-product input[name=description]", product)
        page.fill("#add-product input[name=strength]", strength)
        page.fill("#add-product input[name=password]", PASSWORD)
        page.click("#add-product button[type=submit]")
        listed = page.locator("#products").inner_text()
        assert gtin in listed and re.search(r"\d\d:\d\d UTC by Per Lindqvist", listed), listed
    pharmacist.shot("formulary")

    # The hold checks: an SpO2 below 90% holds the dose; the page says the rule in its words.
    site.clock.advance(minutes=20)
    nurse.sign_in()
    page = nurse.page
    assert page.locator(f"li[data-case='{cid}']").is_visible()  # on the ward board
    nurse.step(site, cid, "hold_checks", spo2_pct="88")
    nurse.sign()
    banner = page.locator("#holds")
    assert banner.is_visible(), page.content()[-2000:]
    assert "O2 saturation below 90%: withhold until above 90%" in banner.inner_text()
    assert "Oxygen saturation (SpO2): 88 %" in banner.inner_text()  # the item's words
    nurse.shot("hold-banner-rule")
    assert site.bedside.load(cid).case.on_hold
    page.goto(server + "/ward")
    assert "HELD" in page.locator(f"li[data-case='{cid}']").inner_text()

    # The protocol lets a prescriber resume (side exit, two deliberate steps) ...
    site.clock.advance(minutes=30)
    prescriber.sign_in()
    page = prescriber.page
    page.goto(f"{server}/cases/{cid}")
    page.click(f"#other-actions a[href='/cases/{cid}/exit/resume']")
    page.select_option("#exit-reason", "criteria_met")
    page.fill("#exit-password", PASSWORD)
    prescriber.shot("resume-confirm")
    page.click("#confirm button[type=submit]")
    after = site.bedside.load(cid).case
    assert not after.on_hold and after.state == "hold_checks", page.content()[-2000:]
    # ... and the nurse's fresh hold checks meet the rule's resume criterion (SpO2 above 90%).
    site.clock.advance(minutes=5)
    nurse.sign_in()
    nurse.step(site, cid, "hold_checks")
    nurse.sign()
    after = site.bedside.load(cid).case
    assert after.state == "reconstitution" and not after.awaiting_resume, after.state

    # The technician prepares: scans typed by the scanner, the vial's and syringe's photos.
    site.clock.advance(minutes=15)
    technician.sign_in()
    page = technician.page
    assert page.locator(f"tr[data-case='{cid}']").is_visible()  # the compounding queue
    expiry = (site.clock.now() + timedelta(days=200)).date()
    scanned = {k: None for k in ("vial_lot", "vial_expiry", "vial_gtin", "vial_typed_reason")}
    scanned |= {k: None for k in ("vial_entry", "vial_scan", "diluent_lot", "diluent_expiry")}
    technician.step(site, cid, "reconstitution", **scanned)
    technician.scan("v_vial_scan", f"01{VIAL_GTIN}17{expiry:%y%m%d}10{LOT}")
    technician.scan("v_diluent_scan", f"01{WATER_GTIN}17{expiry:%y%m%d}10SW40812")
    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(vial_photo(LOT, expiry))
    syringe = tmp_path / "IMG_0002.jpg"
    syringe.write_bytes(plain_photo())
    page.locator("input[name=photo_vials]").set_input_files(str(photo))
    page.locator("input[name=photo_syringe]").set_input_files(str(syringe))
    technician.shot("reconstitution-scanned")
    # Each stage when it is done, with its photos: the sitting's "Sign ... only".
    technician.sign(only=True)
    after = site.bedside.load(cid).case
    assert after.state == "dilution", page.content()[-2500:]
    entry = after.current["reconstitution"].values
    assert (entry["vial_entry"], entry["vial_gtin"]) == ("scanned", VIAL_GTIN)
    assert entry["vial_lot"] == LOT
    assert (entry["diluent_entry"], entry["diluent_lot"]) == ("scanned", "SW40812")
    site.clock.advance(minutes=10)
    technician.step(site, cid, "dilution")
    bag = tmp_path / "IMG_0003.jpg"
    bag.write_bytes(plain_photo((200, 180, 90)))
    page.locator("input[name=photo_final_bag]").set_input_files(str(bag))
    technician.sign()
    assert site.bedside.load(cid).case.state == "pharmacy_verification", page.content()[-2000:]
    # The label, printed from the case page; its DataMatrix is what the bedside scanner reads.
    page.goto(f"{server}/cases/{cid}")
    label = page.request.get(server + page.locator("a[href$='/label.pdf']").get_attribute("href"))
    assert label.ok and label.body().startswith(b"%PDF")
    (symbol,) = decoded(label.body())
    this_bag = symbol.text
    assert f"(91){cid}(92)C1D1" in this_bag, this_bag

    # The pharmacist verifies remotely from the photos and releases.
    site.clock.advance(minutes=10)
    pharmacist.sign_in()
    page = pharmacist.page
    pharmacist.step(site, cid, "pharmacy_verification")
    assert page.locator("#verified_reconstitution figure.photo").count() == 2
    assert page.locator("#verified_dilution figure.photo").count() == 1
    assert page.locator(".barcode-agrees").count() == 1  # the vial photo's code = the entry
    page.wait_for_function(
        "() => [...document.querySelectorAll('figure.photo img')].every(i => i.complete)"
    )
    pharmacist.shot("remote-verification")
    pharmacist.sign()
    assert site.bedside.load(cid).case.state == "double_check_first", page.content()[-2000:]

    # Two nurses check blind, each on their own tablet, each scanning the wristband and the
    # bag label (its code fills what it carries: drug, dose, volume, beyond-use time, cycle and
    # dose number; the rest each checker types).
    site.clock.advance(minutes=40)
    for checker, step_id in ((nurse, "double_check_first"), (second, "double_check_second")):
        checker.sign_in()
        checker.step(site, cid, step_id, patient_mrn=None, bag_scan=None)
        html = checker.page.content()
        assert "MRN-5150" not in html and "1966-09-21" not in html  # blinded
        checker.scan("scan_wristband", "MRN-5150")
        checker.scan("v_bag_scan", this_bag)
        checker.sign()
        site.clock.advance(minutes=3)
    checked = site.bedside.load(cid).case
    assert checked.state == "pre_infusion", second.page.content()[-2000:]
    for step_id in ("double_check_first", "double_check_second"):
        assert checked.current[step_id].values["bag_scan"] == this_bag

    # At the bedside: another patient's bag first, refused with both identities in words.
    nurse.sign_in()
    page = nurse.page
    nurse.step(site, cid, "pre_infusion", patient_identifier_mrn=None, bag_scan=None)
    nurse.also(site, cid, "infusion_start")  # hang and start: the same sitting
    nurse.scan("scan_wristband", "MRN-5150")
    nurse.scan("v_bag_scan", wrong_bag)
    nurse.sign()
    error = page.locator("#error")
    assert error.is_visible(), page.content()[-2000:]
    words = " ".join(error.inner_text().split())
    assert "This is not the bag for this dose; do not hang it." in words
    assert "another dose: check whose bag it is" in words and "for MOREAU, Élise" in words
    # Whose bag it is, by name (as text: the fixture's name is markup), never by identifiers.
    assert f"The scanned bag was prepared for RIVERA, {EVIL_NAME} (dose 1 of cycle 1)" in words
    assert "MRN-7001" not in words
    nurse.shot("bag-scan-mismatch")
    assert site.bedside.load(cid).case.state == "pre_infusion"
    # ... then this bag's own label code.
    # ... then this bag's own label code, and the infusion starts with the same signature.
    nurse.step(site, cid, "pre_infusion", patient_identifier_mrn=None, bag_scan=None)
    nurse.also(site, cid, "infusion_start")
    nurse.scan("scan_wristband", "MRN-5150")
    nurse.scan("v_bag_scan", this_bag)
    nurse.sign()
    after = site.bedside.load(cid).case
    assert after.state == "infusion_stop", page.content()[-2000:]
    assert after.current["pre_infusion"].values["bag_scan"] == this_bag
    assert after.given_at == site.clock.now()
    assert "At the bedside before hanging the bag and Start the infusion" in (
        page.locator("#flash").inner_text()
    )

    # The infusion: its timer on the page, stopped on time and observed (one sitting), signed off.
    assert page.locator("#infusion-timer").is_visible(), page.content()[-2000:]
    assert "left" in page.locator("#infusion-timer .countdown").inner_text()
    site.clock.advance(minutes=15)
    nurse.sign_in()
    nurse.step(site, cid, "infusion_stop")
    nurse.also(site, cid, "observation")
    nurse.sign()
    assert site.bedside.load(cid).case.state == "record_sign_off", page.content()[-2000:]
    site.clock.advance(minutes=5)
    nurse.step(site, cid, "record_sign_off")
    nurse.sign()
    assert site.bedside.load(cid).case.state == "completed", page.content()[-2000:]

    # The case page links the signed records: each downloads and verifies.
    records = record_links(page)
    assert records.count() == 2, page.content()[-2000:]
    texts = {}
    for i in range(records.count()):
        with page.expect_download() as dl:
            records.nth(i).click()
        saved = tmp_path / f"record-{i}.pdf"
        dl.value.save_as(saved)
        # pyHanko runs its own event loop: not on this thread, where Playwright's runs.
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(site.archive.verify_bytes, saved.read_bytes()).result()
        assert result.ok, result.failed
        texts[i] = _text(saved)
    (administration,) = [t for t in texts.values() if "Pre-dose hold checks" in t]
    low = administration.casefold()
    assert "o2 saturation below 90%" in low and "resum" in low, administration[-3000:]
    nurse.shot("records")
