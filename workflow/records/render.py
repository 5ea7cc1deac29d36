"""Render a :class:`RecordDocument` to PDF bytes with reportlab platypus.

Everything visual comes from the :class:`Layout`. Every piece of record text goes through
:func:`_para`, which escapes it, because reportlab's Paragraph parses markup: a patient named
``<b>&`` must print as those characters. Output is byte-identical for identical documents
(reportlab's invariant mode, a document id derived from the record hash, no clock).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from reportlab.graphics.barcode import qrencoder
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    Image,
    KeepTogether,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from . import text as printed
from .document import ProtocolRef, RecordDocument, Row, Section, SignatureManifestation
from .document import Table as DocTable
from .embed import attach_events
from .fonts import FontChain, FontFile
from .layout import FontSpec, Layout, load_layout

_PAGE_SIZES = {"A4": A4, "Letter": LETTER}
# Cells are allowed to split inside a row, so one enormous note flows over pages instead of
# raising "flowable too large"; this many lines must stay together at a split.
_SPLIT_IN_ROW = 2
_PAD = 2.5


@functools.cache
def _chain(spec: FontSpec, fallbacks: tuple[FontFile, ...]) -> FontChain:
    # One chain per style and process: each remembers which font prints which character.
    own = tuple(FontFile(path, spec.package or "a font package") for path in spec.ttf)
    return FontChain(own, spec.standard, fallbacks)


def font_chains(layout: Layout) -> tuple[FontChain, FontChain, FontChain]:
    """The regular, bold and mono font chains a layout names (bag labels use them too)."""
    regular, bold, mono = (
        _chain(spec, layout.font_fallbacks)
        for spec in (layout.font_regular, layout.font_bold, layout.font_mono)
    )
    return regular, bold, mono


@dataclass(frozen=True)
class _Styles:
    title: ParagraphStyle
    subtitle: ParagraphStyle
    heading: ParagraphStyle
    label: ParagraphStyle
    body: ParagraphStyle
    mono: ParagraphStyle
    small: ParagraphStyle
    th: ParagraphStyle
    flag: ParagraphStyle
    regular: FontChain
    bold: FontChain
    mono_chain: FontChain


def _styles(layout: Layout) -> _Styles:
    chains = font_chains(layout)
    by_font = {c.primary: c for c in reversed(chains)}
    regular, bold, mono = (c.primary for c in chains)
    text = colors.HexColor(layout.color_text)
    body_size = layout.size_body

    def style(name: str, font: str, size: float, **kw: Any) -> ParagraphStyle:
        kw.setdefault("textColor", text)
        made = ParagraphStyle(
            name, fontName=font, fontSize=size, leading=size * 1.22, splitLongWords=1, **kw
        )
        # The chain travels with the style, so every paragraph finds its fallback fonts.
        made.bedside_chain = by_font[font]
        return made

    return _Styles(
        title=style("title", bold, layout.size_title, spaceAfter=2),
        subtitle=style(
            "subtitle", regular, layout.size_small, textColor=colors.HexColor(layout.color_muted)
        ),
        heading=style(
            "heading",
            bold,
            layout.size_heading,
            keepWithNext=1,
            spaceBefore=7,
            spaceAfter=3,
            backColor=colors.HexColor(layout.color_heading_background),
            borderPadding=(2, 3, 2, 3),
        ),
        label=style("label", bold, body_size),
        body=style("body", regular, body_size),
        mono=style("mono", mono, layout.size_small),
        small=style("small", regular, layout.size_small),
        th=style("th", bold, layout.size_small),
        flag=style("flag", bold, layout.size_small, textColor=colors.HexColor(layout.color_flag)),
        regular=chains[0],
        bold=chains[1],
        mono_chain=chains[2],
    )


def _para(text: str, style: ParagraphStyle) -> Paragraph:
    return printed.paragraph(text, style, style.bedside_chain)


def _grid(layout: Layout, header: bool) -> TableStyle:
    rule = colors.HexColor(layout.color_rule)
    commands: list[tuple[Any, ...]] = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("GRID", (0, 0), (-1, -1), 0.4, rule),
        ("LEFTPADDING", (0, 0), (-1, -1), _PAD),
        ("RIGHTPADDING", (0, 0), (-1, -1), _PAD),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    if header:
        commands.append(
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor(layout.color_heading_background))
        )
    return TableStyle(commands)


def _table(
    data: list[list[Flowable]],
    widths: Sequence[float],
    width: float,
    layout: Layout,
    header: bool = True,
) -> Table:
    table = Table(
        data,
        colWidths=[w * width for w in widths],
        repeatRows=1 if header else 0,
        splitInRow=_SPLIT_IN_ROW,
        hAlign="LEFT",
    )
    table.setStyle(_grid(layout, header))
    return table


def _note_cell(row: Row, st: _Styles) -> list[Flowable]:
    cell: list[Flowable] = []
    if row.flag:
        cell.append(_para(row.flag.upper(), st.flag))
    if row.note:
        cell.append(_para(row.note, st.small))
    return cell


def _rows_table(rows: Sequence[Row], layout: Layout, st: _Styles, width: float) -> Table:
    head: list[Flowable] = [_para(h, st.th) for h in layout.row_headings]
    data: list[list[Flowable]] = [head]
    for row in rows:
        note = _note_cell(row, st)
        data.append([_para(row.label, st.label), _para(row.value, st.body), note or ""])
    return _table(data, layout.row_widths, width, layout)


def _free_table(table: DocTable, layout: Layout, st: _Styles, width: float) -> list[Flowable]:
    n = len(table.columns)
    widths = layout.table_widths.get(table.key)
    if not widths or len(widths) != n:
        widths = tuple(1.0 / n for _ in range(n))
    data: list[list[Flowable]] = [[_para(c, st.th) for c in table.columns]]
    data += [[_para(cell, st.body) for cell in row] for row in table.rows]
    title = _para(table.title, st.label)
    title.keepWithNext = 1
    return [Spacer(1, 3), title, Spacer(1, 1.5), _table(data, widths, width, layout)]


def _section(
    title: str, section: Section | None, layout: Layout, st: _Styles, width: float
) -> list[Flowable]:
    out: list[Flowable] = [_para(title, st.heading)]
    if section is None or (not section.rows and not section.tables):
        out.append(_para("Not recorded", st.body))
        return out
    if section.rows:
        out.append(_rows_table(section.rows, layout, st, width))
    for table in section.tables:
        out += _free_table(table, layout, st, width)
    out += _thumbnails(section, st, width)
    return out


_THUMB_WIDTH_MM = 55.0


def _thumbnails(section: Section, st: _Styles, width: float) -> list[Flowable]:
    """In-process photos, three to a row, each over its title and the photo's SHA-256."""
    if not section.thumbnails:
        return []
    cells: list[list[Flowable]] = []
    box = min(_THUMB_WIDTH_MM * mm, width / 3 - 6)
    for thumb in section.thumbnails:
        reader = ImageReader(BytesIO(thumb.jpeg))
        w, h = reader.getSize()
        scale = box / max(w, h)
        image = Image(BytesIO(thumb.jpeg), width=w * scale, height=h * scale)
        cells.append(
            [
                image,
                _para(thumb.title, st.body),
                _para(f"{thumb.sha256[:32]} {thumb.sha256[32:]}", st.small),
            ]
        )
    rows = [cells[i : i + 3] for i in range(0, len(cells), 3)]
    rows[-1] += [[]] * (3 - len(rows[-1]))
    grid = Table(rows, colWidths=[width / 3] * 3)
    grid.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return [Spacer(1, 3), grid]


