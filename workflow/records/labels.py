"""The printable bag label (PDF): patient, drug, dose, volume, concentration, beyond-use time
and a barcode. Rendering only: every number comes from the case's own plan and entries.

Text is drawn with ``drawString`` (never reportlab's Paragraph markup), so a name such as
``<script>`` is printed as those characters and interpreted as nothing. It goes through the
records' own text path (workflow/records/text.py) with the administration record's fonts, so
a name in Greek, Hebrew, Arabic or Chinese prints on the bag exactly as on the record.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import tzinfo

from reportlab.graphics.barcode import code128
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

from workflow.core.dosing import fmt
from workflow.core.errors import StepRefused
from workflow.core.machine import Case
from workflow.records import text as printed
from workflow.records.bidi_text import wrap
from workflow.records.fonts import FontChain
from workflow.records.layout import load_layout
from workflow.records.render import font_chains

LABEL_SIZE = (100 * mm, 75 * mm)


def _local(case: Case, tz: tzinfo) -> str:
    bud = case.beyond_use_at
    return bud.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if bud else ""


def _measure(chain: FontChain, size: float) -> Callable[[str], float]:
    return lambda text: printed.width(text, chain, size)


def bag_label_pdf(case: Case, tz: tzinfo) -> bytes:
    """The label for a prepared bag; refused until the preparation set a beyond-use time."""
    plan = case.plan
    patient = case.patient
    if plan is None or patient is None or case.beyond_use_at is None:
        raise StepRefused(
            "not_prepared", "No bag label yet: the preparation has not been signed for this dose"
        )
    buf = io.BytesIO()
    _width, height = LABEL_SIZE
    pdf = canvas.Canvas(buf, pagesize=LABEL_SIZE, pageCompression=1)
    pdf.setTitle(f"Bag label {case.case_id}")
    x = 5 * mm
    y = height - 9 * mm

    regular, heavy, _mono = font_chains(load_layout("administration"))

    def line(text: str, size: float = 9, bold: bool = False, gap: float = 4.6) -> None:
        nonlocal y
        printed.draw(pdf, x, y, text, heavy if bold else regular, size)
        y -= gap * mm

    # The whole name, always: smaller, on two lines (more if it must), never off the label's edge.
    for size in (12, 11, 10, 9, 8, 7):
        names = wrap(printed.one_line(patient.name), _width - 2 * x, _measure(heavy, size))
        if len(names) <= 2 or size == 7:
            break
    for name in names:
        line(name, size, bold=True, gap=size * 0.46)
    line(f"MRN {patient.mrn}    DOB {patient.date_of_birth.isoformat()}")
    line(f"{case.protocol.drug} ({case.protocol.brand})", 11, bold=True, gap=5.2)
    say = case.protocol.say
    d = case.protocol.dosing
    line(f"Dose {fmt(plan.dose_iu, 0)} IU = {fmt(plan.dose_mg, 4)} mg")
    line(
        f"Volume {fmt(plan.final_volume_ml, 1)} mL in {say('final_diluent_short')}   "
        f"{fmt(plan.final_concentration_mcg_per_ml, 1)} {d.concentration_min.unit}"
    )
    filter_words = f" {say('in_line_filter')}." if say("in_line_filter") else ""
    line(
        f"{say('route_short')} over {fmt(plan.infusion_minutes)} min at "
        f"{fmt(plan.pump_rate_ml_per_h, 1)} mL/h.{filter_words}".strip()
    )
    line(f"Cycle {case.cycle}, dose {case.dose_in_cycle}")
    line(f"Use before {_local(case, tz)}", 10, bold=True, gap=5.5)
    barcode = code128.Code128(case.case_id, barHeight=10 * mm, barWidth=0.25 * mm)
    barcode.drawOn(pdf, x - 2 * mm, 5 * mm)
    printed.draw(pdf, x, 2.5 * mm, case.case_id, regular, 6)
    pdf.showPage()
    pdf.save()
    return buf.getvalue()
