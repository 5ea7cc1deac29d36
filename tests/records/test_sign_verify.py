from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from workflow.core.errors import InputError
from workflow.records import pki
from workflow.records.embed import extract_events
from workflow.records.sign import SignatureRequest, sign_all, sign_pdf
from workflow.records.verify import CHECK_NAMES, verify


def _first_failure(pdf: bytes, roots: list[object], expected: str | None = None) -> str:
    result = verify(pdf, roots, expected)  # type: ignore[arg-type]
    assert not result.ok
    assert [c.name for c in result.checks] == list(CHECK_NAMES)
    return result.failed[0].name


def test_signed_record_verifies(signed_pdf: bytes, roots: list[object]) -> None:
    sha = hashlib.sha256(signed_pdf).hexdigest()
    result = verify(signed_pdf, roots, sha)  # type: ignore[arg-type]
    assert result.ok, result.to_dict()
    assert all(c.status == "pass" for c in result.checks)
    assert result.sha256 == sha
    assert "General Hospital records" in result.signers[0]


def test_pyhanko_sees_a_pades_signature(signed_pdf: bytes, roots: list[object]) -> None:
    reader = PdfFileReader(io.BytesIO(signed_pdf))
    (sig,) = reader.embedded_signatures
    assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert sig.sig_object["/Reason"] == "compounding"
    status = validate_pdf_signature(sig, ValidationContext(trust_roots=roots))
    assert status.bottom_line
    assert status.md_algorithm == "sha256"


def test_events_survive_signing(signed_pdf: bytes, compounding_pdf: bytes) -> None:
    assert extract_events(signed_pdf) == extract_events(compounding_pdf)
    assert signed_pdf.startswith(compounding_pdf)  # the signature is an incremental update


def test_no_archive_hash_is_a_skip_not_a_pass(signed_pdf: bytes, roots: list[object]) -> None:
    result = verify(signed_pdf, roots)  # type: ignore[arg-type]
    assert result.ok
    assert result.check("matches_archive").status == "skip"


def test_flipped_byte_breaks_the_signature(signed_pdf: bytes, roots: list[object]) -> None:
    data = bytearray(signed_pdf)
    data[len(data) // 3] ^= 0x01
    assert _first_failure(bytes(data), roots) == "signature_intact"


def test_appended_unsigned_update_is_caught(signed_pdf: bytes, roots: list[object]) -> None:
    # A well-formed incremental update that changes the document after signing.
    writer = IncrementalPdfFileWriter(io.BytesIO(signed_pdf))
    writer.root["/Lang"] = generic.TextStringObject("de")
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    assert _first_failure(out.getvalue(), roots) == "covers_whole_file"
    assert _first_failure(signed_pdf + b"\n% trailing junk\n", roots) == "covers_whole_file"


def test_other_installations_ca_is_refused(signed_pdf: bytes, other_pki: Path) -> None:
    assert _first_failure(signed_pdf, list(pki.load_trust_roots(other_pki))) == (
        "certificate_trusted"
    )


def test_signed_by_another_ca_is_refused(
    compounding_pdf: bytes, other_pki: Path, roots: list[object]
) -> None:
    foreign = sign_pdf(compounding_pdf, pki.load_signer(other_pki), reason="compounding")
    assert _first_failure(foreign, roots) == "certificate_trusted"


@pytest.mark.parametrize("cut", [0.5, 0.99, 0.02])
def test_truncated_file_fails(signed_pdf: bytes, roots: list[object], cut: float) -> None:
    assert _first_failure(signed_pdf[: int(len(signed_pdf) * cut)], roots) == "parsed"


@pytest.mark.parametrize("junk", [b"", b"hello", b"%PDF-1.7\n garbage", bytes(range(256)) * 10])
def test_non_pdf_input_fails_cleanly(junk: bytes, roots: list[object]) -> None:
    assert _first_failure(junk, roots) == "parsed"


def test_unsigned_pdf_has_no_signature(compounding_pdf: bytes, roots: list[object]) -> None:
    assert _first_failure(compounding_pdf, roots) == "has_signature"


def test_archive_mismatch(signed_pdf: bytes, roots: list[object]) -> None:
    assert _first_failure(signed_pdf, roots, "0" * 64) == "matches_archive"


def test_no_trust_roots_is_never_trusted(signed_pdf: bytes) -> None:
    assert _first_failure(signed_pdf, []) == "certificate_trusted"


def test_several_signatures_in_sequence(
    compounding_pdf: bytes, signer: pki.RecordSigner, other_pki: Path, roots: list[object]
) -> None:
    signed = sign_all(
        compounding_pdf,
        [
            SignatureRequest(signer, "compounding", "Preparer", name="Pat Pharmtech"),
            SignatureRequest(signer, "compounding", "Verifier", name="Dr. Ada Pharmacist"),
            SignatureRequest(signer, "compounding", "BedsideInstitution"),
        ],
    )
    result = verify(signed, roots)  # type: ignore[arg-type]
    assert result.ok, result.to_dict()
    assert len(result.signers) == 3
    assert extract_events(signed) == extract_events(compounding_pdf)
    # A third party's signature appended afterwards is not trusted.
    tail = sign_pdf(signed, pki.load_signer(other_pki), reason="x", field_name="Intruder")
    assert _first_failure(tail, roots) == "certificate_trusted"
    with pytest.raises(InputError, match="own field"):
        sign_all(
            compounding_pdf,
            [SignatureRequest(signer, "a", "F"), SignatureRequest(signer, "b", "F")],
        )
