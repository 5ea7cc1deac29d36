"""The signed PDF records in words for people: step and role titles (never ids broken
mid-word), times in the site's zone to the minute (never ISO text with microseconds).

The records are real: a dose held at the pre-dose checks, resumed, given and completed through
the service, archived and signed; the text is what pdftotext reads out of the PDFs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from workflow.dev.demo import _SIGNERS
from workflow.dev.walk import values_for

from .conftest import Site, cred

OSLO = ZoneInfo("Europe/Oslo")  # CET in December: the zone shows on every time
ISO_FRACTION = re.compile(r"\d{2}:\d{2}:\d{2}\.\d+")
ISO_T = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def pdf_text(pdf: bytes, folder: Path, name: str) -> str:
    """The text in reading order (table cells one after another, not side by side)."""
    path = folder / f"{name}.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True)
    return out.stdout


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_records_print_titles_and_local_minutes(sqlite_site: Site, tmp_path: Path) -> None:
    site = sqlite_site
    site.bedside.tz = OSLO
    site.archive.tz = OSLO
    view = site.walk_to("hold_checks")
    cid = view.case.case_id
    # A hold (SpO2 below the rule's limit), resumed by the prescriber: its times are printed.
    site.clock.advance(minutes=20)
    values = values_for(view.case, "hold_checks", site.clock.now())
    values["spo2_pct"] = "88"
    view = site.bedside.sign_step(cid, view.version, "hold_checks", values, cred("n.alvarez"))
    assert view.case.state == "held"
    site.clock.advance(minutes=30)
    view = site.bedside.side_exit(
        cid, view.version, "resume", "prescriber_judgement", "rechecked", cred("dr.okafor")
    )
    while view.case.next_step() is not None:
        step = view.case.next_step()
        assert step is not None
        site.clock.advance(minutes=15 if step.id == "infusion_stop" else 5)
        vals = values_for(view.case, step.id, site.clock.now())
        view = site.bedside.sign_step(cid, view.version, step.id, vals, cred(_SIGNERS[step.id]))
    assert view.case.state == "completed"
    records = site.bedside.store.search_archive(case_id=cid)
    assert {r.kind for r in records} == {"compounding", "administration"}
    protocol = site.bedside.protocol
    for record in records:
        _meta, pdf = site.archive.get(record.sha256)
        text = pdf_text(pdf, tmp_path, record.kind)
        assert not ISO_FRACTION.search(text), f"{record.kind}: an ISO time with fractions"
        assert not ISO_T.search(text), f"{record.kind}: an ISO time"
        assert " CET" in text, f"{record.kind}: no time in the site's zone"
        assert "UTC" not in text, f"{record.kind}: a time not in the site's zone"
        # Step titles and role titles whole (cells wrap between words), never step ids.
        words = set(text.split())
        signed = [e for e in site.bedside.load(cid).case.events if e.actor and e.step]
        for event in signed:
            if event.step not in protocol.record(record.kind).steps:  # type: ignore[union-attr]
                continue
            title = protocol.step(event.step).title
            # Every word of the step's title whole (a cell wraps between words, never inside).
            missing = [w for w in title.split() if w not in words]
            assert not missing, f"{record.kind}: '{title}' printed broken ({missing})"
        # Role titles, not role ids.
        if record.kind == "administration":
            assert {"Registered", "nurse", "Pharmacist", "Prescriber"} <= words
            assert {"Resume", "after", "hold"} <= words  # the side exit, by its title
        else:
            assert {"Pharmacy", "technician", "Pharmacist"} <= words
        assert "pharmacy_technician" not in text
        for broken in ("ord er", "order_verification", "infusion_start", "hold_checks"):
            assert broken not in text, f"{record.kind}: '{broken}' printed"
    # One record as a person sees it, for the report (pdftoppm -png; looked at by eye).
    if shutil.which("pdftoppm"):
        admin = next(r for r in records if r.kind == "administration")
        _meta, pdf = site.archive.get(admin.sha256)
        (tmp_path / "admin.pdf").write_bytes(pdf)
        subprocess.run(
            ["pdftoppm", "-png", "-r", "60", str(tmp_path / "admin.pdf"), str(tmp_path / "page")],
            check=True,
        )
        assert sorted(tmp_path.glob("page-*.png"))
