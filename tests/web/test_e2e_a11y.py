"""Accessibility of the pages issue 12 changed, checked in Debian's Chromium (Playwright):
every input, select and textarea has an accessible name (Chromium's own accessibility tree),
heading levels never skip (h1, then h2...), and a field the server refused is marked
aria-invalid and described by the message. Also: the countdown ticks on the page's script."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from workflow.dev.walk import values_for

from . import test_e2e_dose as e2e
from .conftest import PASSWORD, Site
from .test_e2e_dose import Tablet

# The browser and the server in a thread, shared with the whole-dose test.
server = e2e.server
browser = e2e.browser

FIELD_ROLES = {"textbox", "combobox", "checkbox", "radio", "spinbutton", "searchbox", "listbox"}

HEADINGS = (
    "() => Array.from(document.querySelectorAll('h1,h2,h3,h4,h5,h6')).map(h => +h.tagName[1])"
)
# Fields, not buttons: a submit input is named by its value (the AX tree check below sees it).
UNLABELLED = """() => Array.from(document.querySelectorAll(
  'input:not([type=hidden]):not([type=submit]):not([type=button]), select, textarea'))
  .filter(el => {
    const label = Array.from(el.labels || []).map(l => l.textContent.trim()).join(' ');
    const by = (el.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean)
      .map(id => (document.getElementById(id) || {}).textContent || '').join(' ').trim();
    return !(label || by || (el.getAttribute('aria-label') || '').trim());
  }).map(el => el.outerHTML.slice(0, 160))"""


def check_page(tab: Tablet, what: str) -> int:
    """Assert the page's fields are named and its headings in order; returns the fields seen."""
    page = tab.page
    assert page.evaluate(UNLABELLED) == [], what
    cdp = tab.context.new_cdp_session(page)
    tree = cdp.send("Accessibility.getFullAXTree")["nodes"]
    fields = [
        n
        for n in tree
        if not n.get("ignored") and (n.get("role") or {}).get("value") in FIELD_ROLES
    ]
    nameless = [n for n in fields if not ((n.get("name") or {}).get("value") or "").strip()]
    assert nameless == [], f"{what}: fields without an accessible name: {nameless[:3]}"
    levels = page.evaluate(HEADINGS)
    assert levels and levels[0] == 1, f"{what}: the first heading is h{levels[:1]}"
    skips = [(a, b) for a, b in itertools.pairwise(levels) if b > a + 1]
    assert skips == [], f"{what}: heading levels skip {skips} in {levels}"
    return len(fields)


def sign_in(tab: Tablet, username: str) -> None:
    tab.login(username)
    tab.page.wait_for_load_state()
    assert "/login" not in tab.page.url, tab.page.content()[-1500:]


def test_changed_pages_are_accessible(
    sqlite_site: Site, server: str, browser: Any, tmp_path: Path
) -> None:
    site = sqlite_site
    tab = Tablet(browser, server, tmp_path, (1024, 768))
    page = tab.page
    seen = 0

    # The pharmacist's order verification: the evidence above the form.
    view = site.walk_to("order_verification")
    sign_in(tab, "p.lindqvist")
    page.goto(f"{server}/cases/{view.case.case_id}")
    assert page.locator("#evidence-order").is_visible()
    seen += check_page(tab, "order verification")
    tab.shot("a11y-order-verification")

    # The release: the plan beside what was measured.
    view = site.walk_to("pharmacy_verification", view)
    sign_in(tab, "p.lindqvist")  # the walk took longer than the idle limit
    page.goto(f"{server}/cases/{view.case.case_id}")
    assert page.locator("#evidence-measured").is_visible()
    seen += check_page(tab, "release")
    tab.shot("a11y-release")

    # The nurse at the stop: the timer, then an early stop refused for want of a reason.
    view = site.walk_to("infusion_stop", view)
    cid = view.case.case_id
    site.clock.advance(minutes=7)
    sign_in(tab, "n.alvarez")
    page.goto(f"{server}/cases/{cid}")
    countdown = page.locator("#infusion-timer .countdown")
    first = countdown.inner_text()
    assert first.endswith("left") and first.startswith("8:"), first
    page.wait_for_function(
        "t => document.querySelector('#infusion-timer .countdown').textContent !== t", arg=first
    )
    assert "early or late" in page.locator("#timer-deviation").inner_text()
    seen += check_page(tab, "infusion stop")
    tab.shot("a11y-infusion-timer")
    tab.fill_step({"outcome": "stopped_early"})
    tab.sign()
    page.wait_for_load_state()
    reason = page.locator("input[name=v_duration_reason]")
    assert reason.get_attribute("aria-invalid") == "true"
    described = reason.get_attribute("aria-describedby")
    assert described == "error" and "required" in page.locator(f"#{described}").inner_text()
    seen += check_page(tab, "refused stop")
    tab.shot("a11y-refused-stop")

    # A dangerous action's confirmation page, refused without a reason (the browser's own
    # check switched off, as an old browser would post it: the server refuses it too).
    site.course_id = site.new_course("MRN-7002", "Okoro", "Ada", "1980-01-01")  # another patient
    other = site.walk_to("hold_checks")
    sign_in(tab, "dr.okafor")
    page.goto(f"{server}/cases/{other.case.case_id}")
    page.click(f"a[href='/cases/{other.case.case_id}/exit/cancel']")
    assert page.locator("#exit-reason").input_value() == ""
    seen += check_page(tab, "cancel confirmation")
    page.evaluate("document.querySelector('#confirm form').noValidate = true")
    page.fill("#exit-password", PASSWORD)
    page.click("#confirm button[type=submit]")
    page.wait_for_load_state()
    select = page.locator("#exit-reason")
    assert select.get_attribute("aria-invalid") == "true"
    assert "choose a reason" in page.locator("#error").inner_text()
    seen += check_page(tab, "refused cancel")
    tab.shot("a11y-refused-cancel")

    # The administrator's pages: a label on every temporary-password input, two-step deactivate.
    sign_in(tab, "root")
    page.goto(f"{server}/admin/users")
    seen += check_page(tab, "users")
    page.click("a[href='/admin/users/n.chen/deactivate']")
    seen += check_page(tab, "deactivate confirmation")
    tab.shot("a11y-deactivate")
    assert seen > 20  # the checks read real fields, not empty pages


def test_step_form_values_fill_from_walker(sqlite_site: Site) -> None:
    """The walker the browser test fills from gives the stop step a reason only when late."""
    site = sqlite_site
    view = site.walk_to("infusion_stop")
    site.clock.advance(minutes=15)
    assert "duration_reason" not in values_for(view.case, "infusion_stop", site.clock.now())
    site.clock.advance(minutes=3)
    assert "duration_reason" in values_for(view.case, "infusion_stop", site.clock.now())
