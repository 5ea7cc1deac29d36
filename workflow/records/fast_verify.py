"""The quick proof that a record is as its site signed it, for files of the shape Bedside writes.

pyHanko's full validation (records/verify.py) costs ~25 ms a record, nearly all of it in parsing
the PDF object by object (the /Contents hex string byte by byte), building the certificate path
again for the same certificate, and a difference analysis between revisions that a record with
one signature over the whole file does not need. The work a record really needs is one SHA-256
over the signed byte range and one ECDSA (or RSA) verification: well under a millisecond.

:func:`prove` does that work and nothing else, and only ever answers "proven" or "not proven":

* exactly one ``/ByteRange`` in the file, ``[0 b c d]`` with ``c + d`` the file's length, and
  the gap ``b..c`` exactly the ``<hex>`` /Contents string of that signature dictionary: the
  signature covers every byte but its own container (no update after signing, no odd range);
* the file's cross-reference tables (classic ones only) lead from the trailer's /Root to an
  /AcroForm with exactly one signature field, whose /V is the dictionary holding that range;
* the CMS is one SignerInfo, detached, SHA-256, whose signed attributes say content type
  ``data``, carry the digest of the signed range, and name (ESS signing-certificate-v2) the
  certificate that signed; that certificate's key verifies the signature value;
* every certificate the CMS carries is on that signer's validated path, and
* the certificate was found trusted (path to a trust root, key usage) by pyHanko's full
  validation earlier in this run, at a moment inside every validity period on that path
  (:class:`TrustedSigner`, cached by the caller).

Anything else (a second signature, an object stream, an xref stream, encryption, a name tree
with kids, a filter other than Flate, an unknown certificate, any failed check) is "not
proven", and the caller runs pyHanko's full validation, which gives the verdict and the
message. So the quick path can only say yes to a file pyHanko says yes to, never no; tests
(tests/records/test_fast_verify.py) hold it to that on every tamper, and the caller re-checks a
sample of its yeses with pyHanko (records/verify.py).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")
_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF\s*$")
_OBJ_HEAD = re.compile(rb"(\d+)\s+(\d+)\s+obj\b")
_SUBSECTION = re.compile(rb"\s*(\d+)\s+(\d+)[ \t]*\r?\n")
_MAX_REVISIONS = 64
# The AcroForm pyHanko writes: the fields and the signature flags, nothing else.
_FORM = re.compile(rb"\s*<<\s*/Fields\s*\[\s*((?:\d+\s+0\s+R\s*)+)\]\s*/SigFlags\s+\d+\s*>>\s*")
# An embedded-files name dictionary without kids: (name) ref pairs.
_NAMES = re.compile(
    rb"\s*<<\s*/EmbeddedFiles\s*<<\s*/Names\s*\["
    rb"((?:\s*\([A-Za-z0-9_.\-]+\)\s+\d+\s+0\s+R)*)\s*\]\s*>>\s*>>\s*"
)


@dataclass(frozen=True)
class TrustedSigner:
    """A signer certificate pyHanko validated in full, and what the quick path needs of it."""

    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    der: bytes
    issuer: bytes  # DER of the issuer name, as a CMS SignerIdentifier names it
    serial: int
    subject: str  # as pyHanko names it (human_friendly)
    path_certs: frozenset[bytes]  # DER of every certificate on the validated path
    not_before: datetime  # the latest not_before on the path
    not_after: datetime  # the earliest not_after on the path

    def valid_at(self, moment: datetime) -> bool:
        return self.not_before <= moment <= self.not_after


@dataclass(frozen=True)
class Proof:
    """What a proven record looks like, for the same checks the full path reports."""

    revisions: int
    field_name: str
    signer: TrustedSigner
    gap: tuple[int, int]  # first and last byte of the /Contents value
    attachment: bytes | None


class _NotProven(Exception):
    """Internal: the file leaves the shape the quick path knows; the full path decides."""


def signer_key(cert_der: bytes) -> str:
    """The cache key of a signer certificate."""
    return hashlib.sha256(cert_der).hexdigest()


def prove(
    pdf: bytes,
    trusted: dict[str, TrustedSigner],
    moment: datetime,
    attachment: str | None = None,
) -> Proof | None:
    """A :class:`Proof` when the record is provably intact, trusted and whole, else None."""
    try:
        return _prove(pdf, trusted, moment, attachment)
    except (_NotProven, ValueError, KeyError, IndexError, TypeError, zlib.error, InvalidSignature):
        return None
    except Exception:  # asn1crypto and cryptography raise their own kinds on odd input
        return None


def _prove(
    pdf: bytes, trusted: dict[str, TrustedSigner], moment: datetime, attachment: str | None
) -> Proof:
    # No scan for object streams: a file with classic cross-reference tables only (and no
    # /XRefStm, checked below) cannot use them, so every object, and every /ByteRange, is in
    # plain sight.
    if not pdf.startswith(b"%PDF-"):
        raise _NotProven
    ranges = list(_BYTE_RANGE.finditer(pdf))
    if len(ranges) != 1:
        raise _NotProven
    match = ranges[0]
    a, b, c, d = (int(x) for x in match.groups())
    if a != 0 or b <= 0 or c <= b + 1 or c + d != len(pdf):
        raise _NotProven
    hex_value = pdf[b:c]
    if hex_value[:1] != b"<" or hex_value[-1:] != b">":
        raise _NotProven
    der = bytes.fromhex(hex_value[1:-1].decode("ascii"))  # ValueError on anything but hex

    xref, revisions, root = _cross_reference(pdf)
    sig_obj = _signature_object(pdf, xref, root)
    start, end = _object_span(pdf, xref, sig_obj)
    if not (start < b and c <= end and start < match.start() < end):
        raise _NotProven  # the range found is not inside the field's signature dictionary
    sig_dict = pdf[start:end]
    if b"/SubFilter /ETSI.CAdES.detached" not in sig_dict or b"/Type /Sig" not in sig_dict:
        raise _NotProven
    field_name = _field_name(pdf, xref, root)

    digest = hashlib.sha256()
    digest.update(memoryview(pdf)[:b])
    digest.update(memoryview(pdf)[c:])
    signer, bundle = _check_cms(der, digest.digest(), trusted, moment)
    if any(other not in signer.path_certs for other in bundle):
        # A certificate that is not on the validated path (a changed copy of the CA's, say):
        # which one pyHanko would pick for the signer is its business, and so is the note.
        raise _NotProven
    data = _embedded_file(pdf, xref, root, attachment) if attachment is not None else None
    return Proof(revisions, field_name, signer, (b, c - 1), data)


# --- cross-reference tables and objects -------------------------------------------------------


def _cross_reference(pdf: bytes) -> tuple[dict[int, int], int, int]:
    """(object number -> offset of its newest definition, revisions, root object number)."""
    tail = _STARTXREF.search(pdf, max(0, len(pdf) - 64))
    if tail is None:
        raise _NotProven
    offsets: dict[int, int] = {}
    position: int | None = int(tail.group(1))
    root: int | None = None
    revisions = 0
    seen: set[int] = set()
    while position is not None:
        if position in seen or revisions >= _MAX_REVISIONS or not pdf.startswith(b"xref", position):
            raise _NotProven  # a loop, or an xref stream (not written by Bedside)
        seen.add(position)
        revisions += 1
        at = position + 4
        while True:
            head = _SUBSECTION.match(pdf, at)
            if head is None:
                break
            first, count = int(head.group(1)), int(head.group(2))
            at = head.end()
            for i in range(count):
                entry = pdf[at : at + 20]
                if len(entry) != 20 or entry[17:18] not in (b"n", b"f"):
                    raise _NotProven
                if entry[17:18] == b"n":
                    offsets.setdefault(first + i, int(entry[0:10]))
                else:
                    offsets.setdefault(first + i, -1)
                at += 20
        trailer_at = pdf.find(b"trailer", at, at + 16)
        if trailer_at < 0:
            raise _NotProven
        trailer_end = pdf.find(b"startxref", trailer_at)
        trailer = pdf[trailer_at:trailer_end]
        if root is None:
            found = re.search(rb"/Root\s+(\d+)\s+0\s+R", trailer)
            if found is None:
                raise _NotProven
            root = int(found.group(1))
        prev = re.search(rb"/Prev\s+(\d+)", trailer)
        if b"/XRefStm" in trailer or b"/Encrypt" in trailer:
            raise _NotProven
        position = int(prev.group(1)) if prev else None
    assert root is not None
    return offsets, revisions, root


def _object_span(pdf: bytes, xref: dict[int, int], number: int) -> tuple[int, int]:
    """(start of the object's body, offset of its ``endobj``)."""
    offset = xref.get(number, -1)
    if offset < 0:
        raise _NotProven
    head = _OBJ_HEAD.match(pdf, offset)
    if head is None or int(head.group(1)) != number or head.group(2) != b"0":
        raise _NotProven
    end = pdf.find(b"endobj", head.end())
    if end < 0:
        raise _NotProven
    return head.end(), end


def _dictionary(pdf: bytes, xref: dict[int, int], number: int) -> bytes:
    start, end = _object_span(pdf, xref, number)
    body = pdf[start:end]
    if b"stream" in body:
        body = body[: body.index(b"stream")]
    return body


def _reference(body: bytes, key: bytes) -> int:
    found = re.findall(rb"/" + key + rb"\s+(\d+)\s+0\s+R", body)
    if len(found) != 1:
        raise _NotProven
    return int(found[0])


def _signature_field(pdf: bytes, xref: dict[int, int], root: int) -> bytes:
    """The one signature field's dictionary (a second signature is the full path's)."""
    form = _dictionary(pdf, xref, _reference(_dictionary(pdf, xref, root), b"AcroForm"))
    fields = _FORM.fullmatch(form)
    if fields is None:
        raise _NotProven
    signature_fields = []
    for number in re.findall(rb"(\d+)\s+0\s+R", fields.group(1)):
        body = _dictionary(pdf, xref, int(number))
        if b"/Kids" in body:
            raise _NotProven
        if re.search(rb"/FT\s*/Sig\b", body):
            signature_fields.append(body)
    if len(signature_fields) != 1:
        raise _NotProven
    return signature_fields[0]


def _signature_object(pdf: bytes, xref: dict[int, int], root: int) -> int:
    return _reference(_signature_field(pdf, xref, root), b"V")


def _field_name(pdf: bytes, xref: dict[int, int], root: int) -> str:
    found = re.findall(rb"/T\s*\(([A-Za-z0-9_.\- ]+)\)", _signature_field(pdf, xref, root))
    if len(found) != 1:
        raise _NotProven
    return str(found[0].decode("ascii"))


def _embedded_file(pdf: bytes, xref: dict[int, int], root: int, name: str) -> bytes:
    names = _dictionary(pdf, xref, _reference(_dictionary(pdf, xref, root), b"Names"))
    tree = _NAMES.fullmatch(names)
    if tree is None:
        raise _NotProven  # kids, a second name dictionary entry or escapes: the full path's
    specs = [
        int(number)
        for file_name, number in re.findall(rb"\(([^)]*)\)\s+(\d+)\s+0\s+R", tree.group(1))
        if file_name == name.encode("ascii")
    ]
    if len(specs) != 1:
        raise _NotProven
    spec = _dictionary(pdf, xref, specs[0])
    ef = re.search(rb"/EF\s*<<\s*/F\s+(\d+)\s+0\s+R", spec)
    if ef is None:
        raise _NotProven
    return _stream(pdf, xref, int(ef.group(1)))


def _stream(pdf: bytes, xref: dict[int, int], number: int) -> bytes:
    start, end = _object_span(pdf, xref, number)
    keyword = pdf.find(b"stream", start, end)
    if keyword < 0:
        raise _NotProven
    head = pdf[start:keyword]
    length = re.findall(rb"/Length\s+(\d+)(?!\s+\d+\s+R)", head)
    if len(length) != 1:
        raise _NotProven
    filters = re.findall(rb"/Filter\s*(\[[^\]]*\]|/\w+)", head)
    data_at = keyword + 6
    if pdf[data_at : data_at + 2] == b"\r\n":
        data_at += 2
    elif pdf[data_at : data_at + 1] == b"\n":
        data_at += 1
    else:
        raise _NotProven
    data = pdf[data_at : data_at + int(length[0])]
    if not pdf[data_at + len(data) : end].strip().startswith(b"endstream"):
        raise _NotProven
    if not filters:
        return data
    if len(filters) != 1 or re.sub(rb"[\[\]\s]", b"", filters[0]) != b"/FlateDecode":
        raise _NotProven
    return zlib.decompress(data)


# --- the CMS signature ------------------------------------------------------------------------


def _check_cms(
    der: bytes, digest: bytes, trusted: dict[str, TrustedSigner], moment: datetime
) -> tuple[TrustedSigner, list[bytes]]:
    """(the signer's cached trust, every certificate's DER in the CMS).

    asn1crypto re-encodes a value once any of its children was looked at, which costs more
    than everything else here; so every encoding needed is taken (``dump``) before its parts
    are read, and parts are read from separate copies."""
    info = cms.ContentInfo.load(der)
    if info["content_type"].native != "signed_data":
        raise _NotProven
    signed = info["content"]
    bundle = [c.chosen.dump() for c in signed["certificates"] or () if c.name == "certificate"]
    (signer_info,) = signed["signer_infos"]
    stored = signer_info["signed_attrs"].dump()
    if signed["encap_content_info"]["content"].native is not None:
        raise _NotProven  # not detached
    if signer_info["digest_algorithm"]["algorithm"].native != "sha256":
        raise _NotProven
    sid = signer_info["sid"]
    if sid.name != "issuer_and_serial_number":
        raise _NotProven
    issuer = sid.chosen["issuer"].dump()
    serial = sid.chosen["serial_number"].native
    # The signer must be one pyHanko validated (the full path validates a new one, once),
    # named by the CMS and carried in its bundle, as pyHanko would look it up.
    known = [t for t in trusted.values() if t.serial == serial and t.issuer == issuer]
    if len(known) != 1 or known[0].der not in bundle or not known[0].valid_at(moment):
        raise _NotProven
    signer = known[0]

    values: dict[str, object] = {}
    for attr in cms.CMSAttributes.load(b"\x31" + stored[1:]):
        kind = attr["type"].native
        if kind in values or len(attr["values"]) != 1:
            raise _NotProven
        values[kind] = attr["values"][0]
    content_type = values.get("content_type")
    message_digest = values.get("message_digest")
    ess = values.get("signing_certificate_v2")
    if (
        content_type is None
        or getattr(content_type, "native", None) != "data"
        or message_digest is None
        or getattr(message_digest, "native", None) != digest
        or ess is None
    ):
        raise _NotProven
    (cert_id, *_) = ess["certs"]  # type: ignore[index]
    if cert_id["hash_algorithm"]["algorithm"].native != "sha256":
        raise _NotProven
    if cert_id["cert_hash"].native != hashlib.sha256(signer.der).digest():
        raise _NotProven

    # The signature is over the DER SET OF the signed attributes (RFC 5652 5.4): the same
    # bytes as stored, with the [0] IMPLICIT tag put back to SET.
    if stored[:1] != b"\xa0":
        raise _NotProven
    blob = b"\x31" + stored[1:]
    value = signer_info["signature"].native
    algorithm = signer_info["signature_algorithm"].signature_algo
    key = signer.public_key
    if algorithm == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(value, blob, ec.ECDSA(hashes.SHA256()))
    elif algorithm == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
        key.verify(value, blob, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise _NotProven
    return signer, bundle
