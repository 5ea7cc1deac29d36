"""Bag label and bench timings (issue 16): the label PDF with its GS1 DataMatrix against the old
Code 128 label, reading the symbol back (pdftoppm + zxing-cpp, the tests' path), the bedside
check of a scanned code, and one stable weight from an MT-SICS balance over a pseudo-terminal.
Prints plain figures.

    python bench/bench_labels.py [--runs N]
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import zxingcpp  # noqa: E402
from core.helpers import open_case, walk_until  # noqa: E402
from interop.test_balance import FakeBalance  # noqa: E402
from PIL import Image  # noqa: E402
from reportlab.graphics.barcode import code128  # noqa: E402
from reportlab.lib.units import mm  # noqa: E402
from reportlab.pdfgen import canvas  # noqa: E402

from workflow.core.bag_check import bag_code_of, check_bag  # noqa: E402
from workflow.core.clock import FixedClock  # noqa: E402
from workflow.core.gs1 import bag_element_string  # noqa: E402
from workflow.core.protocol.loader import load_protocol  # noqa: E402
from workflow.interop.balance import read_stable  # noqa: E402
from workflow.records.labels import LABEL_SIZE, _draw_symbol, bag_label_pdf  # noqa: E402
from workflow.resources import default_protocol_path  # noqa: E402


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def symbol_only(draw: Callable[[canvas.Canvas], None]) -> bytes:
    """One symbol alone on a label-sized page: the symbol's own cost, without the text."""
    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=LABEL_SIZE)
    draw(pdf)
    pdf.showPage()
    pdf.save()
    return buf.getvalue()


def decode(pdf: bytes) -> str:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "l.pdf").write_bytes(pdf)
        subprocess.run(
            ["pdftoppm", "-png", "-r", "200", "-singlefile", f"{folder}/l.pdf", f"{folder}/l"],
            check=True,
        )
        with Image.open(f"{folder}/l.png") as image:
            (found,) = zxingcpp.read_barcodes(image)
            return str(found.text)


def figures(runs: int) -> list[tuple[str, float, str]]:
    clock = FixedClock(datetime(2026, 12, 2, 8, 0, tzinfo=UTC))
    case = open_case(load_protocol(default_protocol_path()), clock)
    walk_until(case, "pre_infusion", clock)
    tz = ZoneInfo("Europe/Oslo")
    code = bag_element_string(bag_code_of(case))
    pdf = bag_label_pdf(case, tz)
    assert decode(pdf) == code

    def datamatrix(p: canvas.Canvas) -> None:
        _draw_symbol(p, code, "gs1_datamatrix", 0, 0)

    def old_code128(p: canvas.Canvas) -> None:
        code128.Code128(case.case_id, barWidth=0.25 * mm).drawOn(p, 0, 0)

    out = [
        ("label PDF, GS1 DataMatrix", median_ms(lambda: bag_label_pdf(case, tz), runs), "ms"),
        ("label PDF, GS1 QR", median_ms(lambda: bag_label_pdf(case, tz, "gs1_qr"), runs), "ms"),
        ("DataMatrix alone on a page", median_ms(lambda: symbol_only(datamatrix), runs), "ms"),
        ("old Code 128 alone on a page", median_ms(lambda: symbol_only(old_code128), runs), "ms"),
        ("label PDF size", float(len(pdf)), "bytes"),
        ("rasterise + decode, 200 dpi", median_ms(lambda: decode(pdf), max(3, runs // 5)), "ms"),
        (
            "bedside check of a scan",
            median_ms(lambda: check_bag(case, code, clock.now()), runs),
            "ms",
        ),
    ]
    balance = FakeBalance(["S S      12.345 g"])
    try:
        read = median_ms(lambda: read_stable(balance.port, timeout_s=3, poll_s=0.01), runs)
        out.append(("one stable weight over a pty", read, "ms"))
    finally:
        balance.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    for name, value, unit in figures(parser.parse_args().runs):
        shown = f"{value:10.3f}" if unit == "ms" else f"{value:10.0f}"
        print(f"{name:<30} {shown} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
