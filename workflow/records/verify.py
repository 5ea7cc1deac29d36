"""Verify a signed record PDF and say, check by check, what holds and what does not.

The answer is always a :class:`VerificationResult`, never an exception: an auditor feeding a
corrupt, truncated or foreign file must get "parsed: failed", not a traceback. Checks run in a
fixed order; a check that cannot run because an earlier one failed is reported as skipped.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

from asn1crypto import x509 as asn1_x509
from cryptography import x509 as crypto_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from workflow.core.errors import IntegrityError

from .embed import embedded_file
from .fast_verify import Proof, TrustedSigner, prove, signer_key

Status = Literal["pass", "fail", "skip"]
CHECK_NAMES = (
    "parsed",
    "has_signature",
    "signature_intact",
    "certificate_trusted",
    "covers_whole_file",
    "matches_archive",
)
# What a later signature may change in a revision an earlier one signed: adding its own field.
_ALLOWED_AFTER_EARLIER = (ModificationLevel.NONE, ModificationLevel.FORM_FILLING)
# A record signature stands for commitment; either usage bit is accepted so an institution's
# certificate with only digitalSignature still works.
_KEY_USAGE = KeyUsageConstraints(
    key_usage={"digital_signature", "non_repudiation"}, match_all_key_usages=False
)

# asn1crypto objects (what pyHanko uses), cryptography objects, or DER bytes.
Certificate: TypeAlias = "asn1_x509.Certificate | crypto_x509.Certificate | bytes"

# pyHanko logs every failed path search with a traceback. A library must not print through
# logging's last-resort handler; an application that configures logging still gets them.
for _name in ("pyhanko", "pyhanko_certvalidator"):
    logging.getLogger(_name).addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    # Something the auditor should know even when the check passes (printed with OK results).
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass(frozen=True)
class VerificationResult:
    ok: bool
    checks: tuple[Check, ...]
    signers: tuple[str, ...] = ()
    sha256: str = ""
    # The embedded file asked for with ``verify(..., attachment=NAME)``, read from the same
    # parse as the signatures (None when absent or unreadable: ``attachment_problem`` says why).
    attachment: bytes | None = field(default=None, repr=False, compare=False)
    attachment_problem: str | None = None

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "sha256": self.sha256,
            "signers": list(self.signers),
            "checks": [
                {"name": c.name, "status": c.status, "message": c.message}
                | ({"note": c.note} if c.note else {})
                for c in self.checks
            ],
        }


def _as_asn1(cert: Certificate) -> asn1_x509.Certificate:
    if isinstance(cert, asn1_x509.Certificate):
        return cert
    if isinstance(cert, crypto_x509.Certificate):
        return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    return asn1_x509.Certificate.load(cert)


def certificate_der(cert: Certificate) -> bytes:
    """A certificate in any of the accepted forms as DER (what a worker process is handed)."""
    return bytes(_as_asn1(cert).dump())


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "…"


class _Run:
    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}

    def put(self, name: str, status: Status, message: str, note: str = "") -> None:
        self.checks[name] = Check(name, status, message, note)

    def skip_rest(self, reason: str) -> None:
        for name in CHECK_NAMES:
            if name not in self.checks:
                self.put(name, "skip", f"not run: {reason}")


# With the quick path on, every this-many-th record it proves is validated again in full by
# pyHanko and the two answers compared (the first record of each signer always is: its
# certificate is only trusted by the quick path once pyHanko has validated it).
CROSS_CHECK_EVERY = 250


@dataclass
class VerifierStats:
    """How a Verifier reached its answers (printed by benches, reported by archive verify)."""

    quick: int = 0  # proven by records/fast_verify.py
    full: int = 0  # validated by pyHanko in full (first of a signer, not proven, cross-checks)
    cross_checked: int = 0  # quick answers validated again by pyHanko
    # Quick answers pyHanko did not give: (sha256, what differed). The full answer is used.
    disagreements: list[tuple[str, str]] = field(default_factory=list)


class Verifier:
    """Verifies records against one set of trust roots (parsed once, reused across files).

    ``quick`` (the default) lets records/fast_verify.py prove a record of the shape Bedside
    writes with one hash and one signature verification, trusting a signer certificate only
    after pyHanko validated it in full during this Verifier's life; whatever it cannot prove
    goes to pyHanko's full validation, which alone reports failures. ``cross_check_every``
    re-validates every N-th quick answer in full (0: never) and keeps pyHanko's answer when
    they differ (``stats.disagreements``).
    """

    def __init__(
        self,
        trust_roots: Sequence[Certificate],
        *,
        at: datetime | None = None,
        quick: bool = True,
        cross_check_every: int = CROSS_CHECK_EVERY,
    ) -> None:
        self._roots = [_as_asn1(c) for c in trust_roots]
        self._at = at
        self._quick = quick
        self._cross_check_every = cross_check_every
        self._trusted: dict[str, TrustedSigner] = {}
        self.stats = VerifierStats()

    def _context(self) -> ValidationContext:
        # A fresh context per file: its "now" is fixed at construction, and a long-lived
        # archive service must not judge next year's files by today's clock. Revocation
        # data is not fetched: records are verified offline, against the site's own CA.
        return ValidationContext(
            trust_roots=self._roots,
            moment=self._at,
            allow_fetching=False,
            revocation_mode="soft-fail",
        )

    def verify(
        self,
        pdf_bytes: bytes,
        expected_sha256: str | None = None,
        *,
        attachment: str | None = None,
        sha256: str | None = None,
    ) -> VerificationResult:
        """Check one PDF. ``attachment`` names an embedded file (``events.json``) to hand back
        from the same parse, so checking a record and reading its events parse it once.
        ``sha256`` is the file's hash when the caller has just computed it (hashed once)."""
        if not self._quick or not self._roots:
            return self._verify_full(pdf_bytes, expected_sha256, attachment)
        proof = prove(pdf_bytes, self._trusted, self._at or datetime.now(UTC), attachment)
        if proof is None:
            return self._verify_full(pdf_bytes, expected_sha256, attachment)
        self.stats.quick += 1
        digest = sha256 or hashlib.sha256(pdf_bytes).hexdigest()
        result = _proven(proof, len(pdf_bytes), digest, expected_sha256, attachment)
        every = self._cross_check_every
        if every and self.stats.quick % every == 0:
            self.stats.cross_checked += 1
            full = self._verify_full(pdf_bytes, expected_sha256, attachment)
            differs = _difference(result, full)
            if differs is not None:
                self.stats.disagreements.append((result.sha256, differs))
                return full
        return result

    def _verify_full(
        self, pdf_bytes: bytes, expected_sha256: str | None, attachment: str | None
    ) -> VerificationResult:
        self.stats.full += 1
        run = _Run()
        digest = hashlib.sha256(pdf_bytes).hexdigest()
        signers: list[str] = []
        found: dict[str, bytes | str] = {}
        try:
            self._signature_checks(pdf_bytes, run, signers, attachment, found)
        except Exception as exc:  # hostile input may break the parser anywhere: report it
            pending = next((n for n in CHECK_NAMES[:-1] if n not in run.checks), "parsed")
            run.put(pending, "fail", f"unreadable: {_describe(exc)}")
            run.skip_rest(f"{pending} failed")
        _matches_archive(run, digest, expected_sha256)
        checks = tuple(run.checks[n] for n in CHECK_NAMES)
        data = found.get("data")
        problem = found.get("problem")
        if attachment is not None and data is None and problem is None:
            problem = "the file could not be parsed"
        return VerificationResult(
            _all_ok(checks),
            checks,
            tuple(signers),
            digest,
            data if isinstance(data, bytes) else None,
            str(problem) if problem is not None else None,
        )

    def _signature_checks(
        self,
        pdf_bytes: bytes,
        run: _Run,
        signers: list[str],
        attachment: str | None = None,
        found: dict[str, bytes | str] | None = None,
    ) -> None:
        if pdf_bytes.lstrip()[:5] != b"%PDF-":
            run.put("parsed", "fail", "not a PDF file (no %PDF- header)")
            run.skip_rest("the file is not a PDF")
            return
        reader = PdfFileReader(io.BytesIO(pdf_bytes), strict=False)
        try:
            sigs = list(reader.embedded_regular_signatures)
            run.put("parsed", "pass", f"PDF with {reader.xrefs.total_revisions} revision(s)")
            if not sigs:
                run.put("has_signature", "fail", "the PDF carries no signature")
                run.skip_rest("there is no signature")
                return
            run.put("has_signature", "pass", f"{len(sigs)} signature(s)")
            if not self._roots:
                run.put("signature_intact", "skip", "not run: no trust roots given")
                run.put("certificate_trusted", "fail", "no trust roots were given")
                run.put("covers_whole_file", "skip", "not run: no trust roots given")
                return

            validated = self._validate_each(sigs, run, signers)
            if validated is None:
                return
            statuses, stray = validated
            _judge_signatures(run, statuses)
            status_word, message = self._coverage(statuses, len(pdf_bytes), sigs[-1])
            run.put("covers_whole_file", status_word, message, _stray_note(stray))
        finally:
            # Read after the signatures, from the same parse: the objects they needed are
            # read already, so the embedded file costs little more.
            if attachment is not None and found is not None:
                try:
                    found["data"] = embedded_file(reader, attachment)
                except IntegrityError as exc:
                    found["problem"] = exc.message
                except Exception as exc:  # hostile input: reported, never raised
                    found["problem"] = _describe(exc)

    def _validate_each(
        self, sigs: list[Any], run: _Run, signers: list[str]
    ) -> tuple[list[tuple[str, PdfSignatureStatus]], list[str]] | None:
        """Each signature's status and the certificates off its chain; None (reported) when a
        signature's own container was altered."""
        statuses: list[tuple[str, PdfSignatureStatus]] = []
        stray: list[str] = []
        for sig in sigs:
            try:
                status = validate_pdf_signature(sig, self._context(), key_usage_settings=_KEY_USAGE)
            except Exception as exc:
                if not _document_digest_intact(sig):
                    raise
                # The signed bytes still match; what broke is the signature's own container,
                # e.g. a byte of its certificate bundle. Say where, not just "unreadable".
                run.put(
                    "signature_intact",
                    "fail",
                    f"{sig.field_name}: the signed bytes are unchanged, but the signature's "
                    f"own container was altered: {_gap(sig)}. {_describe(exc)}",
                )
                run.skip_rest("signature_intact failed")
                return None
            statuses.append((str(sig.field_name), status))
            if len(sigs) == 1:
                self._remember(status)
            signers.append(str(status.signing_cert.subject.human_friendly))
            stray += _off_chain_certificates(sig, status)
        return statuses, stray

    def _remember(self, status: PdfSignatureStatus) -> None:
        """Cache a signer certificate pyHanko found trusted, for the quick path."""
        path = status.validation_path
        if not (status.intact and status.valid and status.trusted) or path is None:
            return
        cert = status.signing_cert
        on_path = [*path.iter_certs(include_root=True), cert]
        key = crypto_x509.load_der_x509_certificate(cert.dump()).public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            return
        self._trusted[signer_key(cert.dump())] = TrustedSigner(
            public_key=key,
            der=cert.dump(),
            issuer=cert.issuer.dump(),
            serial=cert.serial_number,
            subject=str(cert.subject.human_friendly),
            path_certs=frozenset(c.dump() for c in on_path),
            not_before=max(c.not_valid_before for c in on_path),
            not_after=min(c.not_valid_after for c in on_path),
        )

    @staticmethod
    def _coverage(
        statuses: Sequence[tuple[str, PdfSignatureStatus]], size: int, last_sig: Any
    ) -> tuple[Status, str]:
        last_name, last = statuses[-1]
        if last.coverage != SignatureCoverageLevel.ENTIRE_FILE:
            return "fail", (
                f"something was added after the last signature ({last_name}); "
                f"coverage is {last.coverage.name if last.coverage else 'unknown'}"
            )
        for name, status in statuses[:-1]:
            level = status.modification_level
            if level not in _ALLOWED_AFTER_EARLIER or status.docmdp_ok is False:
                return "fail", (
                    f"the revision signed by {name} was changed afterwards "
                    f"({level.name if level else 'unknown'})"
                )
        return "pass", (
            f"the last signature ({last_name}) covers all {size} bytes except its own "
            f"container ({_gap(last_sig)})"
        )


