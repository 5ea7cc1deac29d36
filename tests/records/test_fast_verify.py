"""The quick verification path (records/fast_verify.py) against pyHanko's full validation.

The quick path may only ever say "proven" for a file pyHanko's full validation accepts; for
every tamper pyHanko refuses it must answer "not proven", and the Verifier's answer (which then
comes from pyHanko) must be the full path's, word for word.
"""

from __future__ import annotations

import hashlib
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import cms
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from test_verify_container import _bundle_cert_offset, _change_digit

from workflow.records import pki
from workflow.records.embed import EVENTS_FILE_NAME, read_embedded_file
from workflow.records.fast_verify import prove
from workflow.records.sign import SignatureRequest, sign_all, sign_pdf
from workflow.records.verify import Verifier


def _warm(roots: list[object], signed_pdf: bytes, **kwargs: object) -> Verifier:
    """A quick Verifier that has validated the site's signer once (as archive verify has after
    its first record): from here on the quick path trusts that certificate."""
    verifier = Verifier(roots, **kwargs)  # type: ignore[arg-type]
    first = verifier.verify(signed_pdf, attachment=EVENTS_FILE_NAME)
    assert first.ok and verifier.stats.full == 1
    return verifier


def _quick_proof(verifier: Verifier, pdf: bytes, moment: datetime | None = None) -> object:
    return prove(pdf, verifier._trusted, moment or datetime.now(UTC), EVENTS_FILE_NAME)


def _refused_by_both(roots: list[object], good: bytes, tampered: bytes) -> str:
    """The quick path does not prove ``tampered``, pyHanko refuses it, and the Verifier's
    answer is pyHanko's. Returns the first failed check."""
    quick = _warm(roots, good)
    assert _quick_proof(quick, tampered) is None
    full = Verifier(roots, quick=False).verify(tampered, attachment=EVENTS_FILE_NAME)  # type: ignore[arg-type]
    assert not full.ok
    answer = quick.verify(tampered, attachment=EVENTS_FILE_NAME)
    assert answer.to_dict() == full.to_dict()
    assert quick.stats.quick == 0
    return full.failed[0].name


def _contents_span(pdf: bytes) -> tuple[int, int]:
    (sig,) = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    a, b, c, _ = (int(x) for x in sig.byte_range)
    return a + b, c


def test_a_good_record_is_proven_with_the_same_answer_as_pyhanko(
    signed_pdf: bytes, roots: list[object]
) -> None:
    sha = hashlib.sha256(signed_pdf).hexdigest()
    quick = _warm(roots, signed_pdf, cross_check_every=1)
    answer = quick.verify(signed_pdf, sha, attachment=EVENTS_FILE_NAME)
    full = Verifier(roots, quick=False).verify(signed_pdf, sha, attachment=EVENTS_FILE_NAME)  # type: ignore[arg-type]
    assert answer.ok and full.ok
    assert answer.to_dict() == full.to_dict()
    assert answer.attachment == full.attachment == read_embedded_file(signed_pdf, EVENTS_FILE_NAME)
    assert quick.stats.quick == 1 and quick.stats.cross_checked == 1
    assert quick.stats.disagreements == []


def test_the_first_record_of_a_signer_goes_through_pyhanko(
    signed_pdf: bytes, roots: list[object]
) -> None:
    verifier = Verifier(roots)  # type: ignore[arg-type]
    assert _quick_proof(verifier, signed_pdf) is None  # nothing trusted yet
    verifier.verify(signed_pdf)
    assert (verifier.stats.full, verifier.stats.quick) == (1, 0)
    verifier.verify(signed_pdf)
    assert (verifier.stats.full, verifier.stats.quick) == (1, 1)


