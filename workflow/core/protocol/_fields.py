"""Typed reading of located YAML values, collecting every problem with its line.

Each reader reports wrong types, missing keys and unknown keys as issues instead of raising, so
one validation pass can list everything wrong with a file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from workflow.core.errors import ProtocolIssue

from ._yaml import YList, YMap, is_float_text

IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


class Issues:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.items: list[ProtocolIssue] = []

    def add(self, line: int, message: str) -> None:
        self.items.append(ProtocolIssue(self.filename, line, message))


class MapReader:
    """Read one YAML mapping; ``where`` names it in messages (e.g. ``steps[3] (dilution)``)."""

    def __init__(self, issues: Issues, node: Any, where: str, line: int) -> None:
        self.issues = issues
        self.where = where
        self.ok = isinstance(node, YMap)
        if not self.ok:
            issues.add(getattr(node, "line", line), f"{where} must be a mapping of keys to values")
            self.node: YMap = YMap()
            self.node.line = line
            self.node.key_lines = {}
        else:
            self.node = node
        self.seen: set[str] = set()

    @property
    def line(self) -> int:
        return self.node.line

    def line_of(self, key: str) -> int:
        return self.node.line_of(key)

    def has(self, key: str) -> bool:
        return key in self.node

    def _get(self, key: str, required: bool, allow_null: bool = False) -> Any:
        self.seen.add(key)
        if key not in self.node:
            if required and self.ok:
                self.issues.add(self.line, f"{self.where}: missing required key '{key}'")
            return None
        value = self.node[key]
        if value is None and required and not allow_null:
            # `key:` with nothing after it is as missing as no key, and must say so (found by
            # fuzzing: it ended in a ProtocolError that listed no problem at all).
            self.issues.add(self.line_of(key), f"{self.where}.{key} is empty; a value is required")
        return value

    def raw(self, key: str, required: bool = False) -> Any:
        """The value as written; null is the caller's to judge (e.g. ``max_dose_iu: null``)."""
        return self._get(key, required, allow_null=True)

    def text(self, key: str, required: bool = True, default: str | None = None) -> str | None:
        value = self._get(key, required)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int) or is_float_text(value):
            self.issues.add(
                self.line_of(key), f"{self.where}.{key} must be text, got {_kind(value)}"
            )
            return default
        return str(value)

    def ident(self, key: str, required: bool = True) -> str | None:
        value = self.text(key, required)
        if value is not None and not IDENT.match(value):
            self.issues.add(
                self.line_of(key),
                f"{self.where}.{key} '{value}' must be a lower_snake_case word (a-z, 0-9, _)",
            )
            return None
        return value

    def flag(self, key: str, required: bool = False, default: bool = False) -> bool:
        value = self._get(key, required)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.issues.add(
                self.line_of(key), f"{self.where}.{key} must be true or false, got {_kind(value)}"
            )
            return default
        return value

    def number(self, key: str, required: bool = True) -> Decimal | None:
        value = self._get(key, required)
        if value is None:
            return None
        return to_decimal(self.issues, value, self.line_of(key), f"{self.where}.{key}")

    def whole(self, key: str, required: bool = True) -> int | None:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or is_float_text(value):
            self.issues.add(
                self.line_of(key), f"{self.where}.{key} must be a whole number, got {_kind(value)}"
            )
            return None
        return value

    def sub(self, key: str, required: bool = True) -> MapReader | None:
        value = self._get(key, required)
        if value is None:
            return None
        reader = MapReader(self.issues, value, f"{self.where}.{key}", self.line_of(key))
        return reader if reader.ok else None

    def entries(self, seq: YList | None, where: str) -> Iterator[MapReader]:
        """A reader for each mapping listed in ``seq`` (got from ``self.seq``), named
        ``where[i]`` in messages."""
        for i, node in enumerate(seq or []):
            line = seq.line_of(i) if seq else self.line
            yield MapReader(self.issues, node, f"{where}[{i}]", line)

    def subs(self) -> Iterator[tuple[str, MapReader]]:
        """(key, reader) for each key of this mapping whose value is a mapping (a value that
        is not is reported)."""
        for key in list(self.node):
            sub = self.sub(key)
            if sub is not None:
                yield key, sub

    def allowed(self, key: str, value: str | None, allowed: Sequence[str]) -> bool:
        """False, reported, when ``value`` (read from ``key``) is not one of ``allowed``."""
        if value is None or value in allowed:
            return True
        self.issues.add(
            self.line_of(key),
            f"{self.where}.{key} '{value}' is not allowed (allowed: {', '.join(allowed)})",
        )
        return False

    def seq(self, key: str, required: bool = True) -> YList | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, YList):
            self.issues.add(
                self.line_of(key), f"{self.where}.{key} must be a list, got {_kind(value)}"
            )
            return None
        return value

    def ident_list(self, key: str, required: bool = False) -> tuple[str, ...]:
        seq = self.seq(key, required)
        if seq is None:
            return ()
        out: list[str] = []
        for i, v in enumerate(seq):
            if not isinstance(v, str) or is_float_text(v) or not IDENT.match(v):
                self.issues.add(
                    seq.line_of(i),
                    f"{self.where}.{key}[{i}] must be a lower_snake_case word, got {v!r}",
                )
                continue
            out.append(v)
        return tuple(out)

    def done(self, allowed_extra: tuple[str, ...] = ()) -> None:
        """Report keys nobody read: unknown keys are errors, never silently ignored."""
        if not self.ok:
            return
        known = sorted(self.seen | set(allowed_extra))
        for key in self.node:
            if key not in self.seen and key not in allowed_extra:
                self.issues.add(
                    self.line_of(key),
                    f"{self.where}: unknown key '{key}' (allowed: {', '.join(known)})",
                )


def to_decimal(issues: Issues, value: Any, line: int, where: str) -> Decimal | None:
    if isinstance(value, bool) or not (isinstance(value, int) or is_float_text(value)):
        issues.add(line, f"{where} must be a number, got {_kind(value)}")
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        issues.add(line, f"{where} must be a number, got {value!r}")
        return None
    if not number.is_finite():
        issues.add(line, f"{where} must be a finite number, got {value!r}")
        return None
    return number


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"true/false ({value})"
    if is_float_text(value) or isinstance(value, int):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"text ({value!r})"
    if isinstance(value, YMap):
        return "a mapping"
    if isinstance(value, YList):
        return "a list"
    return type(value).__name__
