"""A test wristband (PDF): the patient's name, MRN and date of birth, and a Code 128 barcode
carrying the MRN, as a hospital's wristband printer makes it. Scanned at the bedside (a scanner
acting as a keyboard types the MRN and Enter), it identifies the patient.

Text goes through the records' text path with the administration record's fonts, so any name
prints as its characters and is interpreted as nothing.
"""

from __future__ import annotations

import io
from datetime import date

from reportlab.graphics.barcode import code128
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

from workflow.records import text as printed
from workflow.records.layout import load_layout
from workflow.records.render import font_chains

BAND_SIZE = (200 * mm, 25 * mm)  # an adult wristband's printable strip


def wristband_pdf(name: str, mrn: str, date_of_birth: date) -> bytes:
    """One wristband strip: the barcode (the MRN alone) and the two identifiers in words."""
    buf = io.BytesIO()
    width, height = BAND_SIZE
    pdf = canvas.Canvas(buf, pagesize=BAND_SIZE, pageCompression=1)
    pdf.setTitle(f"Wristband {mrn} (test)")
    regular, heavy, _mono = font_chains(load_layout("administration"))
    barcode = code128.Code128(mrn, barHeight=14 * mm, barWidth=0.33 * mm)
    barcode.drawOn(pdf, 4 * mm, 6 * mm)
    x = 4 * mm + barcode.width + 6 * mm
    printed.draw(pdf, x, height - 9 * mm, printed.one_line(name), heavy, 11)
    printed.draw(pdf, x, height - 15 * mm, f"MRN {mrn}", regular, 10)
    printed.draw(pdf, x, height - 20.5 * mm, f"DOB {date_of_birth.isoformat()}", regular, 10)
    printed.draw(pdf, 4 * mm, 2 * mm, f"{mrn}   TEST WRISTBAND", regular, 6)
    assert x < width
    pdf.showPage()
    pdf.save()
    return buf.getvalue()
