"""The pharmacy's IV workflow end to end (issue 16's done-when), in Debian's Chromium.

An HL7 v2 RDE^O11, written like a hospital's interface engine writes it (escapes in MSH, the
PID's identifier and name repetitions, a Z-segment), goes over a real MLLP socket to the
listener `bedside interface hl7` runs, for a patient whose course was started through the
service; the ACK is AA and the dose is on the pharmacy queue. In Chromium the pharmacist
verifies the order; the technician prepares with real photos from the tablet's camera input and
with the bag's weights read from a balance (a pseudo-terminal answering MT-SICS) through the
page's "Read balance" buttons; the pharmacist verifies remotely, the photos beside the entries,
and releases; the nurses double-check, scan the bag label (its code read from the label PDF's
DataMatrix with zxing-cpp) at the bedside and infuse. The next dose's NW order comes over MLLP
and its DC takes it off the queue, which the queue page shows. The compounding record shows
the photos (thumbnails and hashes) and the weights.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from interop.hl7_support import Sender, listener, msa
from interop.test_balance import FakeBalance

from workflow.dev.walk import course_attestations, values_for

from .conftest import PASSWORD, Site, cred
from .photo_images import plain_photo, vial_photo
from .test_bag_label_loop import decoded
from .test_balance_web import balances, protocol
from .test_e2e_dose import Tablet, browser, server

# Fixtures, used by name: the gravimetric site's protocol and the simulated balances come
# from the balance tests.
__all__ = ["balances", "browser", "protocol", "server"]

MRN = "MRN-4711"
LOT = "PLK2291"  # the vial lot workflow.dev.walk enters
BEFORE_G = Decimal("61.250")


def rde(control_id: str, control: str, placer: str, start: str, reason: str = "") -> str:
    """A pharmacy order as the hospital's engine sends it: CR between segments, an escaped
    ``&`` in the sending facility, the SSN before the MRN in PID-3 and an alias after the legal
    name in PID-5 (repetitions), escapes in the free text, and a local Z-segment."""
    return "\r".join(
        [
            f"MSH|^~\\&|EPIC|GEN\\T\\HOSP^1.2.840.114350^ISO|BEDSIDE|ONC|202611020555||"
            f"RDE^O11^RDE_O11|{control_id}|P|2.5.1|||AL|NE|||en^English^ISO639",
            f"PID|1||555-44-3333^^^SSA^SS~{MRN}^^^GENHOSP^MR||Quist^Ada^^^^^L~Q^A^^^^^A||"
            "19680502|F|||12 Elm St\\T\\Annex^^Springfield",
            "PV1|1|I|4W^412^1^GENHOSP||||1234^Okafor^Amara",
            f"ORC|{control}|{placer}^EPIC|||||^^^{start}^^R|||||"
            f"1234^Okafor^Amara^^^Dr^^^NPI||||{reason}",
            f"TQ1|1||Q8H^Every 8 hours||||{start}||R",
            f"RXE|^^^{start}^^R|AL600^Aldesleukin^LOCAL|600000||"
            "IU/kg^international units per kilogram|INJ^Injection|",
            "OBX|1|NM|29463-7^Body weight^LN||72.5|kg^kilogram^UCUM|||||F|||202611020500|||"
            "standing_scale",
            "NTE|1|P|Weigh before each dose\\F\\ see the unit\\E\\s protocol",
            "ZRX|1|EPIC-INTERNAL^ignored\\F\\here|",
        ]
    )


def sign(tab: Tablet, username: str | None = None) -> None:
    """The step form's signature button (a "Read balance" button is a submit button too)."""
    form = tab.page.locator("form.stepform")
    if username is not None:
        form.locator("input[name=username]").fill(username)
    form.locator("input[name=password]").fill(PASSWORD)
    # One step at a time here (the sitting's "Sign ... only"): tests/web/test_e2e_course.py
    # signs the sittings together.
    only = form.locator("input[name=only]")
    with tab.page.expect_navigation():  # the signature's answer, whichever it is
        (only if only.count() else form.locator("button.primary[type=submit]")).click()


def open_step(site: Site, tab: Tablet, cid: str, step: str, **override: Any) -> None:
    values = values_for(site.bedside.load(cid).case, step, site.clock.now())
    tab.page.goto(f"{tab.base}/cases/{cid}?step={step}")
    tab.fill_step({**values, **override})


def do(site: Site, tab: Tablet, cid: str, step: str, shot: str, **kw: Any) -> None:
    """Sign ``step`` in the browser ``after`` minutes (signed in again as ``who``: a tablet
    signs out after 15 idle minutes)."""
    site.clock.advance(minutes=kw.pop("after", 5))
    if "who" in kw:
        tab.login(kw.pop("who"))
    open_step(site, tab, cid, step, **kw.pop("values", {}))
    tab.shot(shot)
    sign(tab, **kw)
    assert site.bedside.load(cid).case.state != step, tab.page.content()[-3000:]