def _gap(sig: Any) -> str:
    # A PDF signature signs the whole file but the hole it is written into: its /Contents
    # value, which holds the CMS signature and its certificate bundle.
    start, first_len, second_start, _ = (int(x) for x in sig.byte_range)
    return _gap_words(start + first_len, second_start - 1)


def _gap_words(first: int, last: int) -> str:
    return (
        f"bytes {first}-{last}, the /Contents value holding the CMS "
        "signature and its certificate bundle, which no PDF signature can cover; they are "
        "checked by the signature value and the chain to the trust root instead"
    )


def _all_ok(checks: Sequence[Check]) -> bool:
    return all(c.status != "fail" for c in checks) and all(
        c.passed for c in checks if c.name != "matches_archive"
    )


def _stray_note(stray: Sequence[str]) -> str:
    if not stray:
        return ""
    return (
        f"the certificate bundle inside the signature holds "
        f"{len(stray)} certificate(s) that are not on the chain to the trust root "
        f"({'; '.join(stray)}). If one was changed after signing, what was signed is "
        "still unchanged (the bundle is outside the signed byte range), but the file's "
        "SHA-256 no longer matches the archive's or SHA256SUMS: compare them to tell"
    )


def _matches_archive(run: _Run, digest: str, expected_sha256: str | None) -> None:
    if expected_sha256 is None:
        run.put("matches_archive", "skip", "no archived hash given")
    elif expected_sha256.strip().lower() == digest:
        run.put("matches_archive", "pass", f"SHA-256 {digest} matches the archive")
    else:
        run.put(
            "matches_archive",
            "fail",
            f"SHA-256 {digest} differs from the archived {expected_sha256}",
        )


