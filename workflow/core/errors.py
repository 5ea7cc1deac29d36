"""One exception tree for the whole product.

Every error a user can cause is a :class:`BedsideError`; the command line and the web turn them
into messages in one place each. ``exit_code`` follows the command-line contract: 1 a check
failed (verification, a hold, a refused step), 2 bad input or usage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass


class BedsideError(Exception):
    """Base of every error Bedside raises on purpose."""

    exit_code = 1
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class InputError(BedsideError):
    """A value a person typed is missing, malformed or outside its allowed range."""

    exit_code = 2
    code = "invalid_input"

    def __init__(
        self, field: str, message: str, allowed: str | None = None, *, label: str | None = None
    ) -> None:
        # A protocol item is named in words (its label); ``field`` keeps its id for machines.
        text = f"{label or field}: {message}"
        if allowed:
            text += f" (allowed: {allowed})"
        super().__init__(text)
        self.field = field
        self.allowed = allowed

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "field": self.field,
            "allowed": self.allowed,
        }


@dataclass(frozen=True)
class ProtocolIssue:
    """One problem found in a protocol file, with where it is."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class FileError(BedsideError):
    """A file (protocol, overlay, site settings) is not valid; carries every problem found,
    each with its file and line, not just the first."""

    exit_code = 2

    def __init__(self, issues: Sequence[ProtocolIssue | ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "issues": [asdict(i) for i in self.issues],
        }


class ProtocolError(FileError):
    """A protocol or overlay file is not valid."""

    code = "invalid_protocol"


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a settings file, with where it is and the key it concerns."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.message}"


class ConfigError(FileError):
    """The site's settings file (``bedside.yaml``) is not valid."""

    code = "invalid_settings"


class StepRefused(BedsideError):
    """The case machine refused an action: out of order, wrong role, bad item, rule, schedule.

    ``reason`` is a stable snake_case word; ``field`` names the item when one value is at fault
    (then the refusal is bad input and exits 2); ``details`` lists e.g. double-check differences.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        field: str | None = None,
        details: Sequence[str] = (),
        fields: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.details = tuple(details)
        # Every item at fault when a form had several problems (``details`` in the same order).
        self.fields = tuple(fields) or ((field,) if field is not None else ())
        self.exit_code = 2 if field is not None else 1

    @property
    def code(self) -> str:  # type: ignore[override]
        return self.reason

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.reason, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.details:
            out["details"] = list(self.details)
        if len(self.fields) > 1:
            out["fields"] = list(self.fields)
        return out


def raise_all(problems: Sequence[StepRefused], what: str) -> None:
    """Raise nothing, the one problem, or one refusal listing every problem at once (``what``
    says what was not done), so a person fixes a form in one go."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise StepRefused(
            problems[0].reason,
            f"{what}; {len(problems)} entries need attention: "
            + "; ".join(p.message for p in problems),
            field=problems[0].field,
            details=[p.message for p in problems],
            fields=[str(p.field) for p in problems],
        )


class ConflictError(BedsideError):
    """Someone else changed the case first (optimistic concurrency); reload and retry."""

    code = "conflict"


class AuthError(BedsideError):
    """Unknown user, wrong password, locked or deactivated account, or missing permission."""

    code = "not_authorised"


class Blinded(AuthError):
    """Refused because the person may sign an independent check of this case now, and what
    they asked for (a label reprint, an export) shows what that check must find at the
    source. Asked again once the check is signed, or by someone who cannot sign it."""

    code = "blinded"


class Unavailable(BedsideError):
    """The database stopped answering part-way through (a server restart, the network, a lock
    held past the busy timeout). A write in flight committed whole or not at all; reload and
    try again: a retry on a stale version is refused as a conflict, never recorded twice."""

    code = "unavailable"


class NotFound(BedsideError):
    code = "not_found"
    exit_code = 2


class IntegrityError(BedsideError):
    """Stored data failed a check (hash chain, signature, archive entry)."""

    code = "integrity_failed"
