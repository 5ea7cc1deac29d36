"""Signing keys and certificates for records: a local site CA, or an institution's PKCS#12.

Both end in the same folder layout, so signing and verification never care where the keys came
from::

    ca.pem            trust root(s) a verifier must be given (public)
    chain.pem         certificates sent with each signature: intermediates and root (public)
    signing-cert.pem  the document-signing certificate (public)
    signing-key.pem   its private key (0600)
    ca-key.pem        only for a local site CA: the CA's private key, to issue a new signing
                      certificate later (0600)

Private keys are protected by file permissions (0600 in a 0700 folder) by default, and can
additionally be encrypted with a passphrase. Why permissions first: the signing service runs
unattended (`bedside serve`, `bedside demo`), so a passphrase would have to be stored where the
service can read it, usually right beside the key, which adds nothing. Sites that inject a
secret at start-up (a vault, a systemd credential) pass ``passphrase`` and get PKCS#8 encryption
on top.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID, ObjectIdentifier
from pyhanko.sign.signers import SimpleSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore

from ..errors import InputError, IntegrityError

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
CHAIN = "chain.pem"
SIGNING_CERT = "signing-cert.pem"
SIGNING_KEY = "signing-key.pem"

# id-kp-documentSigning (RFC 9336): says what the certificate is for without pretending to be
# an e-mail or TLS certificate.
DOCUMENT_SIGNING_OID = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
CA_YEARS = 20
SIGNING_YEARS = 10


@dataclass(frozen=True)
class PkiPaths:
    """Where one installation's signing material lives."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / CA_CERT

    @property
    def ca_key(self) -> Path:
        return self.folder / CA_KEY

    @property
    def chain(self) -> Path:
        return self.folder / CHAIN

    @property
    def signing_cert(self) -> Path:
        return self.folder / SIGNING_CERT

    @property
    def signing_key(self) -> Path:
        return self.folder / SIGNING_KEY


def _prepare_folder(folder: Path) -> PkiPaths:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = PkiPaths(folder)
    # Never replace signing material silently: records already signed name this certificate.
    for existing in (paths.signing_key, paths.signing_cert, paths.ca_key):
        if existing.exists():
            raise InputError("pki folder", f"{existing} already exists; refusing to overwrite")
    return paths


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _write_private(path: Path, data: bytes) -> None:
    # O_EXCL + 0600 at creation: the key is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _key_pem(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, passphrase: bytes | None
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _cert_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        ]
    )


def _serial() -> int:
    return x509.random_serial_number()