def _proven(
    proof: Proof, size: int, digest: str, expected_sha256: str | None, attachment: str | None
) -> VerificationResult:
    """The result of a record the quick path proved: the same checks, in the same words, as
    the full path gives for it (the cross-check compares them)."""
    run = _Run()
    run.put("parsed", "pass", f"PDF with {proof.revisions} revision(s)")
    run.put("has_signature", "pass", "1 signature(s)")
    run.put("signature_intact", "pass", "every signature matches the bytes it covers")
    run.put("certificate_trusted", "pass", "every signer chains to a trust root")
    run.put(
        "covers_whole_file",
        "pass",
        f"the last signature ({proof.field_name}) covers all {size} bytes except "
        f"its own container ({_gap_words(*proof.gap)})",
    )
    _matches_archive(run, digest, expected_sha256)
    checks = tuple(run.checks[n] for n in CHECK_NAMES)
    return VerificationResult(
        _all_ok(checks),
        checks,
        (proof.signer.subject,),
        digest,
        proof.attachment if attachment is not None else None,
        None,
    )


def _difference(quick: VerificationResult, full: VerificationResult) -> str | None:
    """What the full validation said differently from the quick path, or None."""
    if quick.to_dict() != full.to_dict():
        return f"quick {quick.to_dict()} / full {full.to_dict()}"
    if quick.attachment != full.attachment:
        return "the embedded file read differs"
    return None


