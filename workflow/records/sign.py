"""PAdES baseline B-B signatures on record PDFs (pyHanko, SHA-256, invisible fields).

The default is one institution signature over the whole rendered record. Several signatures
(e.g. one per person) are applied in sequence, each as its own incremental update, so each
later signature also covers the earlier ones. B-B means no timestamp and no revocation data:
the signing time is the signer's claim; a site that needs B-T adds a timestamper here later.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError

from workflow.core.errors import InputError, IntegrityError

from .pki import RecordSigner

DEFAULT_FIELD = "BedsideInstitution"
# Room for the CMS blob beyond the certificates it carries: signature value (512 bytes for
# RSA-4096), signed attributes and ASN.1 framing, with a wide margin.
_CMS_OVERHEAD = 2048


@dataclass(frozen=True)
class SignatureRequest:
    """One signature to apply: who, in which field, why (the record kind by default)."""

    signer: RecordSigner
    reason: str
    field_name: str = DEFAULT_FIELD
    name: str | None = None  # printed in the signature dictionary; defaults to the cert's CN
    location: str | None = None


def _reserve(signer: RecordSigner) -> int:
    # Reserving the exact room up front spares pyHanko a dry-run signature to measure it, and
    # a tight reservation keeps the hex /Contents small, which verifiers parse byte by byte.
    certs = [signer.certificate, *signer.signer.cert_registry]
    needed = sum(len(c.dump()) for c in certs) + _CMS_OVERHEAD
    return -(-needed // 256) * 256  # pyHanko wants an even size; round up to 256


def _sign_once(pdf_bytes: bytes, request: SignatureRequest) -> bytes:
    meta = signers.PdfSignatureMetadata(
        field_name=request.field_name,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=request.reason,
        name=request.name or request.signer.name,
        location=request.location,
    )
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf_bytes), strict=False)
        out = signers.PdfSigner(meta, request.signer.signer).sign_pdf(
            writer, bytes_reserved=_reserve(request.signer)
        )
    except (PdfError, SigningError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"cannot sign field {request.field_name!r}: {exc}") from exc
    data = out.getvalue()
    assert isinstance(data, bytes)
    return data


def sign_pdf(
    pdf_bytes: bytes,
    signer: RecordSigner,
    *,
    reason: str,
    field_name: str = DEFAULT_FIELD,
    name: str | None = None,
) -> bytes:
    """One PAdES B-B signature over the whole PDF (the usual institution signature)."""
    return _sign_once(pdf_bytes, SignatureRequest(signer, reason, field_name, name))


def sign_all(pdf_bytes: bytes, requests: Sequence[SignatureRequest]) -> bytes:
    """Apply signatures in order, each as an incremental update over everything before it."""
    if not requests:
        raise InputError("signatures", "at least one signature is needed")
    names = [r.field_name for r in requests]
    if len(set(names)) != len(names):
        raise InputError("signatures", "each signature needs its own field name")
    for request in requests:
        pdf_bytes = _sign_once(pdf_bytes, request)
    return pdf_bytes