def test_changed_byte_in_the_signed_range(signed_pdf: bytes, roots: list[object]) -> None:
    start, end = _contents_span(signed_pdf)
    for offset in (len(signed_pdf) // 3, start - 40, end + 5, len(signed_pdf) - 30):
        data = bytearray(signed_pdf)
        data[offset] ^= 0x01
        assert _refused_by_both(roots, signed_pdf, bytes(data)) in {
            "parsed",
            "signature_intact",
            "covers_whole_file",
        }


def test_changed_signature_value(signed_pdf: bytes, roots: list[object]) -> None:
    start, _ = _contents_span(signed_pdf)
    (sig,) = PdfFileReader(io.BytesIO(signed_pdf)).embedded_signatures
    der = sig.pkcs7_content
    value = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signature"].native
    at = der.rfind(value)
    assert at > 0
    tampered = _change_digit(signed_pdf, start + 1 + 2 * (at + len(value) // 2))
    assert _refused_by_both(roots, signed_pdf, tampered) == "signature_intact"


def test_changed_signed_attributes(signed_pdf: bytes, roots: list[object]) -> None:
    start, _ = _contents_span(signed_pdf)
    (sig,) = PdfFileReader(io.BytesIO(signed_pdf)).embedded_signatures
    der = sig.pkcs7_content
    digest = sig.compute_digest()
    at = der.find(digest)
    assert at > 0
    tampered = _change_digit(signed_pdf, start + 1 + 2 * (at + 3))
    assert _refused_by_both(roots, signed_pdf, tampered) == "signature_intact"


def test_changed_signer_certificate(signed_pdf: bytes, roots: list[object]) -> None:
    offset = _bundle_cert_offset(signed_pdf, "General Hospital records")
    tampered = _change_digit(signed_pdf, offset)
    assert _refused_by_both(roots, signed_pdf, tampered) == "signature_intact"


def test_untrusted_certificate(
    signed_pdf: bytes, compounding_pdf: bytes, roots: list[object], other_pki: Path
) -> None:
    # Signed by another installation's key, whose certificate names the same hospital.
    foreign = sign_pdf(compounding_pdf, pki.load_signer(other_pki), reason="compounding")
    assert _refused_by_both(roots, signed_pdf, foreign) == "certificate_trusted"


def test_trusted_certificate_outside_its_validity(signed_pdf: bytes, roots: list[object]) -> None:
    quick = _warm(roots, signed_pdf)
    assert _quick_proof(quick, signed_pdf) is not None
    assert _quick_proof(quick, signed_pdf, datetime.now(UTC) + timedelta(days=365 * 40)) is None
    assert _quick_proof(quick, signed_pdf, datetime(2000, 1, 1, tzinfo=UTC)) is None


def test_incremental_update_after_signing(signed_pdf: bytes, roots: list[object]) -> None:
    writer = IncrementalPdfFileWriter(io.BytesIO(signed_pdf))
    writer.root["/Lang"] = generic.TextStringObject("de")
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    assert _refused_by_both(roots, signed_pdf, out.getvalue()) == "covers_whole_file"
    junk = signed_pdf + b"\n% trailing junk\n"
    assert _refused_by_both(roots, signed_pdf, junk) == "covers_whole_file"


@pytest.mark.parametrize("change", ["shorter_tail", "later_start", "wider_gap", "narrower_gap"])
def test_wrong_byte_range(signed_pdf: bytes, roots: list[object], change: str) -> None:
    found = re.search(rb"/ByteRange \[(\d+) (\d+) (\d+) (\d+)\]", signed_pdf)
    assert found is not None
    a, b, c, d = (int(x) for x in found.groups())
    new = {
        "shorter_tail": (a, b, c, d - 10),
        "later_start": (a + 10, b - 10, c, d),
        "wider_gap": (a, b - 10, c, d),
        "narrower_gap": (a, b + 10, c, d),
    }[change]
    text = f"/ByteRange [{' '.join(str(x) for x in new)}]".encode()
    old = found.group(0)
    text = text + b" " * (len(old) - len(text))  # the same length: nothing else moves
    tampered = signed_pdf.replace(old, text[: len(old)])
    _refused_by_both(roots, signed_pdf, tampered)


def test_changed_ca_copy_in_the_bundle_goes_to_pyhanko(
    signed_pdf: bytes, roots: list[object]
) -> None:
    # The signed bytes are intact and trusted, but the bundle holds a certificate that is not
    # on the path: pyHanko's answer (accepted, with its note), word for word.
    changed = _change_digit(signed_pdf, _bundle_cert_offset(signed_pdf, "records CA"))
    quick = _warm(roots, signed_pdf)
    assert _quick_proof(quick, changed) is None
    answer = quick.verify(changed, attachment=EVENTS_FILE_NAME)
    full = Verifier(roots, quick=False).verify(changed, attachment=EVENTS_FILE_NAME)  # type: ignore[arg-type]
    assert quick.stats.quick == 0 and answer.ok
    assert answer.to_dict() == full.to_dict()
    assert "records CA" in answer.check("covers_whole_file").note


def test_several_signatures_go_to_pyhanko(
    compounding_pdf: bytes, signer: pki.RecordSigner, roots: list[object], signed_pdf: bytes
) -> None:
    pdf = sign_all(
        compounding_pdf,
        [
            SignatureRequest(signer, "compounding", "First"),
            SignatureRequest(signer, "compounding", "Second"),
        ],
    )
    quick = _warm(roots, signed_pdf)
    assert _quick_proof(quick, pdf) is None
    answer = quick.verify(pdf, attachment=EVENTS_FILE_NAME)
    full = Verifier(roots, quick=False).verify(pdf, attachment=EVENTS_FILE_NAME)  # type: ignore[arg-type]
    assert answer.ok and answer.to_dict() == full.to_dict()
