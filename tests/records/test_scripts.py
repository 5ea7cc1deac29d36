"""Issue 13.8: names in every script are reproduced faithfully in the signed records.

Checked on real PDFs three ways: every character drawn maps to a real glyph of the embedded
font subset it was set in (none to glyph 0, .notdef, the empty box); poppler's pdftotext reads
each name back in its logical order; and right-to-left words sit right to left on the page.
"""

from __future__ import annotations

import dataclasses
import io
import re
import subprocess
import unicodedata
from pathlib import Path

import pytest
import record_samples
from pyhanko.pdf_utils.reader import PdfFileReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

from workflow.records.document import RecordDocument, Row, Section, SignatureManifestation
from workflow.records.fonts import FontFile, MissingFontError
from workflow.records.layout import load_layout
from workflow.records.render import render

NAMES = {
    "latin": "Łukasiewicz-Ñúñez, Zoë Ørsted",
    "greek": "Παπαδοπούλου Ελένη",
    "cyrillic": "Петрова Анна Ивановна",
    "hebrew": "שרה כהן",
    "arabic": "محمد عبد الرحمن",
    "chinese": "李小龍",
    "japanese": "山田 はなこ ヤマダ",
    "korean": "김민준",
}
RTL = ("hebrew", "arabic")
_BIDI_MARKS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u200e\u200f"))


def _document(extra: Section | None = None) -> RecordDocument:
    base = record_samples.compounding(patient=NAMES["arabic"])
    rows = tuple(Row(k, v) for k, v in NAMES.items())
    signatures = tuple(
        SignatureManifestation(
            printed_name=name,
            role="nurse - observation",
            signed_at_utc="2026-01-01 10:00:00 UTC",
            meaning="performed",
            content_hash="ab" * 32,
        )
        for name in NAMES.values()
    )
    sections = (Section("names", "Names", rows=rows), *((extra,) if extra else ()))
    return dataclasses.replace(base, sections=(*sections, *base.sections), signatures=signatures)


@pytest.fixture(scope="module")
def names_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scripts") / "names.pdf"
    path.write_bytes(render(_document()))
    return path


def _source_glyphs() -> dict[str, dict[int, int]]:
    """The cmap of every TrueType font registered in this process, by PostScript name."""
    out: dict[str, dict[int, int]] = {}
    for name in pdfmetrics.getRegisteredFontNames():
        font = pdfmetrics.getFont(name)
        if isinstance(font, TTFont):
            ps = font.face.name
            out[ps.decode() if isinstance(ps, bytes) else str(ps)] = font.face.charToGlyph
    return out


def _drawn_glyphs(pdf: bytes) -> dict[str, dict[str, int]]:
    """For each embedded TrueType subset: every non-ASCII character it was asked to draw (its
    ToUnicode map) and the glyph the font file gives it (0 is .notdef: an empty box)."""
    out: dict[str, dict[str, int]] = {}
    sources = _source_glyphs()
    reader = PdfFileReader(io.BytesIO(pdf))
    for ref in reader.root["/Pages"]["/Kids"]:
        page = ref.get_object()
        fonts = page["/Resources"]["/Font"]
        for key in fonts:
            font = fonts[key]
            if font.get("/Subtype") != "/TrueType":
                continue
            base = str(font["/BaseFont"]).lstrip("/").split("+", 1)[1]
            if base not in sources:  # a font collection's member: reportlab adds "-<index>"
                base = re.sub(r"-\d+$", "", base)
            assert "/FontFile2" in font["/FontDescriptor"], f"{base} is not embedded"
            cmap = font["/ToUnicode"].data.decode("ascii")
            drawn = out.setdefault(base, {})
            for _code, uni in re.findall(r"<([0-9A-F]{2})> <([0-9A-F]{4}|[0-9A-F]{8})>", cmap):
                text = bytes.fromhex(uni).decode("utf-16-be")
                if len(text) == 1 and ord(text) > 0x7F:
                    drawn[text] = sources[base].get(ord(text), 0)
    return out


def test_every_character_of_every_name_has_a_real_glyph(names_pdf: Path) -> None:
    drawn = _drawn_glyphs(names_pdf.read_bytes())
    glyph_of: dict[str, int] = {}
    for font, chars in drawn.items():
        boxes = sorted(c for c, glyph in chars.items() if glyph == 0)
        assert not boxes, f"{font} draws {boxes} as .notdef (empty boxes)"
        glyph_of.update(chars)
    # The CJK names needed the CJK font: it is embedded.
    assert any("WenQuanYi" in font for font in drawn)
    for script, name in NAMES.items():
        # Arabic is drawn in its joined (presentation) forms; compare what it stands for.
        missing = {
            c
            for c in name
            if ord(c) > 0x7F
            and c not in glyph_of
            and not any(unicodedata.normalize("NFKC", d) == c for d in glyph_of)
        }
        assert not missing, f"{script}: {missing} were never drawn"


