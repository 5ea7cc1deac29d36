"""Issue 13.10: a byte changed inside the signature's own certificate bundle.

A PDF signature covers the whole file except its own /Contents value (the CMS signature and
the certificates sent with it). `bedside verify` must say so instead of claiming that the
signature "covers all N bytes" of a file whose bytes changed.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from asn1crypto import cms
from pyhanko.pdf_utils.reader import PdfFileReader

from workflow.cli import main
from workflow.records import pki
from workflow.records.verify import verify


def _bundle_cert_offset(pdf: bytes, subject_part: str) -> int:
    """Offset in the file of the hex digit in the middle of one bundled certificate."""
    (sig,) = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    start = sig.byte_range[0] + sig.byte_range[1] + 1  # after the '<'
    der = sig.pkcs7_content
    info = cms.ContentInfo.load(der)
    for choice in info["content"]["certificates"]:
        cert = choice.chosen
        if subject_part in cert.subject.human_friendly:
            body = cert.dump()
            at = der.find(body)
            assert at > 0
            return start + 2 * (at + len(body) // 2)
    raise AssertionError(f"no bundled certificate for {subject_part}")


def _change_digit(pdf: bytes, offset: int) -> bytes:
    data = bytearray(pdf)
    data[offset] = ord("1") if data[offset] != ord("1") else ord("2")
    return bytes(data)


def test_a_changed_ca_copy_in_the_bundle_is_explained(
    signed_pdf: bytes, roots: list[object]
) -> None:
    changed = _change_digit(signed_pdf, _bundle_cert_offset(signed_pdf, "records CA"))
    result = verify(changed, roots)  # type: ignore[arg-type]
    # What was signed is intact and trusted (the CA copy is not used: the trust root is) ...
    assert result.ok
    coverage = result.check("covers_whole_file")
    # ... but verify no longer claims to cover every byte, and says where the change can be.
    assert "except its own container" in coverage.message
    assert "certificate bundle" in coverage.message
    assert "not on the chain to the trust root" in coverage.note
    assert "records CA" in coverage.note
    assert "SHA-256" in coverage.note
    # An untouched file has no such note.
    assert verify(signed_pdf, roots).check("covers_whole_file").note == ""  # type: ignore[arg-type]
    # With the archive's hash the changed file is refused: the bytes differ from the archived.
    import hashlib

    archived = hashlib.sha256(signed_pdf).hexdigest()
    assert not verify(changed, roots, archived).ok  # type: ignore[arg-type]


def test_a_changed_signer_certificate_says_the_signed_bytes_are_unchanged(
    signed_pdf: bytes, roots: list[object]
) -> None:
    changed = _change_digit(signed_pdf, _bundle_cert_offset(signed_pdf, "General Hospital records"))
    result = verify(changed, roots)  # type: ignore[arg-type]
    assert not result.ok
    intact = result.check("signature_intact")
    assert intact.status == "fail"
    assert "signed bytes are unchanged" in intact.message
    assert "certificate bundle" in intact.message
    assert "outside" not in intact.message or "cover" in intact.message
    assert "unreadable" not in intact.message


def test_bedside_verify_prints_the_note_for_a_passing_file(
    signed_pdf: bytes,
    site_pki: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    changed = _change_digit(signed_pdf, _bundle_cert_offset(signed_pdf, "records CA"))
    target = tmp_path / "record.pdf"
    target.write_bytes(changed)
    code = main(
        [
            "--home",
            str(tmp_path / "home"),
            "verify",
            "--trust",
            str(site_pki / pki.CA_CERT),
            str(target),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("OK ")
    assert "note  covers_whole_file:" in out
    assert "outside the signed byte range" in out
