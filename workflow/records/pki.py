"""Signing keys and certificates for records: a local site CA, or an institution's PKCS#12.

Both end in the same folder layout, so signing and verification never care where the keys came
from::

    ca.pem            trust root(s) a verifier must be given (public)
    chain.pem         certificates sent with each signature: intermediates and root (public)
    signing-cert.pem  the document-signing certificate (public)
    signing-key.pem   its private key (0600)
    ca-key.pem        only for a local site CA: the CA's private key, to issue a new signing
                      certificate later (0600). A site with an offline CA keeps it off the
                      serving host (README, "Offline CA"); ``bedside serve`` warns when it is here.

Making the material is all or nothing (issue 13.6): every file is written and synced in a
staging folder, then moved into place with the signing key last, so an interrupted ``bedside
init`` leaves either no signing key or a complete set. A folder that holds part of a set (from
an older Bedside cut off between its keys and its certificates) is refused by every signing
path (:func:`pki_state`, ``Archive.ready``) and set aside by the next ``bedside init``.

Private keys are protected by file permissions (0600 in a 0700 folder) by default, and can
additionally be encrypted with a passphrase. Why permissions first: the signing service runs
unattended (`bedside serve`, `bedside demo`), so a passphrase would have to be stored where the
service can read it, usually right beside the key, which adds nothing. Sites that inject a
secret at start-up (a vault, a systemd credential) pass ``passphrase`` and get PKCS#8 encryption
on top.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from pyhanko.sign.signers import SimpleSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore

from workflow.core.errors import InputError, IntegrityError
from workflow.private_files import create_private_file, fsync_dir, refuse_if_exposed

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
CHAIN = "chain.pem"
SIGNING_CERT = "signing-cert.pem"
SIGNING_KEY = "signing-key.pem"

# id-kp-documentSigning (RFC 9336) says what the certificate is for. Alone it is not enough:
# NSS (Poppler's pdfsig, Firefox, Thunderbird, LibreOffice) checks a PDF signer for its
# "e-mail signer" usage, which refuses a certificate whose extended key usage lacks
# id-kp-emailProtection ("Certificate type not approved for application", shown by pdfsig as
# "Unknown issue with Certificate or corrupted data"; issue 13.7). So both: emailProtection for
# the validators that know only S/MIME-style signing, documentSigning for those that know it.
DOCUMENT_SIGNING_OID = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
SIGNING_EKUS = (DOCUMENT_SIGNING_OID, ExtendedKeyUsageOID.EMAIL_PROTECTION)
# Every file a complete set holds; the CA key is optional (an institution's PKCS#12, an
# offline CA). The order is the order files are moved into place: the signing key last.
_PUBLIC = (CA_CERT, CHAIN, SIGNING_CERT)
_COMPLETE = (*_PUBLIC, SIGNING_KEY)
_MATERIAL = (*_PUBLIC, CA_KEY, SIGNING_KEY)
RETIRED_DIR = "retired"
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


def pki_state(folder: Path) -> str:
    """``"absent"`` (no signing material), ``"complete"``, or ``"incomplete"`` (part of a set:
    an interrupted ``bedside init`` of an older Bedside, or files lost since)."""
    present = {name for name in _MATERIAL if (folder / name).exists()}
    if not present:
        return "absent"
    if set(_COMPLETE) <= present:
        return "complete"
    return "incomplete"


def describe_incomplete(folder: Path) -> str:
    present = [n for n in _MATERIAL if (folder / n).exists()]
    missing = [n for n in _COMPLETE if not (folder / n).exists()]
    return (
        f"{folder} holds part of a signing set ({', '.join(present)}; missing "
        f"{', '.join(missing)}): an interrupted `bedside init`. Nothing can be signed with it; "
        "run `bedside init` again to finish it"
    )


def set_aside_incomplete(folder: Path, now: datetime | None = None) -> Path:
    """Move a partial set into ``<folder>/incomplete-<time>/`` so a new one can be made.

    Only when it cannot have signed anything (no signing key, or no signing certificate):
    otherwise records name its certificate and the folder must be restored from a copy.
    """
    paths = PkiPaths(folder)
    if paths.signing_key.exists() and paths.signing_cert.exists():
        raise IntegrityError(
            f"{folder} has its signing key and certificate but lacks "
            + ", ".join(n for n in _COMPLETE if not (folder / n).exists())
            + "; records may have been signed with it, so it is not replaced: restore pki/ "
            "from the site's copy"
        )
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = folder / f"incomplete-{stamp}-{secrets.token_hex(2)}"
    aside.mkdir(mode=0o700)
    for name in _MATERIAL:
        if (folder / name).exists():
            os.replace(folder / name, aside / name)
    fsync_dir(folder)
    return aside


def _prepare_folder(folder: Path) -> tuple[PkiPaths, Path]:
    """The folder (0700) and an empty staging folder inside it."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    paths = PkiPaths(folder)
    # Never replace signing material silently: records already signed name this certificate.
    for existing in (paths.signing_key, paths.signing_cert, paths.ca_key):
        if existing.exists():
            raise InputError("pki folder", f"{existing} already exists; refusing to overwrite")
    for stale in folder.glob(".incoming-*"):  # a staging folder an interrupted init left
        shutil.rmtree(stale, ignore_errors=True)
    staging = folder / f".incoming-{secrets.token_hex(4)}"
    staging.mkdir(mode=0o700)
    return paths, staging


def _commit(staging: Path, folder: Path) -> None:
    """Move the staged files into place, the signing key last: until it lands, nothing signs
    (``pki_state`` says "incomplete" and ``bedside init`` starts again)."""
    fsync_dir(staging)
    order = [n for n in (*_PUBLIC, CA_KEY, SIGNING_KEY) if (staging / n).exists()]
    for name in order:
        os.replace(staging / name, folder / name)
        fsync_dir(folder)
    staging.rmdir()