def test_arabic_is_drawn_in_joined_forms(names_pdf: Path) -> None:
    drawn = {c for chars in _drawn_glyphs(names_pdf.read_bytes()).values() for c in chars}
    # U+FE8F..U+FEF4: initial/medial/final forms; unjoined letters would be U+0600 block only.
    assert any(0xFE70 <= ord(c) <= 0xFEFF for c in drawn)
    assert "\u0645" not in drawn  # the bare meem: it is always shown in a contextual form


def _words(pdf: Path) -> list[tuple[str, float, float]]:
    """Each word poppler finds, as its glyphs stand left to right, with its position."""
    html = subprocess.run(
        ["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    out = []
    for x_min, y_min, word in re.findall(
        r'<word xMin="([\d.]+)" yMin="([\d.]+)"[^>]*>([^<]*)</word>', html
    ):
        text = unicodedata.normalize("NFKC", word).translate(_BIDI_MARKS)
        out.append((text, float(x_min), float(y_min)))
    return out


@pytest.mark.parametrize("script", list(NAMES))
def test_names_read_back_in_their_own_order(names_pdf: Path, script: str) -> None:
    # Right-to-left words are drawn last letter first: read their glyphs backwards.
    words = [(t[::-1] if script in RTL else t, x, y) for t, x, y in _words(names_pdf)]
    texts = [w.strip(",") for w, _, _ in words]
    name_words = NAMES[script].replace(",", "").split()
    for word in name_words:
        assert word in texts, f"{script}: {word!r} not read back"
    if script in RTL:
        # On one line the first word of a right-to-left name is the rightmost one.
        first, second = name_words[0], name_words[1]
        rows = {}
        for text, x, y in words:
            rows.setdefault(round(y), {})[text.strip(",")] = x
        both = [r for r in rows.values() if first in r and second in r]
        assert both, f"{script}: the two words never share a line"
        for row in both:
            assert row[first] > row[second], f"{script}: {first!r} is not right of {second!r}"


def test_a_long_right_to_left_note_wraps_first_words_first(tmp_path: Path) -> None:
    first, filler, last = "ראשון", "מילה", "אחרון"  # "first", "word", "last"
    note = Section(
        "note", "Note", rows=(Row("Hebrew note", " ".join([first, *[filler] * 60, last])),)
    )
    pdf = tmp_path / "note.pdf"
    pdf.write_bytes(render(_document(note)))
    words = [(t[::-1], x, y) for t, x, y in _words(pdf)]
    ((_, first_x, first_y),) = [w for w in words if w[0] == first]
    ((_, _, last_y),) = [w for w in words if w[0] == last]
    assert first_y < last_y, "the first words must be on the first (upper) line"
    on_first_line = [x for t, x, y in words if abs(y - first_y) < 1 and t == filler]
    assert on_first_line and all(first_x > x for x in on_first_line), "it starts at the right"


def test_a_character_only_a_missing_font_has_stops_the_render_naming_the_package() -> None:
    layout = dataclasses.replace(
        load_layout("compounding"),
        font_fallbacks=(FontFile("/nonexistent/fonts/cjk.ttf", "fonts-cjk-example"),),
    )
    with pytest.raises(MissingFontError, match="fonts-cjk-example") as caught:
        render(record_samples.compounding(patient="李小龍"), layout)
    assert "U+674E" in caught.value.message
    # Text the installed fonts print still renders with that layout.
    assert render(record_samples.compounding(patient="Ελένη"), layout).startswith(b"%PDF")


def test_a_character_no_font_has_prints_as_its_code_point(tmp_path: Path) -> None:
    pdf = tmp_path / "emoji.pdf"
    # Thai and Devanagari: scripts none of the shipped fonts covers.
    pdf.write_bytes(render(record_samples.compounding(patient="Ann ไทย Lee क")))
    text = subprocess.run(
        ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Ann [U+0E44][U+0E17][U+0E22] Lee [U+0915]" in text
    for chars in _drawn_glyphs(pdf.read_bytes()).values():
        assert all(glyph != 0 for glyph in chars.values())


def test_a_right_to_left_note_longer_than_a_page_splits_over_pages(tmp_path: Path) -> None:
    # Cells split inside a row: reportlab makes the two halves of a paragraph itself.
    first, filler, last = "ראשון", "מילה", "אחרון"
    note = Section(
        "note", "Note", rows=(Row("Hebrew note", " ".join([first, *[filler] * 2500, last])),)
    )
    pdf = tmp_path / "long.pdf"
    pdf.write_bytes(render(_document(note)))
    pages = subprocess.run(
        ["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout.split("<page ")[1:]
    on = [i for i, page in enumerate(pages) for w in (first, last) if w[::-1] in page]
    assert len(on) == 2 and on[0] < on[1], "the note starts on one page and ends on a later one"
