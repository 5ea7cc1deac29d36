"""Real images for the photo tests: a JPEG of a vial label carrying a GS1 DataMatrix."""

from __future__ import annotations

import io
from datetime import date

import zxingcpp
from PIL import Image, ImageDraw

GTIN = "00312345678906"


def gs1_datamatrix(lot: str, expiry: date, gtin: str = GTIN) -> Image.Image:
    code = f"(01){gtin}(17){expiry:%y%m%d}(10){lot}"
    symbol = zxingcpp.create_barcode(code, zxingcpp.BarcodeFormat.DataMatrix, gs1=True)
    img = symbol.to_image(scale=8)
    h, w = img.shape[:2]
    return Image.frombuffer("L", (w, h), bytes(memoryview(img)), "raw", "L", 0, 1)


def vial_photo(
    lot: str, expiry: date, fmt: str = "JPEG", size: tuple[int, int] = (1200, 900)
) -> bytes:
    """A photo-like picture: a coloured bench, a white label with text and the vial's code."""
    bench = Image.new("RGB", size, (150, 160, 170))
    draw = ImageDraw.Draw(bench)
    draw.rectangle((150, 150, 900, 700), fill=(250, 250, 245))
    draw.text((180, 170), f"Aldesleukin vial  LOT {lot}  EXP {expiry:%Y-%m}", fill=(0, 0, 0))
    bench.paste(gs1_datamatrix(lot, expiry).convert("RGB"), (200, 230))
    out = io.BytesIO()
    bench.save(out, fmt, quality=90) if fmt == "JPEG" else bench.save(out, fmt)
    return out.getvalue()


def plain_photo(colour: tuple[int, int, int] = (90, 120, 200), fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), colour).save(out, fmt)
    return out.getvalue()