def _subject(document: RecordDocument, layout: Layout, st: _Styles, width: float) -> list[Flowable]:
    pairs = layout.subject_pairs_per_line
    cells: list[Flowable] = []
    for label, value in document.subject:
        cells += [_para(label, st.label), _para(value, st.body)]
    per_line = pairs * 2
    while len(cells) % per_line:
        cells.append(_para("", st.body))
    data = [cells[i : i + per_line] for i in range(0, len(cells), per_line)]
    out: list[Flowable] = [_para(layout.subject_title, st.heading)]
    if data:
        out.append(_table(data, layout.subject_widths, width, layout, header=False))
    else:
        out.append(_para("No identifiers recorded", st.body))
    return out


def _signatures(
    document: RecordDocument, layout: Layout, st: _Styles, width: float
) -> list[Flowable]:
    out: list[Flowable] = [_para(layout.signatures_title, st.heading)]
    if not document.signatures:
        out.append(_para("No signatures recorded", st.body))
        return out
    data: list[list[Flowable]] = [[_para(h, st.th) for h in layout.signature_headings]]
    for sig in document.signatures:
        data.append(
            [
                _signer(sig, st),
                _para(sig.role, st.body),
                _para(sig.signed_at_utc, st.body),
                _para(sig.meaning, st.label),
                _para(sig.content_hash, st.mono),
            ]
        )
    out.append(_table(data, layout.signature_widths, width, layout))
    return out


