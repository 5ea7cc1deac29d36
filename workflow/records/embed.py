"""The events payload travels inside the record PDF as an embedded file, ``events.json``.

It is written into the PDF's first revision by reportlab itself (not added afterwards as an
incremental update) so the unsigned PDF stays byte-identical for identical documents and the
signature, which covers that revision, covers the payload too. Reading uses pyHanko's parser,
which is also what verification uses.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

from pyhanko.pdf_utils import misc
from pyhanko.pdf_utils.reader import PdfFileReader
from reportlab.pdfbase.pdfdoc import (
    PDFArray,
    PDFDictionary,
    PDFDocument,
    PDFStream,
    PDFString,
    PDFZCompress,
)

from workflow.core.errors import IntegrityError

EVENTS_FILE_NAME = "events.json"


def attach_events(pdf_doc: PDFDocument, payload: bytes, description: str) -> None:
    """Register ``payload`` as ``events.json`` in a reportlab document before it is written."""
    params = PDFDictionary(
        {
            "Size": len(payload),
            # A plain MD5 here is the PDF spec's /CheckSum, for viewers; integrity rests on the
            # signature, not on this.
            "CheckSum": PDFString(hashlib.md5(payload, usedforsecurity=False).digest(), enc="raw"),
        }
    )
    stream = PDFStream(
        PDFDictionary(
            {"Type": "/EmbeddedFile", "Subtype": "/application#2Fjson", "Params": params}
        ),
        content=payload,
        filters=[PDFZCompress],
    )
    ref = pdf_doc.Reference(stream)
    filespec = PDFDictionary(
        {
            "Type": "/Filespec",
            "F": PDFString(EVENTS_FILE_NAME),
            "UF": PDFString(EVENTS_FILE_NAME),
            "EF": PDFDictionary({"F": ref, "UF": ref}),
            "Desc": PDFString(description),
        }
    )
    names = PDFArray([PDFString(EVENTS_FILE_NAME), pdf_doc.Reference(filespec)])
    pdf_doc.Catalog.Names = PDFDictionary({"EmbeddedFiles": PDFDictionary({"Names": names})})


def read_embedded_file(pdf_bytes: bytes, name: str) -> bytes:
    """The content of one embedded file of the latest revision; IntegrityError if absent."""
    try:
        reader = PdfFileReader(io.BytesIO(pdf_bytes), strict=False)
    except (misc.PdfError, KeyError, TypeError, ValueError, IndexError, OSError) as exc:
        raise IntegrityError(f"cannot read embedded {name}: {exc}") from exc
    return embedded_file(reader, name)


def embedded_file(reader: PdfFileReader, name: str) -> bytes:
    """The same from a PDF already parsed (verification parses each record once)."""
    try:
        tree = reader.root["/Names"]["/EmbeddedFiles"]
        entries = tree["/Names"]
        for i in range(0, len(entries) - 1, 2):
            if str(entries[i]) == name:
                spec = entries[i + 1].get_object()
                data = spec["/EF"]["/F"].get_object().data
                if not isinstance(data, bytes):
                    break
                return data
    except (misc.PdfError, KeyError, TypeError, ValueError, IndexError, OSError) as exc:
        raise IntegrityError(f"cannot read embedded {name}: {exc}") from exc
    raise IntegrityError(f"the PDF has no embedded {name}")


def extract_events(pdf_bytes: bytes) -> list[Any]:
    """The events payload embedded in a record PDF, parsed, ready to replay."""
    return parse_events(read_embedded_file(pdf_bytes, EVENTS_FILE_NAME))


def parse_events(data: bytes) -> list[Any]:
    """``events.json`` as read from a record, parsed and shape-checked."""
    try:
        events = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"embedded {EVENTS_FILE_NAME} is not JSON: {exc}") from exc
    if not isinstance(events, list):
        raise IntegrityError(f"embedded {EVENTS_FILE_NAME} is not a list")
    return events
