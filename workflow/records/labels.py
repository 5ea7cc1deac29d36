"""The printable bag label (PDF): patient, drug, dose, volume, concentration, beyond-use time
and a barcode. Rendering only: every number comes from the case's own plan and entries.

The barcode closes the loop at the bedside (issue 16.4): a GS1 DataMatrix (or QR Code, the
site's ``labels.symbology``) of ``bag_check.bag_code_of`` (case, dose, patient, beyond-use
time), which the pre-infusion scan checks against the dose being given. zxing-cpp writes the
symbol (FNC1 and the GS1 element string rules, zint underneath; reportlab's own DataMatrix has
no GS1 mode) and the label draws its modules as rectangles, so the PDF stays vector.

Text is drawn with ``drawString`` (never reportlab's Paragraph markup), so a name such as
``<script>`` is printed as those characters and interpreted as nothing. It goes through the
records' own text path (workflow/records/text.py) with the administration record's fonts, so
a name in Greek, Hebrew, Arabic or Chinese prints on the bag exactly as on the record.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import tzinfo
from typing import Any

import zxingcpp
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

from workflow.core.bag_check import bag_code_of
from workflow.core.dosing import fmt
from workflow.core.errors import StepRefused
from workflow.core.gs1 import bag_element_string
from workflow.core.machine import Case
from workflow.records import text as printed
from workflow.records.bidi_text import wrap
from workflow.records.fonts import FontChain
from workflow.records.layout import load_layout
from workflow.records.render import font_chains

LABEL_SIZE = (100 * mm, 75 * mm)
SYMBOL_SIZE = 22 * mm  # the 2D symbol's side: 32 modules of about 0.7 mm, easy for any scanner
SYMBOLOGIES = {
    "gs1_datamatrix": zxingcpp.BarcodeFormat.DataMatrix,
    "gs1_qr": zxingcpp.BarcodeFormat.QRCode,
}
DEFAULT_SYMBOLOGY = "gs1_datamatrix"


def _draw_symbol(
    pdf: canvas.Canvas, element_string: str, symbology: str, x: float, y: float
) -> None:
    """The GS1 symbol of ``element_string``, ``SYMBOL_SIZE`` square, its lower left at x, y."""
    symbol = zxingcpp.create_barcode(
        element_string, SYMBOLOGIES[symbology], gs1=True, forceSquare=True
    )
    image: Any = symbol.to_image(scale=1, add_quiet_zones=False)  # buffer: 0 dark, 255 light
    modules: list[list[int]] = memoryview(image).tolist()  # type: ignore[assignment]
    rows, cols = len(modules), len(modules[0])
    cell = SYMBOL_SIZE / max(rows, cols)
    pdf.setFillColorRGB(0, 0, 0)
    for r, row in enumerate(modules):
        c = 0
        while c < cols:  # one rectangle per run of dark modules: fewer, cleaner paths
            if row[c] == 0:
                start = c
                while c < cols and row[c] == 0:
                    c += 1
                top = y + (rows - r - 1) * cell
                pdf.rect(x + start * cell, top, (c - start) * cell, cell, stroke=0, fill=1)
            else:
                c += 1


def _local(case: Case, tz: tzinfo) -> str:
    bud = case.beyond_use_at
    return bud.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if bud else ""


def _measure(chain: FontChain, size: float) -> Callable[[str], float]:
    return lambda text: printed.width(text, chain, size)


def bag_label_pdf(case: Case, tz: tzinfo, symbology: str = DEFAULT_SYMBOLOGY) -> bytes:
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
    symbol_x = _width - SYMBOL_SIZE - 4 * mm
    _draw_symbol(pdf, bag_element_string(bag_code_of(case)), symbology, symbol_x, 5 * mm)
    printed.draw(pdf, x, 2.5 * mm, f"Case {case.case_id}", regular, 6)
    pdf.showPage()
    pdf.save()
    return buf.getvalue()