def _document_digest_intact(sig: Any) -> bool:
    """Whether the signed byte range still hashes to the digest the signer signed."""
    try:
        for attr in sig.signer_info["signed_attrs"]:
            if attr["type"].native == "message_digest":
                return bool(attr["values"][0].native == sig.compute_digest())
    except Exception:  # a container too damaged to read says nothing either way
        return False
    return False


def _off_chain_certificates(sig: Any, status: PdfSignatureStatus) -> list[str]:
    """Certificates carried in the signature that play no part in the validated chain."""
    path = status.validation_path
    if path is None:
        return []
    on_path = {cert.dump() for cert in path.iter_certs(include_root=True)}
    on_path.add(status.signing_cert.dump())
    out = []
    for choice in sig.signed_data["certificates"] or ():
        cert = choice.chosen
        if isinstance(cert, asn1_x509.Certificate) and cert.dump() not in on_path:
            out.append(str(cert.subject.human_friendly))
    return out


def verify(
    pdf_bytes: bytes,
    trust_roots: Sequence[Certificate],
    expected_sha256: str | None = None,
) -> VerificationResult:
    """Verify one record PDF: signatures intact, trusted, covering the whole file, archived."""
    return Verifier(trust_roots).verify(pdf_bytes, expected_sha256)


def _judge_signatures(run: _Run, statuses: Sequence[tuple[str, PdfSignatureStatus]]) -> None:
    """signature_intact and certificate_trusted, from every signature's status."""
    broken = [
        f"{name}: {'digest mismatch' if not s.intact else 'bad signature value'}"
        for name, s in statuses
        if not (s.intact and s.valid)
    ]
    if broken:
        run.put("signature_intact", "fail", "; ".join(broken))
    else:
        run.put("signature_intact", "pass", "every signature matches the bytes it covers")
    # Trust is only judged for intact signatures: pyHanko does not evaluate the chain of a
    # signature whose bytes no longer match, and "untrusted" there would mislead.
    untrusted = [
        f"{name}: {s.signing_cert.subject.human_friendly} ({s.trust_problem_indic or 'untrusted'})"
        for name, s in statuses
        if s.intact and s.valid and not s.trusted
    ]
    if untrusted:
        run.put("certificate_trusted", "fail", "; ".join(untrusted))
    elif broken:
        run.put("certificate_trusted", "skip", "not run: a signature is not intact")
    else:
        run.put("certificate_trusted", "pass", "every signer chains to a trust root")
