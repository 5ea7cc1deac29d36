"""Records pipeline timings: build, render, sign, verify; overhead against bare reportlab +
pyHanko; archive + signature verification throughput. Prints plain figures.

    python bench/bench_records.py [--runs N] [--records M]

Targets: (render + sign) / (bare render + bare sign) <= 1.3; archive verification (every check)
>= 500 records/s per core, beside a bare pyHanko validation loop over the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "records"))

import record_samples  # noqa: E402
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter  # noqa: E402
from pyhanko.pdf_utils.reader import PdfFileReader  # noqa: E402
from pyhanko.sign import fields, signers  # noqa: E402
from pyhanko.sign.validation import validate_pdf_signature  # noqa: E402
from pyhanko_certvalidator import ValidationContext  # noqa: E402
from reportlab.graphics.barcode.qr import QrCodeWidget  # noqa: E402
from reportlab.graphics.shapes import Drawing  # noqa: E402
from reportlab.lib.pagesizes import A4  # noqa: E402
from reportlab.lib.styles import getSampleStyleSheet  # noqa: E402
from reportlab.platypus import Paragraph, SimpleDocTemplate, Table  # noqa: E402

from workflow.archive.verify import _answers  # noqa: E402
from workflow.records import pki  # noqa: E402
from workflow.records.blobstore import BlobStore  # noqa: E402
from workflow.records.document import RecordDocument  # noqa: E402
from workflow.records.embed import EVENTS_FILE_NAME  # noqa: E402
from workflow.records.render import render  # noqa: E402
from workflow.records.sign import sign_pdf  # noqa: E402
from workflow.records.verify import Verifier, VerifierStats, certificate_der  # noqa: E402

ROWS = 20


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    fn()  # warm caches (fonts, layout, signer) like a running service has them
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def bare_render(doc: RecordDocument, *, qr: bool = False) -> bytes:
    """A comparable record with plain reportlab: same text, tables of paragraphs, one pass;
    with ``qr`` also reportlab's own QR widget for the record hash, as the record has."""
    styles = getSampleStyleSheet()
    body = styles["BodyText"]
    story: list[Any] = [Paragraph(doc.title, styles["Title"])]
    story.append(Table([[Paragraph(a, body), Paragraph(b, body)] for a, b in doc.subject]))
    for section in doc.sections:
        story.append(Paragraph(section.title, styles["Heading2"]))
        rows = [
            [Paragraph(r.label, body), Paragraph(r.value, body), Paragraph(r.note or "", body)]
            for r in section.rows
        ]
        if rows:
            story.append(Table(rows, repeatRows=0))
        for table in section.tables:
            story.append(Table([[Paragraph(c, body) for c in row] for row in table.rows]))
    story.append(
        Table(
            [[Paragraph(s.printed_name, body), Paragraph(s.meaning, body)] for s in doc.signatures]
        )
    )
    if qr:
        widget = QrCodeWidget(doc.record_hash(), barLevel="M")
        drawing = Drawing(85, 85)
        drawing.add(widget)
        story.append(drawing)
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4, invariant=1).build(story)
    return out.getvalue()