def _make_ca(
    organisation: str, now: datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"{organisation} Bedside records CA", organisation)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue_signing(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    signer_name: str,
    organisation: str,
    now: datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(signer_name, organisation))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365 * SIGNING_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # digitalSignature + nonRepudiation (content_commitment): a signature that stands
            # for a person's or institution's commitment, which is what pyHanko checks for.
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([DOCUMENT_SIGNING_OID]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def create_site_pki(
    folder: Path,
    *,
    organisation: str,
    signer_name: str | None = None,
    passphrase: bytes | None = None,
    now: datetime | None = None,
) -> PkiPaths:
    """Make a local site CA (ECDSA P-256) and a document-signing certificate it issues."""
    if not organisation.strip():
        raise InputError("organisation", "must not be empty")
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    paths = _prepare_folder(folder)
    ca_key, ca_cert = _make_ca(organisation, moment)
    key, cert = _issue_signing(
        ca_key, ca_cert, signer_name or f"{organisation} records", organisation, moment
    )
    _write_private(paths.ca_key, _key_pem(ca_key, passphrase))
    _write_private(paths.signing_key, _key_pem(key, passphrase))
    _write_public(paths.ca_cert, _cert_pem(ca_cert))
    _write_public(paths.chain, _cert_pem(ca_cert))
    _write_public(paths.signing_cert, _cert_pem(cert))
    return paths


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def import_pkcs12(
    p12_path: Path,
    p12_passphrase: bytes | None,
    folder: Path,
    *,
    trust_root: Path | None = None,
    passphrase: bytes | None = None,
) -> PkiPaths:
    """Take an institution's PKCS#12 (key, certificate, chain) into the folder layout.

    The trust root is the self-signed certificate in the bundle, or ``trust_root`` (a PEM file)
    when the institution hands its root over separately.
    """
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(p12_path.read_bytes(), p12_passphrase)
    except (OSError, ValueError) as exc:
        raise InputError("pkcs12", f"cannot read {p12_path}: {exc}") from exc
    if key is None or cert is None:
        raise InputError("pkcs12", f"{p12_path} holds no private key and certificate")
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InputError("pkcs12", "only ECDSA and RSA signing keys are supported")
    roots = [c for c in extra if _self_signed(c)]
    if trust_root is not None:
        try:
            roots = x509.load_pem_x509_certificates(trust_root.read_bytes())
        except (OSError, ValueError) as exc:
            raise InputError("trust_root", f"cannot read {trust_root}: {exc}") from exc
    if not roots:
        raise InputError("pkcs12", "no self-signed root in the bundle; pass trust_root")
    paths = _prepare_folder(folder)
    _write_private(paths.signing_key, _key_pem(key, passphrase))
    _write_public(paths.signing_cert, _cert_pem(cert))
    _write_public(paths.chain, _cert_pem(*extra) if extra else _cert_pem(*roots))
    _write_public(paths.ca_cert, _cert_pem(*roots))
    return paths


def _to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _read_certs(path: Path) -> list[asn1_x509.Certificate]:
    try:
        return [_to_asn1(c) for c in x509.load_pem_x509_certificates(path.read_bytes())]
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"cannot read certificates in {path}: {exc}") from exc


def load_trust_roots(folder: Path) -> list[asn1_x509.Certificate]:
    """The trust roots of an installation, as pyHanko wants them."""
    return _read_certs(PkiPaths(folder).ca_cert)


@dataclass(frozen=True)
class RecordSigner:
    """Parsed signing material, ready for :mod:`workflow.records.sign`; build once, reuse."""

    signer: SimpleSigner
    name: str
    certificate: asn1_x509.Certificate


# Keyed by folder; the stamp (file times and sizes, passphrase) says when to parse again.
_CACHE: dict[str, tuple[tuple[object, ...], RecordSigner]] = {}


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def load_signer(folder: Path, passphrase: bytes | None = None) -> RecordSigner:
    """The folder's signer, parsed once and cached until its files change."""
    paths = PkiPaths(folder.resolve())
    try:
        mode = stat.S_IMODE(paths.signing_key.stat().st_mode)
        stamp = (
            passphrase,
            _stamp(paths.signing_key),
            _stamp(paths.signing_cert),
            _stamp(paths.chain),
        )
    except OSError as exc:
        raise InputError("pki folder", f"no signing material in {folder}: {exc}") from exc
    if mode & 0o077:
        raise IntegrityError(
            f"{paths.signing_key} is readable by others (mode {mode:o}); chmod 600"
        )
    cached = _CACHE.get(str(paths.folder))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        key = serialization.load_pem_private_key(paths.signing_key.read_bytes(), passphrase)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(
            "pki passphrase", f"cannot load the signing key in {folder}: {exc}"
        ) from exc
    key_info = asn1_keys.PrivateKeyInfo.load(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    certs = _read_certs(paths.signing_cert)
    if not certs:
        raise InputError("pki folder", f"{paths.signing_cert} holds no certificate")
    registry = SimpleCertificateStore()  # type: ignore[no-untyped-call]  # untyped upstream
    registry.register_multiple(_read_certs(paths.chain))
    simple = SimpleSigner(signing_cert=certs[0], signing_key=key_info, cert_registry=registry)
    name = certs[0].subject.native.get("common_name", "Bedside")
    signer = RecordSigner(simple, str(name), certs[0])
    _CACHE[str(paths.folder)] = (stamp, signer)
    return signer
