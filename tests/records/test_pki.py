from __future__ import annotations

import os
import shutil
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from workflow.core.errors import InputError, IntegrityError
from workflow.records import pki
from workflow.records.sign import sign_pdf
from workflow.records.verify import verify


def test_site_pki_layout_modes_and_usages(site_pki: Path) -> None:
    paths = pki.PkiPaths(site_pki)
    for private in (paths.signing_key, paths.ca_key):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(site_pki.stat().st_mode) == 0o700
    cert = x509.load_pem_x509_certificate(paths.signing_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature
    assert ku.content_commitment
    assert not ku.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert pki.DOCUMENT_SIGNING_OID in list(eku)
    assert cert.issuer == ca.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_refuses_to_overwrite(site_pki: Path) -> None:
    with pytest.raises(InputError, match="refusing to overwrite"):
        pki.create_site_pki(site_pki, organisation="X")


def test_signer_is_cached_until_files_change(site_pki: Path) -> None:
    assert pki.load_signer(site_pki) is pki.load_signer(site_pki)


def test_passphrase_protected_key(tmp_path: Path, compounding_pdf: bytes) -> None:
    folder = tmp_path / "pki"
    pki.create_site_pki(folder, organisation="Vault Hospital", passphrase=b"s3cret")
    assert b"ENCRYPTED" in pki.PkiPaths(folder).signing_key.read_bytes()
    with pytest.raises(InputError, match="passphrase"):
        pki.load_signer(folder)
    with pytest.raises(InputError, match="passphrase"):
        pki.load_signer(folder, b"wrong")
    signed = sign_pdf(compounding_pdf, pki.load_signer(folder, b"s3cret"), reason="compounding")
    assert verify(signed, pki.load_trust_roots(folder)).ok


def test_readable_key_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    pki.create_site_pki(folder, organisation="Loose Hospital")
    pki.PkiPaths(folder).signing_key.chmod(0o644)
    with pytest.raises(IntegrityError, match="readable by others"):
        pki.load_signer(folder)


def _institution_p12(tmp_path: Path, *, with_root: bool) -> tuple[Path, x509.Certificate]:
    now = datetime.now(UTC)
    root_key = ec.generate_private_key(ec.SECP384R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Institution Root")])
    root = (
        x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
        .public_key(root_key.public_key()).serial_number(1)
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA384())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pharmacy Signing")]))
        .issuer_name(root_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(root_key, hashes.SHA384())
    )  # fmt: skip
    blob = pkcs12.serialize_key_and_certificates(
        b"signing", key, leaf, [root] if with_root else None,
        serialization.BestAvailableEncryption(b"p12-pass"),
    )  # fmt: skip
    path = tmp_path / "institution.p12"
    path.write_bytes(blob)
    return path, root


def test_pkcs12_import_round_trip(tmp_path: Path, compounding_pdf: bytes) -> None:
    p12, root = _institution_p12(tmp_path, with_root=True)
    folder = tmp_path / "imported"
    paths = pki.import_pkcs12(p12, b"p12-pass", folder)
    assert stat.S_IMODE(paths.signing_key.stat().st_mode) == 0o600
    assert not paths.ca_key.exists()
    signer = pki.load_signer(folder)
    assert signer.name == "Pharmacy Signing"
    signed = sign_pdf(compounding_pdf, signer, reason="compounding")
    result = verify(signed, pki.load_trust_roots(folder))
    assert result.ok, result.to_dict()
    assert verify(signed, [root]).ok  # a cryptography certificate works as a trust root too


def test_pkcs12_without_root_needs_one(tmp_path: Path) -> None:
    p12, root = _institution_p12(tmp_path, with_root=False)
    with pytest.raises(InputError, match="trust_root"):
        pki.import_pkcs12(p12, b"p12-pass", tmp_path / "a")
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    pki.import_pkcs12(p12, b"p12-pass", tmp_path / "b", trust_root=root_pem)
    assert pki.load_signer(tmp_path / "b").name == "Pharmacy Signing"


def test_pkcs12_wrong_passphrase(tmp_path: Path) -> None:
    p12, _ = _institution_p12(tmp_path, with_root=True)
    with pytest.raises(InputError, match="pkcs12"):
        pki.import_pkcs12(p12, b"nope", tmp_path / "c")


# --- issue 13.5-13.7: every key checked, all-or-nothing material, validators that accept it ---


def test_every_key_under_pki_is_refused_when_others_may_read_it(tmp_path: Path) -> None:
    """Only the signing key was checked: a loose CA key or site key was used as it was."""
    from workflow.identity.session_proof import load_session_key

    folder = tmp_path / "pki"
    pki.create_site_pki(folder, organisation="Loose Hospital")
    load_session_key(folder)
    keys = {p.name for p in pki.private_key_files(folder)}
    assert keys == {"ca-key.pem", "signing-key.pem", "session-verifier.key"}
    for path in pki.private_key_files(folder):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pki.load_signer(folder)
    for name in sorted(keys):
        (folder / name).chmod(0o640)
        with pytest.raises(IntegrityError, match=f"{name} is readable by others"):
            pki.load_signer(folder)
        (folder / name).chmod(0o600)
    (folder / "session-verifier.key").chmod(0o604)
    with pytest.raises(IntegrityError, match="readable by others"):
        load_session_key(folder)


def test_an_interrupted_creation_never_leaves_a_set_that_signs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compounding_pdf: bytes
) -> None:
    """Cut the creation off after each of its moves into place: the folder is either without
    a signing key (absent or incomplete, refused by load_signer) or complete and working."""
    real_replace = os.replace
    for cut_after in range(5):
        folder = tmp_path / f"pki-{cut_after}"
        moves = 0

        def flaky(src: object, dst: object, _cut: int = cut_after) -> None:
            nonlocal moves
            if moves == _cut:
                raise OSError("power lost")
            moves += 1
            real_replace(src, dst)  # type: ignore[arg-type]

        monkeypatch.setattr(pki.os, "replace", flaky)
        with pytest.raises(OSError, match="power lost"):
            pki.create_site_pki(folder, organisation="Cut Hospital")
        monkeypatch.setattr(pki.os, "replace", real_replace)
        assert not pki.PkiPaths(folder).signing_key.exists()
        state = pki.pki_state(folder)
        assert state in ("absent", "incomplete")
        if state == "incomplete":
            with pytest.raises(IntegrityError, match="interrupted `bedside init`"):
                pki.load_signer(folder)
            pki.set_aside_incomplete(folder)
        # The next attempt (what `bedside init` does) completes it and it signs.
        pki.create_site_pki(folder, organisation="Cut Hospital")
        assert not list(folder.glob(".incoming-*"))
        assert verify(sign_pdf(compounding_pdf, pki.load_signer(folder), reason="r"),
                      pki.load_trust_roots(folder)).ok  # fmt: skip


def test_a_partial_set_that_may_have_signed_is_never_set_aside(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    pki.create_site_pki(folder, organisation="Kept Hospital")
    pki.PkiPaths(folder).chain.unlink()
    assert pki.pki_state(folder) == "incomplete"
    with pytest.raises(IntegrityError, match="restore pki/"):
        pki.set_aside_incomplete(folder)
    assert pki.PkiPaths(folder).signing_key.exists()


def _nss_db(tmp_path: Path, ca_pem: Path) -> Path:
    """An NSS database that trusts ``ca_pem`` for e-mail signing (what pdfsig checks)."""
    for tool in ("pdfsig", "certutil"):
        assert shutil.which(tool), f"{tool} is missing: run scripts/sysdeps.sh"
    db = tmp_path / "nssdb"
    db.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True)
    subprocess.run(
        ["certutil", "-A", "-d", f"sql:{db}", "-n", "site-ca", "-t", "CT,C,C", "-i", str(ca_pem)],
        check=True,
    )
    return db


def _pdfsig(db: Path, pdf: Path) -> str:
    done = subprocess.run(
        ["pdfsig", "-nssdir", f"sql:{db}", str(pdf)], capture_output=True, text=True, check=False
    )
    return done.stdout + done.stderr


def test_pdfsig_with_nss_trusts_a_real_record(
    site_pki: Path, signed_pdf: bytes, tmp_path: Path
) -> None:
    """Poppler's pdfsig (NSS) said "Signature is Valid" but "Unknown issue with Certificate":
    NSS validates a PDF signer as an e-mail signer, and id-kp-documentSigning alone is not
    approved for that. Both verdicts are required now, and pyHanko still agrees."""
    record = tmp_path / "compounding.pdf"
    record.write_bytes(signed_pdf)
    out = _pdfsig(_nss_db(tmp_path, pki.PkiPaths(site_pki).ca_cert), record)
    assert "Signature Validation: Signature is Valid." in out, out
    assert "Certificate Validation: Certificate is Trusted." in out, out
    assert verify(signed_pdf, pki.load_trust_roots(site_pki)).ok
    eku = (
        x509.load_pem_x509_certificate(pki.PkiPaths(site_pki).signing_cert.read_bytes())
        .extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        .value
    )
    assert set(eku) == {pki.DOCUMENT_SIGNING_OID, ExtendedKeyUsageOID.EMAIL_PROTECTION}


def test_reissue_gives_a_certificate_pdfsig_trusts_and_old_records_still_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compounding_pdf: bytes
) -> None:
    """A home made before the fix keeps its documentSigning-only certificate; re-issuing the
    leaf from the same CA fixes pdfsig for new records and keeps every old one verifiable."""
    folder = tmp_path / "pki"
    monkeypatch.setattr(pki, "SIGNING_EKUS", (pki.DOCUMENT_SIGNING_OID,))  # the old leaf
    pki.create_site_pki(folder, organisation="Old Hospital")
    monkeypatch.undo()
    old_pdf = tmp_path / "old.pdf"
    old_pdf.write_bytes(sign_pdf(compounding_pdf, pki.load_signer(folder), reason="old"))
    db = _nss_db(tmp_path, pki.PkiPaths(folder).ca_cert)
    assert "Unknown issue with Certificate" in _pdfsig(db, old_pdf)  # what the issue saw
    ca_before = pki.PkiPaths(folder).ca_cert.read_bytes()
    old_cert = x509.load_pem_x509_certificate(pki.PkiPaths(folder).signing_cert.read_bytes())

    pki.reissue_signing_cert(folder)
    assert pki.PkiPaths(folder).ca_cert.read_bytes() == ca_before
    retired = folder / pki.RETIRED_DIR / f"signing-cert-{old_cert.serial_number:x}.pem"
    assert x509.load_pem_x509_certificate(retired.read_bytes()) == old_cert
    assert stat.S_IMODE(pki.PkiPaths(folder).signing_key.stat().st_mode) == 0o600
    new_pdf = tmp_path / "new.pdf"
    new_pdf.write_bytes(sign_pdf(compounding_pdf, pki.load_signer(folder), reason="new"))
    out = _pdfsig(db, new_pdf)
    assert "Signature is Valid." in out and "Certificate is Trusted." in out, out
    roots = pki.load_trust_roots(folder)
    assert verify(old_pdf.read_bytes(), roots).ok and verify(new_pdf.read_bytes(), roots).ok


def test_reissue_needs_the_ca_key_and_a_key_that_matches_its_certificate(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    pki.create_site_pki(folder, organisation="Offline Hospital")
    other = tmp_path / "other"
    pki.create_site_pki(other, organisation="Other Hospital")
    # A re-issue cut off between its renames: a key that is not the certificate's.
    shutil.copyfile(pki.PkiPaths(other).signing_key, pki.PkiPaths(folder).signing_key)
    with pytest.raises(IntegrityError, match="does not belong to"):
        pki.load_signer(folder)
    pki.reissue_signing_cert(folder)
    pki.load_signer(folder)
    pki.PkiPaths(folder).ca_key.unlink()  # the CA kept offline
    with pytest.raises(InputError, match="offline CA"):
        pki.reissue_signing_cert(folder)
