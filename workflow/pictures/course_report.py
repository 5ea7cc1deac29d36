"""The course summary PDF (``bedside course report PATIENT``): the timeline chart, counts per
cycle against the protocol's limits, and each dose with the rules that fired.

A summary for the team, not a signed record: the signed records stay the per-dose PDFs.
The patient's name goes through the records' text path (workflow/records/text.py) with their
fonts, so it prints in any script as on the records.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from io import BytesIO
from xml.sax.saxutils import escape

from reportlab.graphics.shapes import Circle, Drawing, Line, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from workflow.core.events import format_time
from workflow.core.machine import Case
from workflow.records import text as printed
from workflow.records.fonts import FontChain
from workflow.records.layout import load_layout
from workflow.records.render import font_chains

from .timeline import WIDTH, Timeline, course_timeline, shapes


def timeline_drawing(t: Timeline, width: float, chain: FontChain) -> Drawing:
    items, height = shapes(t)
    scale = width / WIDTH
    d = Drawing(width, height * scale)
    for s in items:
        # The shapes use y downwards (SVG); reportlab's y goes up.
        def y(v: float) -> float:
            return (height - v) * scale  # used at once, in this iteration

        if s.kind == "line":
            d.add(
                Line(
                    s.x * scale, y(s.y), s.w * scale, y(s.h), strokeColor=colors.HexColor(s.colour)
                )
            )
        elif s.kind == "circle":
            c = colors.HexColor(s.colour)
            d.add(Circle(s.x * scale, y(s.y), s.w * scale, fillColor=c, strokeColor=c))
        elif s.kind == "text":
            # One String per font run (a String has one font), placed side by side.
            x, size = s.x * scale, s.size * scale
            for font, part in printed.visual_runs(s.text, chain):
                d.add(
                    String(
                        x, y(s.y), part, fontSize=size, fontName=font,
                        fillColor=colors.HexColor(s.colour),
                    )
                )  # fmt: skip
                x += pdfmetrics.stringWidth(part, font, size)
    return d


def course_report_pdf(
    cases: Sequence[Case], *, patient: str, mrn: str, generated_at: datetime
) -> bytes:
    """``cases`` of one course, in the order they were opened (at least one)."""
    if not cases:
        raise ValueError("a course report needs at least one case")
    protocol = cases[-1].protocol
    title = f"Course timeline: {patient} ({mrn})"
    t = course_timeline(protocol, cases, title)
    styles = getSampleStyleSheet()
    regular, bold, _mono = font_chains(load_layout("administration"))
    body, small = styles["BodyText"], styles["BodyText"].clone("small", fontSize=8, leading=10)
    heading = styles["Title"].clone("title-any-script", fontName=bold.primary)
    buf = BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=title,
        author="Bedside",
    )
    ident = [f"{escape(protocol.name)}, version {escape(protocol.version)}"]
    if protocol.overlay is not None:
        ident.append(
            f"institution overlay {escape(protocol.overlay.name)}, version "
            f"{escape(protocol.overlay.version)}"
        )
    story: list[object] = [
        printed.paragraph(f"Course summary: {patient}, MRN {mrn}", heading, bold),
        Paragraph("; ".join(ident), body),
        Paragraph(f"protocol sha256 {protocol.content_hash}", small),
        Paragraph(
            f"Generated {format_time(generated_at)}. A summary, not a signed record: each dose's "
            "signed records are in the archive.",
            small,
        ),
        Spacer(1, 6),
        timeline_drawing(t, doc.width, regular),
        Spacer(1, 8),
        _counts(t, protocol.schedule.max_doses_per_cycle.value),
        Spacer(1, 8),
        _doses(t),
    ]
    doc.build(story)
    return buf.getvalue()


def _grid(table: Table) -> Table:
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef3fb")),
                ("FONTSIZE", (0, 0), (-1, -1), 8),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return table


def _counts(t: Timeline, per_cycle: object) -> Table:
    rows: list[list[str]] = [["cycle", "given", "held", "skipped / wasted", "limit per cycle"]]
    for cycle in sorted(t.cycle_starts):
        ds = [d for d in t.doses if d.cycle == cycle]
        rows.append(
            [
                str(cycle),
                str(sum(d.status == "given" for d in ds)),
                str(sum(d.status == "held" for d in ds)),
                str(sum(d.status in ("skipped", "wasted") for d in ds)),
                str(per_cycle),
            ]
        )
    return _grid(Table(rows, hAlign="LEFT"))


def _doses(t: Timeline) -> Table:
    rows: list[list[str]] = [["cycle", "dose", "time (UTC)", "status", "rules that fired"]]
    for d in t.doses:
        rows.append(
            [
                str(d.cycle),
                str(d.dose_in_cycle),
                d.at.strftime("%Y-%m-%d %H:%M"),
                d.status.replace("_", " "),
                ", ".join(d.rules) or "-",
            ]
        )
    return _grid(Table(rows, hAlign="LEFT", repeatRows=1))
