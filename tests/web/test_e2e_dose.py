"""End to end in Debian's Chromium (Playwright): a whole dose through the pages, and a hold.

The server runs in a thread on the test's own installation and clock, so the test moves time
(preparation, the 15-minute infusion) exactly as a ward would. Screenshots of every screen go to
the test's tmp folder (and to docs/screenshots when BEDSIDE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from workflow.dev.walk import label_values, values_for

from .conftest import PASSWORD, Site
from .test_blinding_web import shows_number

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# The screens the README shows (refreshed with BEDSIDE_SCREENSHOTS=1).
DOC_SHOTS = {
    "bedside",
    "hold-banner",
    "double-check-mismatch",
    "pharmacy-queue",
    "auditor-verified",
    "infusion-timer",
    "worklist-portrait",
}


def ensure_chromium() -> None:
    """Install Debian's chromium when missing (root only); never Playwright's own browsers."""
    if Path(CHROMIUM).exists():
        return
    if os.geteuid() != 0:
        pytest.skip("chromium missing and not root to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "chromium"], env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "chromium"], env=env, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# How long a page waits for its record links: the records writer makes them just after the
# sign-off and the page's script swaps them in (a person would look again, or wait).
RECORD_LINKS_MS = 60_000


@pytest.fixture
def server(sqlite_site: Site) -> Iterator[str]:
    """The site's app served as `bedside serve` serves it: an ending case's records are made
    by the records writer just after the closing step answers."""
    writer = sqlite_site.bedside.write_records_later()
    port = free_port()
    config = uvicorn.Config(sqlite_site.app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=5)
        writer.close()


def record_links(page: Any) -> Any:
    """The case page's record download links, once the records writer made them: the page
    says they are being made and its script puts them in (bounded wait, as a person waits)."""
    links = page.locator("#records a[download]")
    links.nth(1).wait_for(state="attached", timeout=RECORD_LINKS_MS)
    return links


@pytest.fixture
def browser() -> Iterator[Any]:
    ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Tablet:
    def __init__(self, browser: Any, base: str, shots: Path, size: tuple[int, int]) -> None:
        self.context = browser.new_context(
            viewport={"width": size[0], "height": size[1]}, accept_downloads=True
        )
        self.context.set_default_timeout(5000)
        self.page = self.context.new_page()
        self.base = base
        self.shots = shots
        self.n = 0

    def shot(self, name: str, full: bool = True) -> Path:
        self.n += 1
        path = self.shots / f"{self.n:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=full)
        if os.environ.get("BEDSIDE_SCREENSHOTS") == "1" and name in DOC_SHOTS:
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, DOCS / f"{name}.png")
        return path

    def login(self, username: str) -> None:
        self.context.clear_cookies()
        self.page.goto(self.base + "/login")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("button[type=submit]")

    def fill_step(self, values: dict[str, Any]) -> None:
        page = self.page
        for key, value in values.items():
            name = f"v_{key}"
            first = page.locator(f"[name={name}]").first
            kind = first.get_attribute("type")
            if kind == "checkbox":
                if value:
                    first.check()
            elif kind == "radio":
                choice = "yes" if value is True else "no" if value is False else str(value)
                page.check(f"input[name={name}][value='{choice}']")
            elif kind == "datetime-local":
                dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
                first.fill(dt.strftime("%Y-%m-%dT%H:%M"))
            elif first.evaluate("e => e.tagName") == "SELECT":
                first.select_option(str(value))
            else:
                first.fill(str(value))

    def sign(
        self, password: str = PASSWORD, username: str | None = None, together: bool = False
    ) -> None:
        """Sign the step on screen; where the page shows a sitting (the next steps in the same
        form), "Sign ... only" unless ``together`` (then the one signature signs them all)."""
        form = self.page.locator("form.stepform")
        if username is not None:
            form.locator("input[name=username]").fill(username)
        form.locator("input[name=password]").fill(password)
        only = form.locator("input[name=only]")
        if only.count() and not together:
            only.click()
        else:
            form.locator("button[type=submit]").click()


def do_step(site: Site, tab: Tablet, case_id: str, step: str, name: str, **kw: Any) -> None:
    view = site.bedside.load(case_id)
    values = kw.pop("values", None) or values_for(view.case, step, site.clock.now())
    tab.page.goto(f"{tab.base}/cases/{case_id}?step={step}")
    assert tab.page.locator(".progress").count() == 1, tab.page.content()[-3000:]
    tab.fill_step(values)
    tab.shot(name)
    tab.sign(**kw)


def test_whole_dose_in_chromium(
    sqlite_site: Site, server: str, browser: Any, tmp_path: Path
) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    cid = view.case.case_id
    tab = Tablet(browser, server, tmp_path, (1024, 768))
    page = tab.page

    tab.page.goto(server + "/login")
    tab.shot("login")
    tab.login("n.alvarez")
    assert "Ward board" in page.content()
    tab.shot("worklist")
    page.click(f"a[href='/cases/{cid}']")
    assert "Pre-dose hold checks" in page.content()
    site.clock.advance(minutes=10)
    do_step(site, tab, cid, "hold_checks", "bedside")
    assert site.bedside.load(cid).case.state == "reconstitution"

    tab.login("t.mensah")
    assert "Compounding queue" in page.content()
    tab.shot("pharmacy-queue")
    site.clock.advance(minutes=10)
    # An expired vial is refused with the reason, and nothing is stored.
    view = site.bedside.load(cid)
    bad = values_for(view.case, "reconstitution", site.clock.now())
    bad["vial_expiry"] = "2021-01"
    do_step(site, tab, cid, "reconstitution", "expired-vial-entry", values=bad)
    assert page.locator("#error").is_visible()
    tab.shot("expired-vial-refused")
    assert site.bedside.load(cid).version == view.version
    do_step(site, tab, cid, "reconstitution", "reconstitution")
    site.clock.advance(minutes=10)
    do_step(site, tab, cid, "dilution", "dilution")
    label = page.request.get(f"{server}/cases/{cid}/label.pdf")
    assert label.ok and label.body().startswith(b"%PDF")

    tab.login("p.lindqvist")
    page.goto(f"{server}/cases/{cid}")
    assert "PLK2291" in page.content()
    site.clock.advance(minutes=10)
    do_step(site, tab, cid, "pharmacy_verification", "pharmacist-verification")

    site.clock.advance(minutes=40)  # the bag out of the refrigerator for a while
    tab.login("n.alvarez")
    do_step(site, tab, cid, "double_check_first", "double-check-first")
    # The second nurse at the same tablet: blinded, signs with her own id; she mistypes the
    # weight (typed: the scanned label's code would refuse a rate or a dose it contradicts).
    view = site.bedside.load(cid)
    second = values_for(view.case, "double_check_second", site.clock.now())
    right_weight = second["dosing_weight_kg"]
    right_rate = label_values(view.case)["pump_rate_ml_per_h"]
    second["dosing_weight_kg"] = "60.5"
    page.goto(f"{server}/cases/{cid}")
    html = page.content()
    assert "Independent check" in html and "Signed so far" in html
    # Nothing the check asks for is on the second checker's screen: no MRN, date of birth,
    # dose number or plan in the header, no first checker's entries (issue 11.2-11.3).
    assert "MRN-7001" not in html and "1971-03-14" not in html and "Cycle 1" not in html
    assert "Dose plan" not in html and not shows_number(html, right_rate)
    assert not shows_number(html, right_weight)
    do_step(
        site,
        tab,
        cid,
        "double_check_second",
        "double-check-second",
        values=second,
        username="n.chen",
    )
    assert page.locator("#mismatch").is_visible()
    # Which item differs, by its label; neither checker's value nor the expected one.
    assert "Dosing weight used" in page.locator("#mismatch").inner_text()
    html = page.content()
    assert not shows_number(html, "60.5") and not shows_number(html, right_weight)
    tab.shot("double-check-mismatch")
    second["dosing_weight_kg"] = right_weight
    do_step(
        site,
        tab,
        cid,
        "double_check_second",
        "double-check-corrected",
        values=second,
        username="n.chen",
    )
    assert site.bedside.load(cid).case.state == "pre_infusion"
    site.clock.advance(minutes=5)
    do_step(site, tab, cid, "pre_infusion", "pre-infusion")
    site.clock.advance(minutes=2)
    do_step(site, tab, cid, "infusion_start", "infusion-start")
    site.clock.advance(minutes=15)
    page.goto(f"{server}/cases/{cid}")
    assert page.locator("#infusion-timer").is_visible()
    # The timer counts down on the server's clock: 15 minutes since the signed start, so none
    # left, and the live region says so.
    assert page.locator("#infusion-timer .countdown").inner_text() == "0:00 left"
    assert "stop the infusion now" in page.locator("#timer-alert").inner_text()
    do_step(site, tab, cid, "infusion_stop", "infusion-timer")
    site.clock.advance(minutes=30)
    tab.login("n.alvarez")  # signed out after 15 idle minutes: sign in again
    do_step(site, tab, cid, "observation", "observation")
    site.clock.advance(minutes=5)
    do_step(site, tab, cid, "record_sign_off", "record-sign-off")
    assert site.bedside.load(cid).case.state == "completed"
    assert page.locator("#records").is_visible(), page.content()[-2500:]
    links = record_links(page)
    tab.shot("signed-record")
    with page.expect_download() as dl:
        links.first.click()
    saved = tmp_path / "record.pdf"
    dl.value.save_as(saved)
    assert saved.read_bytes().startswith(b"%PDF")

    tab.login("a.ibrahim")
    page.goto(f"{server}/archive?mrn=MRN-7001")
    tab.shot("archive-search")
    page.locator("table a.btn").first.click()
    page.click("form[action$='/verify'] button")
    assert "VERIFIED" in page.locator("#verify-result").inner_text()
    tab.shot("auditor-verified")

    # Portrait tablet: the same screens must still fit.
    portrait = Tablet(browser, server, tmp_path / "portrait", (768, 1024))
    (tmp_path / "portrait").mkdir()
    portrait.login("n.alvarez")
    portrait.shot("worklist-portrait")
    portrait.page.goto(f"{server}/cases/{cid}")
    portrait.shot("record-portrait")


def test_hold_fires_in_chromium(
    sqlite_site: Site, server: str, browser: Any, tmp_path: Path
) -> None:
    site = sqlite_site
    view = site.walk_to("hold_checks")
    cid = view.case.case_id
    tab = Tablet(browser, server, tmp_path, (768, 1024))
    tab.login("n.alvarez")
    values = values_for(view.case, "hold_checks", site.clock.now())
    values["spo2_pct"] = "88"
    do_step(site, tab, cid, "hold_checks", "hold-checks-portrait", values=values)
    banner = tab.page.locator("#holds")
    assert banner.is_visible()
    assert "Oxygen saturation (SpO2): 88 %" in banner.inner_text()
    tab.shot("hold-banner")
    assert site.bedside.load(cid).case.on_hold


def test_record_links_appear_once_the_writer_made_them(
    sqlite_site: Site, server: str, browser: Any, tmp_path: Path
) -> None:
    """The page after a sign-off whose records are not made yet says so, with a plain
    "Check again" link; its script puts the links in once they are made, without a reload."""
    site = sqlite_site
    held = site.bedside.write_records_later(start=False)  # this server's writer, held back
    view = site.walk_to("record_sign_off")
    cid = view.case.case_id
    tab = Tablet(browser, server, tmp_path, (1024, 768))
    tab.login("n.alvarez")
    site.clock.advance(minutes=5)
    do_step(site, tab, cid, "record_sign_off", "record-sign-off")
    page = tab.page
    page.locator("#records-note").wait_for()
    assert "Its records are being signed and archived" in page.locator("#flash").inner_text()
    assert "Records being made" in page.locator("#records").inner_text()
    assert page.locator("#records a", has_text="Check again").is_visible()
    assert page.locator("#records a[download]").count() == 0
    tab.shot("records-being-made")
    held.start()
    links = record_links(page)  # swapped in by the page's script: no reload, no click
    assert links.count() == 2
    assert page.locator("#records-pending").count() == 0
    assert page.locator("#records a", has_text="Check again").count() == 0
    # The confirmation above no longer says "being made" beside the links.
    note = page.locator("#records-note").inner_text()
    assert "signed and archived: their links are below" in note and "being" not in note
    tab.shot("records-made")
    held.close()
