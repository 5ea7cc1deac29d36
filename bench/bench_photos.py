"""In-process photo costs (issue 16.2) on a tablet-sized JPEG (4032x3024, a phone camera's
12 MP) carrying a GS1 DataMatrix: the content check, the write-once store, the barcode read
and the record's thumbnail. Each runs once per photo taken, in the request that signs."""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import zxingcpp
from PIL import Image, ImageDraw

from workflow.records.photos import check_image, photo_store, read_barcodes, thumbnail_jpeg


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1000, samples[max(0, int(len(samples) * 0.95) - 1)] * 1000


def camera_jpeg(size: tuple[int, int] = (4032, 3024)) -> bytes:
    code = f"(01)00312345678906(17){date(2027, 6, 30):%y%m%d}(10)PLK2291"
    symbol = zxingcpp.create_barcode(code, zxingcpp.BarcodeFormat.DataMatrix, gs1=True)
    img = symbol.to_image(scale=12)
    h, w = img.shape[:2]
    mark = Image.frombuffer("L", (w, h), bytes(memoryview(img)), "raw", "L", 0, 1)
    bench = Image.new("RGB", size, (150, 160, 170))
    ImageDraw.Draw(bench).rectangle((600, 500, 2600, 2000), fill=(250, 250, 245))
    bench.paste(mark.convert("RGB"), (800, 700))
    out = io.BytesIO()
    bench.save(out, "JPEG", quality=90)
    return out.getvalue()


def main() -> None:
    data = camera_jpeg()
    with tempfile.TemporaryDirectory() as tmp:
        store = photo_store(Path(tmp))
        n = iter(range(10**6))

        def put_new() -> None:  # a new photo each time (a stored one is a no-op)
            store.put(data + next(n).to_bytes(4, "big"))

        rows = [
            ("content check (Pillow full decode)", timed(lambda: check_image("p", data), 20)),
            ("store write-once (hash, fsync, link)", timed(put_new, 20)),
            ("barcode read (zxing-cpp, 12 MP)", timed(lambda: read_barcodes(data), 10)),
            ("record thumbnail (480 px JPEG)", timed(lambda: thumbnail_jpeg(data), 10)),
        ]
    print(f"photo: {len(data):,} bytes JPEG, 4032x3024")
    for name, (median, p95) in rows:
        print(f"{name:<42} median {median:8.2f} ms   p95 {p95:8.2f} ms")


if __name__ == "__main__":
    main()
