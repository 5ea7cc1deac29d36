"""The archive's store of in-process photos (issue 16.2), and what is read from an image.

Photos are kept write-once and content-addressed like the signed records (blobstore.py), in
``<home>/archive/photos/<aa>/<sha256>``, read-only files: the SHA-256 in a signed step's event
names the exact bytes, so a removed or altered file is found by ``archive verify``.

An upload is accepted only when Pillow opens it as JPEG, PNG or WebP (the content decides, never
the file name or the browser's type) and it is within the size limit; what the camera sent is
stored as sent. Thumbnails for the compounding record are re-encoded small JPEGs.
"""

from __future__ import annotations

import io
from pathlib import Path

from workflow.core.errors import InputError
from workflow.records.blobstore import BlobStore

PHOTOS_DIR = "photos"  # inside the archive folder
MAX_PHOTO_BYTES = 8 * 1024 * 1024  # a tablet camera's JPEG is 2-5 MB
MAX_PHOTO_PIXELS = 50_000_000  # refuse decompression bombs before decoding
PHOTO_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
THUMBNAIL_PX = 480


def photo_store(archive_root: Path) -> BlobStore:
    return BlobStore(archive_root / PHOTOS_DIR)


def check_image(field: str, data: bytes, *, label: str | None = None) -> str:
    """The image's media type, or InputError naming ``field`` (empty, too large, not an
    image Pillow can open, or not JPEG/PNG/WebP)."""
    from PIL import Image, UnidentifiedImageError

    allowed = ", ".join(sorted(PHOTO_FORMATS))
    if not data:
        raise InputError(field, "the photo is empty", allowed, label=label)
    if len(data) > MAX_PHOTO_BYTES:
        raise InputError(
            field,
            f"the photo is {len(data):,} bytes, larger than the limit",
            f"at most {MAX_PHOTO_BYTES:,} bytes",
            label=label,
        )
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            if img.width * img.height > MAX_PHOTO_PIXELS:
                raise InputError(
                    field, f"the photo is {img.width}x{img.height} pixels", "at most 50 MP"
                )
            img.load()  # decodes it all: a truncated or corrupt upload is refused here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(field, f"not a readable image ({exc})", allowed, label=label) from None
    if fmt not in PHOTO_FORMATS:
        raise InputError(field, f"a {fmt or 'unknown'} image", allowed, label=label)
    return PHOTO_FORMATS[fmt]


def media_type(data: bytes) -> str:
    """The stored photo's media type (it was checked on upload)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return PHOTO_FORMATS.get(img.format or "", "application/octet-stream")


def thumbnail_jpeg(data: bytes, size: int = THUMBNAIL_PX) -> bytes:
    """A small JPEG of the photo (upright as the camera held it) for pages and the record."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        small = ImageOps.exif_transpose(img).convert("RGB")
        small.thumbnail((size, size))
        out = io.BytesIO()
        small.save(out, "JPEG", quality=80)
        return out.getvalue()


def read_barcodes(data: bytes) -> list[str]:
    """The texts of the barcodes zxing-cpp finds in the photo (DataMatrix, Code 128, ...)."""
    import zxingcpp
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        upright = ImageOps.exif_transpose(img).convert("L")
        return [r.text for r in zxingcpp.read_barcodes(upright) if r.valid and r.text]