def _write_public(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(path, 0o644)


def _write_private(path: Path, data: bytes) -> None:
    # O_EXCL + 0600 at creation: the key is never readable by others, not even for a moment.
    with os.fdopen(create_private_file(path), "wb") as out:
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
        .add_extension(x509.ExtendedKeyUsage(list(SIGNING_EKUS)), critical=False)
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
    paths, staging = _prepare_folder(folder)
    ca_key, ca_cert = _make_ca(organisation, moment)
    key, cert = _issue_signing(
        ca_key, ca_cert, signer_name or f"{organisation} records", organisation, moment
    )
    _write_private(staging / CA_KEY, _key_pem(ca_key, passphrase))
    _write_private(staging / SIGNING_KEY, _key_pem(key, passphrase))
    _write_public(staging / CA_CERT, _cert_pem(ca_cert))
    _write_public(staging / CHAIN, _cert_pem(ca_cert))
    _write_public(staging / SIGNING_CERT, _cert_pem(cert))
    _commit(staging, folder)
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
    paths, staging = _prepare_folder(folder)
    _write_private(staging / SIGNING_KEY, _key_pem(key, passphrase))
    _write_public(staging / SIGNING_CERT, _cert_pem(cert))
    _write_public(staging / CHAIN, _cert_pem(*extra) if extra else _cert_pem(*roots))
    _write_public(staging / CA_CERT, _cert_pem(*roots))
    _commit(staging, folder)
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
    if pki_state(paths.folder) == "incomplete":
        raise IntegrityError(describe_incomplete(paths.folder))
    try:
        check_private_keys(paths.folder)
        stamp = (
            passphrase,
            _stamp(paths.signing_key),
            _stamp(paths.signing_cert),
            _stamp(paths.chain),
        )
    except OSError as exc:
        raise InputError("pki folder", f"no signing material in {folder}: {exc}") from exc
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
    if (
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        != certs[0].public_key.dump()
    ):
        # A re-issue cut off between its two renames: never sign with a certificate that
        # names another key (every validator would call the signature broken).
        raise IntegrityError(
            f"{paths.signing_key} does not belong to {paths.signing_cert}; run `bedside init "
            "--reissue-signing-cert` to issue a matching pair"
        )
    registry = SimpleCertificateStore()  # type: ignore[no-untyped-call]  # untyped upstream
    registry.register_multiple(_read_certs(paths.chain))
    simple = SimpleSigner(signing_cert=certs[0], signing_key=key_info, cert_registry=registry)
    name = certs[0].subject.native.get("common_name", "Bedside")
    signer = RecordSigner(simple, str(name), certs[0])
    _CACHE[str(paths.folder)] = (stamp, signer)
    return signer


def private_key_files(folder: Path) -> list[Path]:
    """Every private key kept in ``folder``: the signing and CA keys, the site key."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and (p.name.endswith(("-key.pem", ".key")))
    )


def check_private_keys(folder: Path) -> None:
    """IntegrityError naming the first key under ``folder`` that others may read (issue 13.5):
    every key, not only the one about to be used, since any of them signs or verifies for the
    site."""
    for path in private_key_files(folder):
        refuse_if_exposed(path)


def reissue_signing_cert(folder: Path, *, now: datetime | None = None) -> Path:
    """A new signing key and certificate from the site CA whose key is in ``folder``.

    The CA stays the same, so every record signed before still verifies against ``ca.pem``
    (each PDF carries its own signing certificate). The old certificate is kept in
    ``retired/`` (public, for audits); the old key is replaced. The caller holds the home lock
    exclusively, so no process signs between the two renames; were it cut off there, the key
    and certificate would not match and :func:`load_signer` refuses until this runs again.
    """
    paths = PkiPaths(folder)
    if not paths.ca_key.exists():
        raise InputError(
            "pki folder",
            f"{paths.ca_key} is not here (an offline CA or an institution's certificate): issue "
            "the new signing certificate where the CA key is kept, then copy signing-key.pem and "
            "signing-cert.pem here",
        )
    if not paths.ca_cert.exists():
        raise IntegrityError(f"{paths.ca_cert} is missing; restore pki/ from the site's copy")
    check_private_keys(folder)
    try:
        ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), None)
    except (ValueError, TypeError) as exc:
        raise InputError("pki passphrase", f"cannot load {paths.ca_key}: {exc}") from exc
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise InputError("pki folder", f"{paths.ca_key} is not the local CA's ECDSA key")
    ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    old_name = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    organisation = str(old_name[0].value) if old_name else "Bedside site"
    signer_name = f"{organisation} records"
    if paths.signing_cert.exists():
        old = x509.load_pem_x509_certificate(paths.signing_cert.read_bytes())
        names = old.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        signer_name = str(names[0].value) if names else signer_name
        retired = folder / RETIRED_DIR
        retired.mkdir(mode=0o700, exist_ok=True)
        _write_public(retired / f"signing-cert-{old.serial_number:x}.pem", _cert_pem(old))
    key, cert = _issue_signing(ca_key, ca_cert, signer_name, organisation, moment)
    staging = folder / f".incoming-{secrets.token_hex(4)}"
    staging.mkdir(mode=0o700)
    _write_private(staging / SIGNING_KEY, _key_pem(key, None))
    _write_public(staging / SIGNING_CERT, _cert_pem(cert))
    os.replace(staging / SIGNING_CERT, paths.signing_cert)
    os.replace(staging / SIGNING_KEY, paths.signing_key)
    fsync_dir(folder)
    staging.rmdir()
    return paths.signing_cert