def bare_sign(pdf: bytes, signer: signers.Signer) -> bytes:
    """pyHanko with its defaults, as its documentation shows it."""
    meta = signers.PdfSignatureMetadata(
        field_name="Signature", md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES
    )
    out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)), meta, signer=signer)
    data: bytes = out.getvalue()
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--records", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pki"
        pki.create_site_pki(folder, organisation="Bench Hospital")
        signer = pki.load_signer(folder)
        verifier = Verifier(pki.load_trust_roots(folder))

        doc = record_samples.compounding(rows=ROWS)
        pdf = render(doc)
        signed = sign_pdf(pdf, signer, reason=doc.kind)
        pages = int(PdfFileReader(io.BytesIO(pdf)).root["/Pages"]["/Count"])

        t_build = median_ms(lambda: record_samples.compounding(rows=ROWS), args.runs)
        t_render = median_ms(lambda: render(doc), args.runs)
        t_sign = median_ms(lambda: sign_pdf(pdf, signer, reason=doc.kind), args.runs)
        t_verify = median_ms(lambda: verifier.verify(signed), args.runs)
        t_bare_render = median_ms(lambda: bare_render(doc), args.runs)
        t_bare_qr = median_ms(lambda: bare_render(doc, qr=True), args.runs)
        bare_pdf = bare_render(doc)
        t_bare_sign = median_ms(lambda: bare_sign(pdf, signer.signer), args.runs)
        ratio = (t_render + t_sign) / (t_bare_render + t_bare_sign)
        ratio_qr = (t_render + t_sign) / (t_bare_qr + t_bare_sign)

        print(
            f"document: compounding record, {ROWS} extra rows, {pages} pages, "
            f"{len(pdf)} bytes unsigned, {len(signed)} bytes signed"
        )
        print(f"median of {args.runs} runs (ms):")
        print(f"  build    {t_build:8.2f}")
        print(f"  render   {t_render:8.2f}")
        print(f"  sign     {t_sign:8.2f}")
        print(f"  verify   {t_verify:8.2f}")
        print(f"  bare reportlab render {t_bare_render:8.2f}  ({len(bare_pdf)} bytes)")
        print(f"  bare reportlab render with QR code {t_bare_qr:8.2f}")
        print(f"  bare pyHanko sign     {t_bare_sign:8.2f}")
        print(
            f"pipeline ratio (render+sign) / (bare render + bare sign): {ratio:.2f} (target <= 1.3)"
        )
        print(f"pipeline ratio against a bare render that also draws the QR code: {ratio_qr:.2f}")

        store = BlobStore(Path(tmp) / "archive")
        hashes = []
        for i in range(args.records):
            variant = record_samples.compounding(rows=ROWS, patient=f"Patient {i:04d}")
            hashes.append(store.put(sign_pdf(render(variant), signer, reason=variant.kind)))
        n = len(hashes)
        paths = [(sha, str(store.path(sha))) for sha in hashes]
        roots = pki.load_trust_roots(folder)

        def rate(fn: Callable[[], Any]) -> tuple[float, float]:
            """(records per wall second, records per CPU second): on a shared machine the
            second is the per-core figure; it counts the worker processes' CPU too."""
            before, wall = os.times(), time.perf_counter()
            fn()
            after, wall = os.times(), time.perf_counter() - wall
            cpu = sum(after[:4]) - sum(before[:4])  # user + system, self + reaped children
            return n / wall, n / cpu

        def bare() -> None:
            # pyHanko as its documentation shows it: parse, find the signature, validate.
            for sha in hashes:
                reader = PdfFileReader(io.BytesIO(store.get(sha)), strict=False)
                (sig,) = reader.embedded_regular_signatures
                context = ValidationContext(trust_roots=roots, allow_fetching=False)
                assert validate_pdf_signature(sig, context).bottom_line

        def archive_like(verifier: Verifier) -> None:
            # What `archive verify` does per file: read, hash against its name, every check,
            # and read the signed events out of the same parse.
            for sha in hashes:
                pdf = store.get(sha)
                assert hashlib.sha256(pdf).hexdigest() == sha
                result = verifier.verify(pdf, sha, attachment=EVENTS_FILE_NAME)
                assert result.ok and result.attachment, result.to_dict()

        def pooled(jobs: int) -> None:
            stats = VerifierStats()
            answers = list(_answers(paths, [certificate_der(r) for r in roots], jobs, stats))
            assert all(a.result is not None and a.result.ok for a in answers)

        full = Verifier(roots, quick=False)
        quick = Verifier(roots)
        r_bare = rate(bare)
        r_full = rate(lambda: archive_like(full))
        r_quick = rate(lambda: archive_like(quick))
        r_pool = {jobs: rate(lambda jobs=jobs: pooled(jobs)) for jobs in (1, 2)}
        print(
            f"archive verification over {n} signed records, same files, same run "
            "(records per wall second / per CPU second):"
        )

        def show(label: str, r: tuple[float, float], extra: str = "") -> None:
            print(f"  {label:<46} {r[0]:8.1f} / {r[1]:8.1f}{extra}")

        show("bare pyHanko validate_pdf_signature loop", r_bare)
        show("every check, pyHanko in full (before)", r_full)
        show(
            "every check, quick path, one process",
            r_quick,
            f"  (target >= 500 per core; {quick.stats.quick} quick, {quick.stats.full} full, "
            f"{quick.stats.cross_checked} cross-checked)",
        )
        for jobs, r in r_pool.items():
            show(f"every check, quick path, --jobs {jobs} (with start-up)", r)
        print(
            "100,000-record projection (wall, this run's load): pyHanko in full "
            f"{100_000 / r_full[0] / 60:.1f} min, quick one process "
            f"{100_000 / r_quick[0] / 60:.1f} min, quick --jobs 2 "
            f"{100_000 / r_pool[2][0] / 60:.1f} min; per CPU: "
            f"{100_000 / r_full[1] / 60:.1f} / {100_000 / r_quick[1] / 60:.1f} / "
            f"{100_000 / r_pool[2][1] / 60:.1f} CPU-min"
        )


if __name__ == "__main__":
    main()
