from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from workflow.errors import InputError, IntegrityError
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