def _signer(sig: SignatureManifestation, st: _Styles) -> Flowable | list[Flowable]:
    """The printed name, then the account id on its own line in the mono face.

    The id is one 32-character word: run on after the name it broke at whatever hex digit the
    column ended on, and an auditor read three fragments of it. On its own line it breaks only
    where the mono face's fixed width says, the same for every id.
    """
    if sig.user_id is None:
        return _para(sig.printed_name, st.label)
    return [_para(sig.printed_name, st.label), _para(f"({sig.user_id})", st.mono)]


_QR_MASK = 0


class _Qr(Flowable):  # type: ignore[misc]
    """A QR code drawn straight onto the canvas.

    reportlab's QrCodeWidget builds one shape object per run of dark modules and encodes the
    code twice (once to measure, once to draw), which was a third of the render time. Here the
    code is encoded once and each run of dark modules is one rectangle.
    """

    _QUIET = 2  # modules of white border; the table cell adds its own padding

    def __init__(self, value: str, size: float) -> None:
        super().__init__()
        code = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.M)
        code.addData(value)
        # Any of the eight mask patterns gives a valid code; searching for the "best" one cost
        # 6 ms a record. Decoding is tested with zbar on rendered pages.
        code.version = code.calculate_version()
        code.makeImpl(False, _QR_MASK)
        self.modules: list[list[bool]] = [[bool(m) for m in row] for row in code.modules]
        self.size = size

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        return self.size, self.size

    def draw(self) -> None:
        count = len(self.modules)
        box = self.size / (count + 2 * self._QUIET)
        canvas = self.canv
        canvas.setFillColor(colors.black)
        for r, row in enumerate(self.modules):
            y = self.size - (r + self._QUIET + 1) * box
            c = 0
            for dark, run in itertools.groupby(row):
                n = len(list(run))
                if dark:
                    canvas.rect((c + self._QUIET) * box, y, n * box, box, stroke=0, fill=1)
                c += n


def _overlay_lines(proto: ProtocolRef, st: _Styles) -> list[Flowable]:
    if proto.overlay_name is None:
        return []
    return [
        _para(f"protocol file sha256 {proto.file_sha256}", st.mono),
        _para(
            f"with institution overlay {proto.overlay_name}, version {proto.overlay_version}",
            st.body,
        ),
        _para(f"overlay sha256 {proto.overlay_sha256}", st.mono),
    ]


def _integrity(
    document: RecordDocument, layout: Layout, st: _Styles, width: float
) -> list[Flowable]:
    proto = document.protocol
    qr_size = layout.qr_size_mm * mm
    text: list[Flowable] = [
        _para(layout.protocol_label, st.label),
        _para(f"{proto.name}, version {proto.version}", st.body),
        _para(proto.sha256, st.mono),
        *_overlay_lines(proto, st),
        Spacer(1, 3),
        _para(layout.chain_label, st.label),
        _para(document.chain_hash, st.mono),
        Spacer(1, 3),
        _para(layout.record_label, st.label),
        _para(document.record_hash(), st.mono),
        Spacer(1, 3),
        _para(layout.integrity_note, st.small),
    ]
    box = Table(
        [[text, _Qr(document.record_hash(), qr_size)]],
        colWidths=[width - qr_size - 4 * _PAD, qr_size + 4 * _PAD],
        hAlign="LEFT",
        splitInRow=_SPLIT_IN_ROW,
    )
    box.setStyle(_grid(layout, header=False))
    return [_para(layout.integrity_title, st.heading), box]


def _story(document: RecordDocument, layout: Layout, st: _Styles, width: float) -> list[Flowable]:
    story: list[Flowable] = [
        _para(document.title, st.title),
        _para(
            f"{layout.kind_title} | record {document.record_id} | case {document.case_id}",
            st.subtitle,
        ),
    ]
    story += _subject(document, layout, st, width)
    by_key = {s.key: s for s in document.sections}
    for spec in layout.sections:
        if spec.key in by_key or spec.required:
            story += _section(spec.title, by_key.get(spec.key), layout, st, width)
    # Sections the layout does not know still print, in the document's order: a layout may
    # arrange a record but never hide part of it.
    for section in document.sections:
        if layout.section(section.key) is None:
            story += _section(section.title, section, layout, st, width)
    story += _signatures(document, layout, st, width)
    story.append(KeepTogether(_integrity(document, layout, st, width)))
    return story


