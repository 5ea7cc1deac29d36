"""A whole dose through the pages in Debian's Chromium: what each role taps and types, and how
long each kind of step page takes to load.

An installation in a temporary folder (SQLite, its own signing keys, the demo people) serves
the web app on a loopback port in a thread, on a clock the walk moves as a ward would. Each dose
is opened through the service (the prescriber's "new dose"); every signature after that is made
through the pages by the person the demo gives each step, exactly as a careful team would enter
it (``workflow.dev.walk.values_for``). The walker reads what the page offers, so the same walk
runs on any version of the pages:

- a field already showing the value wanted is left alone (a pre-filled value only confirmed);
- a group with an "all normal" control is tapped once when every wanted value in it is normal;
- a wristband scan field is scanned (typed by the scanner, then Enter: counted as a scan);
- a bag label code field is scanned (the label's GS1 code, then Enter: a scan); what the code
  carries is left to the code (``values_for`` leaves it out), "how identified" is tapped only
  if the page did not tick it;
- a "Scan your badge" field (sign-in, a signature that asks the user id) is scanned: the badge
  carries the user id (a scan), the password is always typed;
- a vial, sterile water or D5W bag is scanned when the site formulary lists it (this walk lists
  one of each, made-up GTINs, where the version has a site formulary), else typed with a reason;
- each person works on their own device, signed in until the idle timeout;
- everything else is typed (text, numbers, dates, user ids, passwords) or tapped (ticks,
  radio buttons, choices, buttons, the worklist row that opens the case).

Prints, per role, the taps, typed fields and scans of one dose (the mean over the doses
walked), their totals, and per step kind the page-load time from the Navigation Timing API
(``loadEventEnd - startTime`` of the step page's navigation entry), median and 95th percentile.

    .venv/bin/python bench/bench_browser_walk.py [--doses N] [--same-course] [--detail]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from argon2 import PasswordHasher

from workflow.archive import Archive
from workflow.core.clock import FixedClock
from workflow.dev.demo import _SIGNERS, DEMO_PASSWORD, DEMO_PEOPLE
from workflow.dev.walk import order_values, values_for
from workflow.identity import Credentials, Identity
from workflow.records.pki import create_site_pki
from workflow.resources import default_protocol_path
from workflow.service import Bedside
from workflow.store import open_store
from workflow.web import WebSettings, create_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
ROLE = {p.username: p.role for p in DEMO_PEOPLE}
# Minutes the ward's clock moves before each step (the infusion runs its 15 minutes).
PACE = {"hold_checks": 10, "infusion_stop": 15, "pharmacy_verification": 10}
NAV_MS = """() => { const e = performance.getEntriesByType('navigation')[0];
  return e ? e.loadEventEnd - e.startTime : null; }"""


class Counts:
    def __init__(self) -> None:
        self.taps: Counter[str] = Counter()
        self.typed: Counter[str] = Counter()
        self.scans: Counter[str] = Counter()
        self.by_step: Counter[tuple[str, str]] = Counter()  # (step or "login", "tap"/"typed")
        self.load_ms: dict[str, list[float]] = defaultdict(list)


class Walker:
    """One tablet (a browser context) and the counts of what people do on it."""

    def __init__(self, browser: Any, base: str, counts: Counts) -> None:
        self.context = browser.new_context(viewport={"width": 1024, "height": 768})
        self.context.set_default_timeout(10000)
        self.page = self.context.new_page()
        self.base = base
        self.c = counts
        self.user = ""
        self.step = ""

    def tap(self, locator: Any, role: str | None = None) -> None:
        self.c.taps[role or ROLE[self.user]] += 1
        self.c.by_step[self.step, "tap"] += 1
        locator.click()

    def type(self, locator: Any, text: str, role: str | None = None) -> None:
        self.c.typed[role or ROLE[self.user]] += 1
        self.c.by_step[self.step, "typed"] += 1
        locator.fill(text)

    def login(self, username: str) -> None:
        self.user = username
        self.step = "login"
        self.context.clear_cookies()
        page = self.page
        page.goto(self.base + "/login")
        self.c.load_ms["login"].append(page.evaluate(NAV_MS))
        self.user_id(page.locator("form[action='/login']"), username, ROLE[username])
        self.type(page.locator("input[name=password]"), DEMO_PASSWORD)
        self.tap(page.locator("button[type=submit]"))

    def scan(self, locator: Any, text: str, role: str) -> None:
        """A scanner acting as a keyboard: the code, then Enter."""
        self.c.scans[role] += 1
        locator.fill(text)
        locator.press("Enter")

    def user_id(self, form: Any, username: str, role: str) -> None:
        """The user id: the badge scanned where the page offers it, else typed."""
        badge = form.locator("input[data-badge]")
        if badge.count():
            self.scan(badge, username, role)
        else:
            self.type(form.locator("input[name=username]"), username, role)

    def open_step(self, case_id: str, step_id: str) -> None:
        """The step's form, as the person reaches it: already on screen after their last
        signature, else one tap on the worklist row (the case page)."""
        page = self.page
        if not page.locator(f"form.stepform[action$='/steps/{step_id}']").count():
            self.c.taps[ROLE[self.user]] += 1  # the worklist row
            self.c.by_step[step_id, "tap"] += 1
        # Loaded afresh either way, so every step kind's load time is a plain GET of its page
        # (the redirect after a signature would also time the signing).
        page.goto(f"{self.base}/cases/{case_id}")
        if "/login" in page.url:  # signed out while idle: sign in again, back to the case
            self.login(self.user)
            page.goto(f"{self.base}/cases/{case_id}")
        self.step = step_id
        self.c.load_ms[step_id].append(page.evaluate(NAV_MS))
        assert page.locator(f"form.stepform[action$='/steps/{step_id}']").count(), page.url

    def fill(
        self, step_id: str, values: dict[str, Any], signer: str, protocol: Any, now: datetime
    ) -> None:
        page = self.page
        form = page.locator("form.stepform")
        role = ROLE[signer]
        wanted = dict(values)
        # Products the formulary lists are scanned (GS1: GTIN, expiry, lot), not typed.
        for spec in protocol.step(step_id).scans:
            product = next((p for p in protocol.formulary if p.kind == spec.kind), None)
            field = form.locator(f"input[name=v_{spec.kind}_scan]")
            if product is None or not field.count() or f"{spec.kind}_lot" not in wanted:
                continue
            lot = wanted[f"{spec.kind}_lot"]
            expiry = datetime.fromisoformat(str(wanted[f"{spec.kind}_expiry"]))
            for part in ("lot", "expiry", "gtin", "typed_reason", "entry", "scan"):
                wanted.pop(f"{spec.kind}_{part}", None)
            self.c.scans[role] += 1
            field.fill(f"01{product.gtin}17{expiry:%y%m%d}10{lot}")
            field.press("Enter")
            if form.locator(f"input[name=v_{spec.kind}_entry][value=scanned]").count():
                wanted[f"{spec.kind}_entry"] = "scanned"  # tapped unless the form infers it
        bag = form.locator("input[name=v_bag_scan]")
        if bag.count() and wanted.get("bag_entry") == "scanned" and "bag_scan" in wanted:
            self.scan(bag, str(wanted.pop("bag_scan")), role)
            if form.locator("input[name=v_bag_entry][value=scanned]").is_checked():
                wanted.pop("bag_entry")  # the page ticked "scanned" from the code
        for group in form.locator("[data-normal]").all():
            normal = json.loads(group.get_attribute("data-normal") or "{}")
            if any(protocol.step(step_id).item(k) is None for k in normal):
                continue  # another step's group (a sitting shows several steps)
            if all(_same(wanted.get(k, v), v) for k, v in normal.items()):
                self.tap(group.locator(".all-normal"), role)
                for k in normal:
                    wanted.pop(k, None)
        scan = form.locator("input[data-wristband]")
        mrn_keys = [k for k in wanted if k in ("patient_mrn", "patient_identifier_mrn")]
        if scan.count() and mrn_keys:
            mrn = str(wanted.pop(mrn_keys[0]))
            self.c.scans[role] += 1
            scan.fill(mrn)
            scan.press("Enter")
        for key, value in wanted.items():
            field = form.locator(f"[name=v_{key}]")
            if not field.count():
                continue
            first = field.first
            kind = first.get_attribute("type")
            if kind == "checkbox":
                if bool(value) != first.is_checked():
                    self.tap(first, role)
            elif kind == "radio":
                choice = "yes" if value is True else "no" if value is False else str(value)
                radio = form.locator(f"input[name=v_{key}][value='{choice}']")
                if not radio.is_checked():
                    self.tap(radio, role)
            elif first.evaluate("e => e.tagName") == "SELECT":
                if first.input_value() != str(value):
                    self.c.taps[role] += 1
                    self.c.by_step[self.step, "tap"] += 1
                    first.select_option(str(value))
            else:
                text = str(value)
                if kind == "datetime-local":
                    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
                    text = dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
                if first.input_value() != text:
                    self.type(first, text, role)

    def together(self) -> list[str]:
        """The later steps of a sitting the form shows (none on versions without sittings)."""
        field = self.page.locator("form.stepform input[name=together]")
        return (field.get_attribute("value") or "").split() if field.count() else []

    def sign(self, signer: str) -> None:
        form = self.page.locator("form.stepform")
        role = ROLE[signer]
        if form.locator("input[name=username]").count():
            self.user_id(form, signer, role)
        password = form.locator("input[name=password]")
        if password.count():
            self.type(password, DEMO_PASSWORD, role)
        self.tap(form.locator("button[type=submit]"), role)  # the signature (of a sitting: all)


def _same(wanted: Any, normal: Any) -> bool:
    """Whether a wanted value is the group's normal one, as the form posts it."""
    posted = "yes" if wanted is True else "no" if wanted is False else str(wanted)
    return posted == str(normal)