def test_hl7_order_to_infusion_with_photos_weights_and_a_discontinued_next_dose(
    sqlite_site: Site,
    server: str,
    browser: Any,
    balances: list[FakeBalance],
    tmp_path: Path,
) -> None:
    site = sqlite_site
    b = site.bedside
    patient = b.register_patient(
        mrn=MRN, family_name="Quist", given_name="Ada", date_of_birth="1968-05-02", by="test"
    )
    course = b.start_course(patient.id, cred("dr.okafor"), course_attestations(b.protocol))
    tab = Tablet(browser, server, tmp_path, (1024, 1366))
    # Photos, weights and the balance on a loaded machine may pass the Tablet's 5 s, which is
    # not what this test is about.
    tab.context.set_default_timeout(20_000)
    page = tab.page

    with listener(b) as port:
        sender = Sender(port)
        try:
            # -- the order arrives over MLLP ---------------------------------------------
            code, control, text = msa(sender.send(rde("MSG0001", "NW", "ORD1001", "202611020800")))
            assert (code, control) == ("AA", "MSG0001"), text
            (dose,) = b.course_doses(course.id)
            cid = dose.case.case_id
            assert dose.case.state == "order_verification"
            tab.login("p.lindqvist")
            page.goto(f"{server}/pharmacy")
            row = page.locator(f"tr[data-case='{cid}']")
            assert "Pharmacist verifies the order" in row.inner_text()
            tab.shot("queue-order-arrived")
            do(site, tab, cid, "order_verification", "order-verification")
            do(site, tab, cid, "eligibility", "eligibility")
            do(site, tab, cid, "hold_checks", "hold-checks", after=20, who="n.alvarez")

            # -- the technician prepares: photos from the camera input -------------------
            site.clock.advance(minutes=5)
            vials = tmp_path / "IMG_0101.jpg"
            vials.write_bytes(vial_photo(LOT, (site.clock.now() + timedelta(days=200)).date()))
            syringe = tmp_path / "IMG_0102.png"
            syringe.write_bytes(plain_photo((200, 200, 210), fmt="PNG"))
            bag = tmp_path / "IMG_0103.jpg"
            bag.write_bytes(plain_photo((230, 230, 200)))
            tab.login("t.mensah")
            open_step(site, tab, cid, "reconstitution")
            page.locator("input[name=photo_vials]").set_input_files(str(vials))
            page.locator("input[name=photo_syringe]").set_input_files(str(syringe))
            tab.shot("reconstitution-photos")
            sign(tab)
            assert b.load(cid).case.state == "dilution", page.content()[-3000:]

            # -- and weighs the dose into the bag on the balance -------------------------
            plan = b.load(cid).case.plan
            assert plan is not None
            after_g = BEFORE_G + plan.reconstituted_volume_ml  # specific gravity 1.0 g/mL
            balance = FakeBalance(
                ["S D      61.180 g", f"S S {BEFORE_G:>11} g", f"S S {after_g:>11.3f} g"]
            )
            balances.append(balance)
            b.settings = replace(b.settings, balance_port=balance.port)
            site.clock.advance(minutes=5)
            open_step(site, tab, cid, "dilution")
            with page.expect_navigation():
                page.click("button[name=weigh][value=dose_added_before_g]")
            assert page.locator("input[name=v_dose_added_before_g]").input_value() == "61.250"
            with page.expect_navigation():
                page.click("button[name=weigh][value=dose_added_after_g]")
            status = page.locator("#balance [role=status]").inner_text()
            assert f"(S S {after_g:.3f} g)" in " ".join(status.split()), status
            assert page.locator("input[name=v_dose_added_before_g]").input_value() == "61.250"
            assert page.locator("input[name=v_dose_added_after_g]").input_value() == str(
                after_g.quantize(Decimal("0.001"))
            )
            # Each reading asks the serial number (I4), then a stable weight: unstable, stable;
            # stable.
            assert balance.commands == ["I4", "SI", "SI", "I4", "SI"]
            page.locator("input[name=photo_final_bag]").set_input_files(str(bag))
            tab.shot("dilution-weighed")
            sign(tab)
            view = b.load(cid)
            assert view.case.state == "pharmacy_verification", page.content()[-3000:]
            weighed = view.case.current["dilution"].values
            assert weighed["dose_added_weighed_by"] == "balance"
            assert weighed["dose_added_before_g"] == BEFORE_G

            # -- the pharmacist verifies remotely, the photos beside the entries ---------
            tab.login("p.lindqvist")
            site.clock.advance(minutes=5)
            open_step(site, tab, cid, "pharmacy_verification")
            for step_id, n in (("reconstitution", 2), ("dilution", 1)):
                section = page.locator(f"#verified_{step_id}")
                figures = section.locator("figure.photo img")
                assert figures.count() == n
                for i in range(n):
                    figures.nth(i).scroll_into_view_if_needed()
                    page.wait_for_function(
                        "e => e.complete && e.naturalWidth > 0", arg=figures.nth(i).element_handle()
                    )
            review = page.locator("#verified_reconstitution").inner_text()
            assert LOT in review and "the code in the photo matches the entry" in review
            for photo in (vials, syringe):
                assert hashlib.sha256(photo.read_bytes()).hexdigest() in review
            dilution = page.locator("#verified_dilution").inner_text()
            assert "Bag weight before the dose" in dilution and "61.25" in dilution
            assert hashlib.sha256(bag.read_bytes()).hexdigest() in dilution
            tab.shot("remote-verification")
            sign(tab)
            assert b.load(cid).case.state == "double_check_first", page.content()[-3000:]
            label = page.request.get(f"{server}/cases/{cid}/label.pdf")
            assert label.ok
            (symbol,) = decoded(label.body())
            bag_code = symbol.text
            assert bag_code.startswith("(7003)") and f"(91){cid}" in bag_code

            # -- the bedside: double checks, the bag label scanned, the infusion ---------
            do(site, tab, cid, "double_check_first", "check-first", after=40, who="n.alvarez")
            do(site, tab, cid, "double_check_second", "double-check-second", username="n.chen")
            do(
                site,
                tab,
                cid,
                "pre_infusion",
                "bag-scanned",
                values={"bag_entry": "scanned", "bag_scan": bag_code},
            )
            assert b.load(cid).case.current["pre_infusion"].values["bag_scan"] == bag_code
            do(site, tab, cid, "infusion_start", "infusion-start", after=2)
            do(site, tab, cid, "infusion_stop", "infusion-stop", after=15, who="n.alvarez")
            do(site, tab, cid, "observation", "observation", after=30, who="n.alvarez")
            do(site, tab, cid, "record_sign_off", "record-sign-off")
            assert b.load(cid).case.state == "completed"

            # -- the next dose is ordered, then discontinued, over MLLP -------------------
            ack = sender.send(rde("MSG0002", "NW", "ORD1002", "202611021600"))
            assert msa(ack)[0] == "AA", ack
            following = [d for d in b.course_doses(course.id) if d.case.case_id != cid]
            (nxt,) = following
            tab.login("p.lindqvist")
            page.goto(f"{server}/pharmacy")
            assert page.locator(f"tr[data-case='{nxt.case.case_id}']").is_visible()
            ack = sender.send(
                rde("MSG0003", "DC", "ORD1002", "202611021600", "Patient declined\\T\\family")
            )
            assert msa(ack)[0] == "AA", ack
            assert b.load(nxt.case.case_id).case.state == "cancelled"
            page.goto(f"{server}/pharmacy")
            assert page.locator(f"tr[data-case='{nxt.case.case_id}']").count() == 0
            effects = page.locator("#interface-effects").inner_text()
            assert "ORD1002" in effects and "Removed from the queue" in effects, effects
            assert "1 dose(s) removed from the queue" in effects, effects
            # ORC-16's reason, its escape undone, is in the ended dose's note.
            assert "Patient declined&family" in str(b.load(nxt.case.case_id).case.end)
            tab.shot("queue-after-discontinue")
        finally:
            sender.close()

    # -- the compounding record shows the photos and the weights ----------------------------
    site.records_made()  # made by the records writer just after the sign-off
    record = next(r for r in b.search_archive(case_id=cid) if r.kind == "compounding")
    pdf = tmp_path / "compounding.pdf"
    pdf.write_bytes(site.archive.blobs.get(record.sha256))
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    words = " ".join(text.split())
    assert "In-process photos" in text
    for photo in (vials, syringe, bag):
        sha = hashlib.sha256(photo.read_bytes()).hexdigest()
        assert sha[:32] in text and sha[32:] in text, sha
    assert "61.250" in words and f"{after_g:.3f}" in words, words
    assert re.search(r"balance", words, re.I)
    # Each weight with the balance's own reply line, as read over the serial port.
    assert "read from the balance: reply" in words, words
    listing = subprocess.run(
        ["pdfimages", "-list", str(pdf)], check=True, capture_output=True, text=True
    ).stdout
    jpegs = [c for c in (line.split() for line in listing.splitlines()[2:]) if c[8] == "jpeg"]
    assert len(jpegs) == 3, listing  # one thumbnail per photo
