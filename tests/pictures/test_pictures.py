"""The pictures render: the state diagram (graphviz), a course timeline (SVG) and the course
summary PDF, from a real course with given, held and skipped doses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest
from interop.support import (
    clock_of,
    given_dose,
    held_and_skipped,
    installation,
    new_course,
    next_slot,
)

from workflow.core.machine import Case
from workflow.core.protocol import Protocol
from workflow.core.protocol.overlay import load_overlay
from workflow.pictures.course_report import course_report_pdf
from workflow.pictures.state_diagram import dot_source, state_diagram_svg
from workflow.pictures.timeline import course_timeline, timeline_svg
from workflow.resources import default_protocol_path

EXAMPLE = Path(default_protocol_path()).parent / "aldesleukin.overlay-example.yaml"


def a_course(db_url: str, protocol: Protocol) -> list[Case]:
    """Given, held + skipped, given, wasted... on the example overlay."""
    with installation(db_url, load_overlay(EXAMPLE, protocol)) as app:
        course = new_course(app)
        given_dose(app, course)
        next_slot(app, course)
        held_and_skipped(app, course, spo2_pct="86")
        clock_of(app).advance(hours=8)
        given_dose(app, course, spo2_pct="95")
        next_slot(app, course)
        held_and_skipped(app, course, heart_rate_bpm="141")
        clock_of(app).advance(hours=8)
        given_dose(app, course, heart_rate_bpm="96")
        return app.course_cases(course)


def test_state_diagram_svg(protocol: Protocol) -> None:
    if shutil.which("dot") is None:
        pytest.skip("graphviz dot not installed (make sysdeps)")
    svg = state_diagram_svg(protocol)
    root = ElementTree.fromstring(svg)
    assert root.tag.endswith("svg")
    words = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for step in protocol.steps:
        assert step.title in words
    assert "held" in words and "discontinued" in words
    assert '"reconstitution" -> "dilution"' in dot_source(protocol)


def test_course_timeline_svg_and_report_pdf(
    db_url: str, protocol: Protocol, tmp_path: Path
) -> None:
    cases = a_course(db_url, protocol)
    t = course_timeline(cases[-1].protocol, cases, "Ada Quist (MRN-1)")
    assert [d.status for d in t.doses] == ["given", "held", "given", "held", "given"]
    assert t.doses[1].rules == ("spo2_below_90",)
    assert t.doses[3].rules == ("inst_heart_rate_above_130",)
    svg = timeline_svg(t)
    root = ElementTree.fromstring(svg)
    assert len(root.findall("{http://www.w3.org/2000/svg}circle")) >= 5
    assert "inst_heart_rate_above_130" in svg
    pdf = course_report_pdf(
        cases, patient="Ada Quist", mrn="MRN-1", generated_at=cases[-1].events[-1].at
    )
    assert pdf.startswith(b"%PDF") and len(pdf) > 2000
    path = tmp_path / "course.pdf"
    path.write_bytes(pdf)
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", str(path), "-"], capture_output=True, check=True
        ).stdout.decode()
        assert "Course summary" in text and "spo2_below_90" in text
        assert "institution overlay" in text


def test_the_course_report_prints_the_patients_name_in_any_script(
    db_url: str, protocol: Protocol, tmp_path: Path
) -> None:
    """Issue 13.8: the report set the name in Helvetica (Latin-1 only): boxes for 李小龍."""
    cases = a_course(db_url, protocol)
    path = tmp_path / "course.pdf"
    path.write_bytes(
        course_report_pdf(
            cases, patient="李, 小龍", mrn="MRN-1", generated_at=cases[-1].events[-1].at
        )
    )
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, check=True).stdout
    assert b"WenQuanYiMicroHei" in fonts  # the CJK font is embedded for the name
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, check=True).stdout
    assert "Course summary: 李, 小龍, MRN MRN-1" in text.decode()
    assert "李, 小龍 (MRN-1)" in text.decode()  # the chart's title too
