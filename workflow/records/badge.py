"""A test staff badge (PDF): the person's printed name and roles, and a Code 128 barcode
carrying their user id, as a hospital's badge printer makes it. Scanned on the sign-in page or
a signature form (a scanner acting as a keyboard types the user id and Enter), it fills the
user id; the password is always typed.

Text goes through the records' text path with the administration record's fonts, so any name
prints as its characters and is interpreted as nothing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from reportlab.graphics.barcode import code128
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

from workflow.records import text as printed
from workflow.records.layout import load_layout
from workflow.records.render import font_chains

BADGE_SIZE = (86 * mm, 54 * mm)  # an ID-1 card (ISO/IEC 7810), landscape


def badge_pdf(username: str, name: str, roles: Sequence[str]) -> bytes:
    """One badge: name and roles in words above the barcode (the user id alone)."""
    buf = io.BytesIO()
    width, height = BADGE_SIZE
    pdf = canvas.Canvas(buf, pagesize=BADGE_SIZE, pageCompression=1)
    pdf.setTitle(f"Staff badge {username} (test)")
    regular, heavy, _mono = font_chains(load_layout("administration"))
    x = 5 * mm
    printed.draw(pdf, x, height - 10 * mm, printed.one_line(name), heavy, 12)
    printed.draw(pdf, x, height - 16 * mm, printed.one_line(", ".join(roles)), regular, 9)
    printed.draw(pdf, x, height - 21.5 * mm, f"User id {username}", regular, 9)
    # Narrow enough for a 32-hex-digit id to fit the card with its quiet zones.
    bar = 0.25 * mm
    barcode = code128.Code128(username, barHeight=15 * mm, barWidth=bar)
    while barcode.width > width - 2 * x and bar > 0.15 * mm:
        bar -= 0.02 * mm
        barcode = code128.Code128(username, barHeight=15 * mm, barWidth=bar)
    barcode.drawOn(pdf, (width - barcode.width) / 2, 8 * mm)
    printed.draw(pdf, x, 3 * mm, "TEST BADGE", regular, 6)
    pdf.showPage()
    pdf.save()
    return buf.getvalue()
