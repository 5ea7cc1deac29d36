"""Record text as printed: escaped, set in fonts that have its glyphs, right-to-left in order.

The one path every piece of record and label text takes to the page, so a patient's or a
signer's name comes out the same in a table cell, a running header and a bag label.
"""

from __future__ import annotations

import re
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics
from reportlab.platypus import Paragraph

from .bidi_text import base_is_rtl, has_rtl, shape, visual, wrap
from .fonts import FontChain

# Unicode category Cc (C0 and C1 controls) less newline and tab.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ARABIC_BEH = "\u0628"  # any Arabic letter: which font prints Arabic in this chain


def clean(text: str) -> str:
    # Control characters other than newline and tab have no glyph and can upset the PDF text
    # operators; show them as U+FFFD rather than silently dropping what was recorded.
    return _CONTROL.sub("\ufffd", text).replace("\t", " ")


def _shaped(text: str, chain: FontChain) -> str:
    return shape(text, chain.glyphs_for(_ARABIC_BEH))


def _markup_line(line: str, chain: FontChain) -> str:
    # Only runs in another font than the style's own need a tag (fewer fragments to lay out).
    return "".join(
        escape(part) if font == chain.primary else f'<font name="{font}">{escape(part)}</font>'
        for font, part in chain.runs(line)
    )


class _RtlParagraph(Paragraph):  # type: ignore[misc]
    """A paragraph holding right-to-left text: broken into lines in logical order at the
    width it is given, then each line reordered for drawing."""

    _logical: str | None
    _chain: FontChain | None
    _rtl: bool
    _width: float | None

    def __init__(
        self, logical: str | None, style: ParagraphStyle, chain: FontChain | None = None, **kw: Any
    ) -> None:
        if chain is None or logical is None:
            # reportlab's split() makes the two halves with Paragraph's own arguments (frags of
            # lines already broken and reordered here): they are laid out as they are.
            self._logical, self._chain, self._rtl, self._width = None, None, False, None
            super().__init__(logical, style, **kw)
            return
        self._logical = logical
        self._chain = chain
        self._rtl = base_is_rtl(logical)
        if self._rtl:
            style = ParagraphStyle(f"{style.name}-rtl", parent=style, alignment=TA_RIGHT)
        self._width = None
        super().__init__(self._markup(logical.split("\n")), style)

    def _markup(self, lines: list[str]) -> str:
        assert self._chain is not None
        chain = self._chain
        return "<br/>".join(_markup_line(visual(line, self._rtl), chain) for line in lines)

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        if self._logical is not None and self._chain is not None and avail_width != self._width:
            style = self.style
            usable = avail_width - style.leftIndent - style.rightIndent - 0.01
            size = style.fontSize
            chain = self._chain
            lines = wrap(self._logical, usable, lambda t: chain.width(t, size))
            logical, rtl = self._logical, self._rtl
            Paragraph.__init__(self, self._markup(lines), style)
            self._logical, self._chain, self._rtl = logical, chain, rtl
            self._width = avail_width
        result: tuple[float, float] = super().wrap(avail_width, avail_height)
        return result


def paragraph(text: str, style: ParagraphStyle, chain: FontChain) -> Paragraph:
    """``text`` as a flowable: literal (markup is escaped), every glyph in a font that has it."""
    text = _shaped(clean(text), chain)
    if has_rtl(text):
        return _RtlParagraph(text, style, chain)
    return Paragraph("<br/>".join(_markup_line(t, chain) for t in text.split("\n")), style)


def one_line(text: str) -> str:
    return clean(text).replace("\n", " ")


def width(text: str, chain: FontChain, size: float) -> float:
    return chain.width(_shaped(one_line(text), chain), size)


def fit(text: str, chain: FontChain, size: float, avail: float) -> str:
    """One line cut with an ellipsis to ``avail`` points (running headers: the full text is
    in the body)."""
    text = one_line(text)
    if width(text, chain, size) <= avail:
        return text
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if width(text[:mid] + "…", chain, size) <= avail:
            low = mid
        else:
            high = mid - 1
    return text[:low] + "…"


def visual_runs(text: str, chain: FontChain) -> list[tuple[str, str]]:
    """One line as (font, text) runs in the order they are drawn, left to right."""
    logical = _shaped(one_line(text), chain)
    return chain.runs(visual(logical, base_is_rtl(logical)))


def draw(
    canvas: Any,
    x: float,
    y: float,
    text: str,
    chain: FontChain,
    size: float,
    *,
    right: bool = False,
) -> float:
    """Draw one line starting at ``x`` (ending there when ``right``); returns its width."""
    runs = visual_runs(text, chain)
    total = float(sum(pdfmetrics.stringWidth(part, font, size) for font, part in runs))
    at = x - total if right else x
    for font, part in runs:
        canvas.setFont(font, size)
        canvas.drawString(at, y, part)
        at += pdfmetrics.stringWidth(part, font, size)
    return total
