from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess
from pathlib import Path

import pytest
import record_samples
from PIL import Image
from pyhanko.pdf_utils.reader import PdfFileReader

from workflow.records.document import RecordDocument
from workflow.records.embed import extract_events
from workflow.records.layout import load_layout
from workflow.records.render import render

# poppler-utils (Debian/Ubuntu package name) provides pdftotext and pdftoppm. These checks
# look at the PDF the way a person would, so they are not optional.
POPPLER = "poppler-utils"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: apt-get install -y {POPPLER}"
    return path


def _page_count(pdf: bytes) -> int:
    return int(PdfFileReader(io.BytesIO(pdf)).root["/Pages"]["/Count"])


def _text(pdf: bytes, tmp_path: Path, page: int | None = None) -> str:
    src = tmp_path / "in.pdf"
    src.write_bytes(pdf)
    pages = ["-f", str(page), "-l", str(page)] if page else []
    out = subprocess.run(
        [_tool("pdftotext"), *pages, str(src), "-"], check=True, capture_output=True
    )
    return out.stdout.decode("utf-8")


def test_identical_documents_render_byte_identical(compounding_doc: RecordDocument) -> None:
    again = record_samples.compounding()
    assert render(compounding_doc) == render(again)
    other = dataclasses.replace(again, record_id="REC-2")
    assert render(other) != render(again)


def test_hostile_text_stays_literal(hostile_pdf: bytes, tmp_path: Path) -> None:
    text = _text(hostile_pdf, tmp_path)
    assert "<script>alert(1)</script>" in text
    assert "<b>& O'Brien-Łukasiewicz" in text
    assert "<i>dolor</i> & sit amet" in text  # the huge note, not turned into italics


def test_long_content_flows_over_pages_with_page_n_of_m(hostile_pdf: bytes, tmp_path: Path) -> None:
    pages = _page_count(hostile_pdf)
    assert pages >= 3
    for page in range(1, pages + 1):
        text = _text(hostile_pdf, tmp_path, page)
        assert f"Page {page} of {pages}" in text
        assert "REC-2025-0001-C" in text  # running header on every page
    full = _text(hostile_pdf, tmp_path)
    # Nothing cut off: every one of the 70 rows, all 600 X's and the end of the huge note print.
    for i in range(70):
        assert f"Extra check {i}\n" in full or f"Extra check {i} " in full
    assert full.count("X") >= 600
    for word in ("Lorem", "ipsum", "amet;"):  # words, since a line may break between them
        assert full.count(word) == 400
    assert "Signed content (SHA-256)" in full
    assert "Record hash (SHA-256, also in the QR code)" in full


def test_every_page_has_ink_in_its_body(hostile_pdf: bytes, tmp_path: Path) -> None:
    src = tmp_path / "rec.pdf"
    src.write_bytes(hostile_pdf)
    subprocess.run(
        [_tool("pdftoppm"), "-png", "-r", "30", str(src), str(tmp_path / "p")], check=True
    )
    images = sorted(tmp_path.glob("p-*.png"))
    assert len(images) == _page_count(hostile_pdf)
    for image in images:
        gray = Image.open(image).convert("L")
        width, height = gray.size
        # The body between the running header and footer: chrome alone is not a page.
        body = gray.crop((0, int(height * 0.12), width, int(height * 0.88)))
        low, _ = body.getextrema()
        assert low < 128, f"{image.name} has an empty body"


def test_events_are_embedded(compounding_doc: RecordDocument, compounding_pdf: bytes) -> None:
    assert extract_events(compounding_pdf) == [
        dict(e) | {"data": dict(e["data"])} for e in compounding_doc.events
    ]
    hostile = record_samples.hostile_long()
    assert extract_events(render(hostile))[-1] == {"note": record_samples.HOSTILE_NAME}


def test_letter_page_size_is_a_layout_choice(compounding_doc: RecordDocument) -> None:
    letter = dataclasses.replace(load_layout("compounding"), page_size="Letter")
    pdf = render(compounding_doc, letter)
    box = PdfFileReader(io.BytesIO(pdf)).root["/Pages"]["/Kids"][0]["/MediaBox"]
    assert [round(float(v)) for v in box] == [0, 0, 612, 792]
    a4 = PdfFileReader(io.BytesIO(render(compounding_doc))).root["/Pages"]["/Kids"][0]
    assert [round(float(v)) for v in a4["/MediaBox"]] == [0, 0, 595, 842]


def test_administration_record_shows_sections_layout_does_not_know(tmp_path: Path) -> None:
    text = _text(render(record_samples.administration()), tmp_path)
    assert "Administration record" in text
    assert "Ward notes (not in the layout)" in text
    assert "Not recorded" in text  # a required section the document lacks
    assert "performed" in text
    assert "verified" in text


@pytest.mark.parametrize("name", ["", "x" * 5000])
def test_extreme_subject_values_render(name: str) -> None:
    doc = record_samples.compounding(patient=name)
    assert render(doc).startswith(b"%PDF-")