class _Chrome:
    """Header and footer of every page; drawn last, when the page count is known."""

    def __init__(self, document: RecordDocument, layout: Layout, st: _Styles) -> None:
        self.layout = layout
        self.st = st
        self.document = document
        subject = " | ".join(f"{label}: {value}" for label, value in document.subject)
        self.values = {
            "drug": document.drug,
            "kind_title": layout.kind_title,
            "title": document.title,
            "record_id": document.record_id,
            "case_id": document.case_id,
            "subject": subject,
            "record_hash": document.record_hash(),
            "record_hash_short": document.record_hash()[:16],
        }

    def text(self, pattern: str, page: int, pages: int) -> str:
        return pattern.format_map({**self.values, "page": page, "pages": pages})

    def draw(self, canvas: Canvas, page: int, pages: int) -> None:
        lay = self.layout
        page_w, page_h = _PAGE_SIZES[lay.page_size]
        left, right = lay.margins.left_mm * mm, page_w - lay.margins.right_mm * mm
        width = right - left
        canvas.saveState()
        canvas.setFillColor(colors.HexColor(lay.color_text))
        size = lay.size_header
        y = page_h - lay.margins.top_mm * mm + size * 2.6
        regular, bold = self.st.regular, self.st.bold
        right_text = printed.fit(
            self.text(lay.header_right, page, pages), regular, size, width * 0.4
        )
        right_w = printed.draw(canvas, right, y, right_text, regular, size, right=True)
        left_text = self.text(lay.header_left, page, pages)
        printed.draw(
            canvas, left, y, printed.fit(left_text, bold, size, width - right_w - 12), bold, size
        )
        second = printed.fit(self.text(lay.header_second, page, pages), regular, size, width)
        printed.draw(canvas, left, y - size * 1.3, second, regular, size)
        canvas.setStrokeColor(colors.HexColor(lay.color_rule))
        canvas.setLineWidth(0.5)
        line_y = y - size * 1.3 - 3
        canvas.line(left, line_y, right, line_y)

        size = lay.size_footer
        y = lay.margins.bottom_mm * mm - size * 2.2
        canvas.line(left, y + size * 1.3, right, y + size * 1.3)
        canvas.setFillColor(colors.HexColor(lay.color_muted))
        right_text = self.text(lay.footer_right, page, pages)
        right_w = printed.draw(canvas, right, y, right_text, regular, size, right=True)
        footer = printed.fit(
            self.text(lay.footer_left, page, pages), regular, size, width - right_w - 12
        )
        printed.draw(canvas, left, y, footer, regular, size)
        canvas.restoreState()


class _RecordCanvas(Canvas):  # type: ignore[misc]
    """Holds pages back until the end so "page n of m" is known; embeds the events file."""

    def __init__(self, *args: Any, chrome: _Chrome, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._chrome = chrome
        self._held: list[dict[str, Any]] = []

    def showPage(self) -> None:
        self._held.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._held)
        for state in self._held:
            self.__dict__.update(state)
            self._chrome.draw(self, self._pageNumber, total)
            super().showPage()
        document = self._chrome.document
        attach_events(
            self._doc,
            document.events_json,
            f"Events of case {document.case_id} behind record {document.record_id}",
        )
        # reportlab's invariant id is the same for every document; derive it from the record
        # hash so it is stable for one record and different between records.
        ident = b"<" + document.record_hash()[:32].encode("ascii") + b">"
        self._doc._ID = b"\n[" + ident + ident + b"]\n"
        super().save()


def render(document: RecordDocument, layout: Layout | None = None) -> bytes:
    """The record as PDF bytes (unsigned; ``events.json`` embedded)."""
    layout = layout or load_layout(document.kind)
    st = _styles(layout)
    page_w, page_h = _PAGE_SIZES[layout.page_size]
    m = layout.margins
    frame = Frame(
        m.left_mm * mm,
        m.bottom_mm * mm,
        page_w - (m.left_mm + m.right_mm) * mm,
        page_h - (m.top_mm + m.bottom_mm) * mm,
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
        id="body",
    )
    out = BytesIO()
    template = BaseDocTemplate(
        out,
        pagesize=(page_w, page_h),
        invariant=1,
        pageCompression=1,
        title=f"{layout.kind_title} {document.record_id}",
        author="Bedside",
        subject=f"{document.drug} | case {document.case_id}",
        creator="Bedside",
        producer="Bedside (reportlab)",
        keywords=f"record_hash={document.record_hash()}",
        pageTemplates=[PageTemplate(id="record", frames=[frame])],
    )
    chrome = _Chrome(document, layout, st)
    template.build(
        _story(document, layout, st, page_w - (m.left_mm + m.right_mm) * mm),
        canvasmaker=functools.partial(_RecordCanvas, chrome=chrome),
    )
    return out.getvalue()