def _gtin(body13: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(body13))
    return body13 + str((10 - total % 10) % 10)


# Made-up GTINs (test data: no retrieved source gives a real product's).
PRODUCTS = {"vial": "0061414100001", "diluent": "0061414100002", "d5w": "0061414100003"}


def _list_products(bedside: Bedside) -> None:
    """The site's formulary, listed once by a pharmacist (where this version has one)."""
    add = getattr(bedside, "add_to_formulary", None)
    if add is None:
        return
    for kind, body in PRODUCTS.items():
        add(_gtin(body), kind, f"Bench {kind}", "1 unit", Credentials("p.lindqvist", DEMO_PASSWORD))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def walk(doses: int, same_course: bool) -> Counts:
    from playwright.sync_api import sync_playwright

    from workflow.core.protocol.loader import load_protocol

    tmp = Path(tempfile.mkdtemp(prefix="bench-walk-"))
    create_site_pki(tmp / "pki", organisation="Bench site")
    clock = FixedClock(START)
    store = open_store(f"sqlite:///{tmp / 'walk.sqlite3'}", clock=clock)
    identity = Identity(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    bedside = Bedside(store, load_protocol(default_protocol_path()), clock=clock, identity=identity)
    archive = Archive(tmp, store)
    bedside.archiver = archive.archive_case
    for p in DEMO_PEOPLE:
        identity.add_user(p.username, p.name, [p.role], DEMO_PASSWORD, by="bench")
    _list_products(bedside)
    app = create_app(bedside, WebSettings(), archive=archive)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_port(), log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{server.config.port}"
    counts = Counts()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            devices: dict[str, Walker] = {}
            course: str | None = None
            memo: dict[str, Any] = {}
            for i in range(doses):
                course = _one_dose(bedside, clock, browser, base, counts, i, devices, course, memo)
                if not same_course:
                    course, memo = None, {}
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        store.close()
    return counts


def _one_dose(
    bedside: Bedside,
    clock: FixedClock,
    browser: Any,
    base: str,
    counts: Counts,
    i: int,
    devices: dict[str, Walker],
    course_id: str | None,
    memo: dict[str, Any],
) -> str:
    p = bedside.protocol
    if course_id is None:
        patient = bedside.store.add_patient(
            mrn=f"MRN-{7000 + i}",
            family_name="Rivera",
            given_name="Jordan",
            date_of_birth="1971-03-14",
            created_by="bench",
        )
        course_id = bedside.store.start_course(
            patient.id, protocol_id=p.id, protocol_version=p.version, protocol_hash=p.content_hash
        ).id
    else:
        clock.advance(hours=8)  # the next dose of the course, q8h
    view = bedside.open_case(
        course_id, clock.now() + timedelta(hours=2), Credentials("dr.okafor", DEMO_PASSWORD)
    )
    cid = view.case.case_id
    tablet: Walker | None = None
    while True:
        view = bedside.load(cid)
        step = view.case.next_step()
        if view.case.closed or step is None:
            break
        clock.advance(minutes=PACE.get(step.id, 3))
        signer = _SIGNERS[step.id]
        if step.id == "order":
            # Weighed once a day (the morning round), as a ward does.
            day = clock.now().replace(hour=5, minute=0, second=0, microsecond=0)
            if day > clock.now():
                day -= timedelta(days=1)
            values = order_values("68", day)
        elif step.id == p.eligibility.step:
            # The baseline tests are the course's, done once before it.
            values = memo.setdefault(step.id, values_for(view.case, step.id, clock.now()))
        else:
            values = values_for(view.case, step.id, clock.now())
        # Each person works on their own device, signed in until the idle timeout; the second
        # checker signs at the first nurse's tablet with her own user id.
        if not step.blinded_against or tablet is None:
            tablet = devices.get(signer)
            if tablet is None:
                tablet = devices[signer] = Walker(browser, base, counts)
                tablet.login(signer)
        tablet.open_step(cid, step.id)
        # A sitting (protocol ``sittings``): the page shows the steps this person does next in
        # the same form, signed by the one signature; each is filled as it would be alone.
        together = tablet.together()
        tablet.step = "+".join([step.id, *together])
        tablet.fill(step.id, values, signer, view.case.protocol, clock.now())
        for later in together:
            more = values_for(view.case, later, clock.now())
            tablet.fill(later, more, signer, view.case.protocol, clock.now())
        tablet.sign(signer)
        after = bedside.load(cid)
        assert after.version > view.version, f"{step.id} not signed: {tablet.page.url}"
    assert bedside.load(cid).case.state == "completed"
    return course_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--doses", type=int, default=3)
    parser.add_argument("--detail", action="store_true", help="taps and typed fields per step")
    parser.add_argument(
        "--same-course",
        action="store_true",
        help="the doses one after another on one patient's course (else each a first dose)",
    )
    args = parser.parse_args()
    doses = args.doses
    c = walk(doses, args.same_course)
    roles = sorted(set(c.taps) | set(c.typed) | set(c.scans))
    kind = "doses of one course" if args.same_course else "first doses of new courses"
    print(f"one dose through the pages (mean of {doses} {kind}), by role: taps / typed / scans")
    for role in roles:
        print(
            f"  {role:22s} {c.taps[role] / doses:6.1f} {c.typed[role] / doses:6.1f}"
            f" {c.scans[role] / doses:6.1f}"
        )
    total = [sum(x.values()) / doses for x in (c.taps, c.typed, c.scans)]
    print(f"  {'all roles':22s} {total[0]:6.1f} {total[1]:6.1f} {total[2]:6.1f}")
    if args.detail:
        print("per step (mean): taps / typed fields")
        for step in dict.fromkeys(k for k, _ in c.by_step):
            tap, typed = (c.by_step[step, k] / doses for k in ("tap", "typed"))
            print(f"  {step:22s} {tap:6.1f} {typed:6.1f}")
    print("page load (Navigation Timing, loadEventEnd) per step kind: median / p95 ms, n")
    for kind, ms in sorted(c.load_ms.items()):
        ms = sorted(m for m in ms if m is not None)
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
        print(f"  {kind:22s} {statistics.median(ms):7.1f} {p95:7.1f}  {len(ms)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
