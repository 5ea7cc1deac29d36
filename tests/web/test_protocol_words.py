"""Issue 14.4: what pages, the bag label and both records print about clinical facts comes from
the protocol in use. Under the example overlay plus tightened numbers (beyond-use 36 h, 12
doses a cycle, 24 a course, a 35-60 mcg/mL window, a 10-day eligibility window) a whole dose
is walked through the service on both databases, and every text a person reads (the case page,
the ward and pharmacy lists, the bag label, the compounding and administration records, as
pdftotext reads them) states the overlay's numbers, never the base protocol's, and carries the
protocol's display words."""

from __future__ import annotations

import html
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.conftest import Site, cred, make_site
from workflow.core.protocol import Protocol
from workflow.core.protocol.overlay import load_overlay
from workflow.dev.walk import values_for
from workflow.resources import checklists_dir

TIGHTENED = """
tighten_numbers:
  dosing.beyond_use: {value: 36, unit: h, source: institutional_tables}
  schedule.max_doses_per_cycle: {value: 12, unit: doses, source: institutional_tables}
  schedule.max_doses_per_course: {value: 24, unit: doses, source: institutional_tables}
  dosing.concentration_window.min: {value: 35, unit: mcg/mL, source: institutional_tables}
  dosing.concentration_window.max: {value: 60, unit: mcg/mL, source: institutional_tables}
  eligibility.max_age: {value: 10, unit: d, source: institutional_tables}
"""

# What the base protocol says where the overlay says otherwise: none of it may be printed.
BASE_NUMBERS = {
    "beyond-use 48 h": re.compile(r"\b48 ?(h|hours?)\b"),
    # "dose 3 of 14", "Cycle 1 · 3 of 14"; not the page's "Step 7 of 14" (the walk's steps)
    "14 doses a cycle": re.compile(r"(?<!Step )\b\d+ of 14\b"),
    "28 doses a course": re.compile(r"(?<!Step )\b\d+ of 28\b"),
    "30-70 mcg/mL window": re.compile(r"\b30 ?- ?70\b"),
}


def tightened_overlay(protocol: Protocol, tmp_path: Path) -> Protocol:
    """The shipped example overlay with the numbers above tightened (one overlay file)."""
    example = (checklists_dir() / "aldesleukin.overlay-example.yaml").read_text()
    path = tmp_path / "tightened.overlay.yaml"
    path.write_text(example + TIGHTENED)
    return load_overlay(path, protocol)


@pytest.fixture
def tight_site(db_url: str, home: Path, protocol: Protocol, tmp_path: Path) -> Iterator[Site]:
    s, store = make_site(db_url, home, tightened_overlay(protocol, tmp_path))
    try:
        yield s
    finally:
        store.close()


def page_text(body: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


def pdf_text(pdf: bytes, tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True)
    return re.sub(r"\s+", " ", out.stdout)


def contradictions(text: str) -> list[str]:
    return [what for what, pattern in BASE_NUMBERS.items() if pattern.search(text)]


def test_pages_label_and_records_state_the_overlays_numbers_and_words(
    tight_site: Site, tmp_path: Path
) -> None:
    site = tight_site
    p = site.bedside.protocol
    assert p.dosing.beyond_use.value == 36 and p.say("beyond_use").startswith(
        "the infusion must end within 36 h"
    )
    texts: dict[str, str] = {}

    # The pharmacist's screens while the bag waits for verification: plan and lists shown.
    view = site.walk_to("pharmacy_verification")
    case_id = view.case.case_id
    pharmacist = site.client("p.lindqvist")
    texts["case page"] = page_text(pharmacist.get(f"/cases/{case_id}").text)
    texts["pharmacy list"] = page_text(pharmacist.get("/pharmacy").text)
    label = pharmacist.get(f"/cases/{case_id}/label.pdf")
    assert label.status_code == 200, label.text
    texts["bag label"] = pdf_text(label.content, tmp_path, "label")

    # The nurse's list once the independent checks are done (they hide the dose numbers).
    view = site.walk_to("infusion_start", view)
    texts["ward list"] = page_text(site.client("n.alvarez").get("/ward").text)

    done = site.walk_to("record_sign_off", view)
    final = site.bedside.sign_step(
        case_id,
        done.version,
        "record_sign_off",
        values_for(done.case, "record_sign_off", site.clock.now()),
        cred("n.alvarez"),
    )
    assert final.case.state == "completed"
    records = {r.kind: r for r in site.bedside.store.search_archive(case_id=case_id)}
    assert set(records) == {"compounding", "administration"}
    for kind, rec in records.items():
        texts[f"{kind} record"] = pdf_text(site.archive.blobs.get(rec.sha256), tmp_path, kind)

    # Nothing a person reads states the base protocol's number where the overlay set another.
    found = {where: contradictions(text) for where, text in texts.items()}
    assert all(not hits for hits in found.values()), found

    # ... and each states the overlay's, where it prints that fact.
    assert "1 of 12" in texts["ward list"] and "1 of 12" in texts["pharmacy list"]
    for kind in ("compounding", "administration"):
        record = texts[f"{kind} record"]
        assert "dose 1 of 12 (course dose 1 of 24)" in record
        assert "within 36 h of preparation" in record
    assert "window 35-60 mcg/mL" in texts["compounding record"]

    # The protocol's words, where Python once wrote its own.
    label_text = texts["bag label"]
    assert f"in {p.say('final_diluent_short')}" in label_text
    assert f"{p.say('in_line_filter')}." in label_text
    assert label_text.count(f"{p.say('route_short')} over ") == 1
    compounding = texts["compounding record"]
    assert p.say("product") in compounding
    assert p.say("reconstitution_diluent") in compounding
    assert f"{p.say('final_diluent')} bag" in compounding
    assert f"mL {p.say('reconstitution_diluent')}" in texts["case page"]
    assert f"mL {p.say('final_diluent_short')}" in texts["pharmacy list"]
