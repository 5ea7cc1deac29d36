"""People's names: when two are the same, and when one imitates another.

Pure rules (no I/O), used wherever a name is registered: patients (store/patients.py) and
accounts' printed names (identity). One place, so the command line, the pages, the JSON API
and imports all say the same.

- :func:`name_key` is the comparison form: Unicode NFKC with case folding and runs of spaces
  made one, so "Ann  Lee", "ANN LEE" and "Ａｎｎ Lee" (full-width) are one printed name.
- :func:`script_mix` finds a name that mixes writing systems so that letters of one look like
  letters of another, e.g. a Cyrillic "а" inside "Pаul": it prints exactly like "Paul" but is
  another name, so two records could seem to be one person's, or one person's seem two. It is
  not an error (people do have names in two scripts): the registrar is warned and must confirm.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass

from confusable_homoglyphs import categories, confusables

from workflow.core.errors import InputError

# Scripts that are written together in one person's name as a matter of course.
_WRITTEN_TOGETHER = (
    frozenset({"HAN", "HIRAGANA", "KATAKANA"}),  # Japanese
    frozenset({"HAN", "HANGUL"}),  # Korean
)
_NEUTRAL = frozenset({"COMMON", "INHERITED"})


def name_key(name: str) -> str:
    """The form two names are compared in (NFKC, case-folded, spaces collapsed)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return " ".join(folded.split())


def with_id(name: str, user_id: str) -> str:
    """A signer as records and pages print them: the printed name and the account id."""
    return f"{name} ({user_id})"


@dataclass(frozen=True)
class Lookalike:
    char: str
    script: str
    looks_like: str
    other_script: str

    def describe(self) -> str:
        return (
            f"{self.char!r} (U+{ord(self.char):04X}, {self.script.title()}) looks like "
            f"{self.looks_like!r} ({self.other_script.title()})"
        )


@dataclass(frozen=True)
class ScriptMix:
    scripts: tuple[str, ...]
    lookalikes: tuple[Lookalike, ...]

    def describe(self) -> str:
        scripts = " and ".join(s.title() for s in self.scripts)
        shown = "; ".join(x.describe() for x in self.lookalikes[:4])
        more = f" and {len(self.lookalikes) - 4} more" if len(self.lookalikes) > 4 else ""
        return f"mixes {scripts} letters that look alike: {shown}{more}"


def scripts_of(name: str) -> frozenset[str]:
    return frozenset(categories.alias(ch) for ch in name if ch.isalpha()) - _NEUTRAL


def script_mix(name: str) -> ScriptMix | None:
    """The letters of a name that look like letters of its main script but are not, or None.

    The main script is the one most of its letters are in (all of them on a tie); a letter of
    another script counts when that main script has a letter drawn like it.
    """
    scripts = scripts_of(name)
    if len(scripts) < 2 or any(scripts <= together for together in _WRITTEN_TOGETHER):
        return None
    counts = Counter(categories.alias(ch) for ch in name if ch.isalpha())
    top = max(counts[s] for s in scripts)
    main = sorted(s for s in scripts if counts[s] == top)
    found: dict[str, Lookalike] = {}
    for script in main:
        hits = confusables.is_confusable(name, greedy=True, preferred_aliases=[script.lower()])
        for hit in hits or ():
            char, alias = hit["character"], hit["alias"]
            if alias in _NEUTRAL or alias == script or char in found:
                continue
            glyphs = [g["c"] for g in hit["homoglyphs"] if categories.alias(g["c"][0]) == script]
            if glyphs:
                found[char] = Lookalike(char, alias, glyphs[0], script)
    if not found:
        return None
    ordered = tuple(found[ch] for ch in dict.fromkeys(name) if ch in found)
    return ScriptMix(tuple(sorted(scripts)), ordered)


class MixedScriptName(InputError):
    """A name mixes look-alike scripts and the registrar has not confirmed it."""

    code = "mixed_script_name"

    def __init__(self, field: str, mix: ScriptMix, how: str = "") -> None:
        super().__init__(
            field,
            f"{mix.describe()}; it may imitate another name. Check it against the identity "
            f"document and confirm to register it exactly as typed{f' ({how})' if how else ''}",
        )
        self.mix = mix

    def confirm_with(self, how: str) -> MixedScriptName:
        """The same warning, telling the registrar how to confirm on their edge."""
        return MixedScriptName(self.field, self.mix, how)

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out["details"] = [x.describe() for x in self.mix.lookalikes]
        return out


def check_script_mix(field: str, name: str, *, confirmed: bool) -> None:
    """Refuse an unconfirmed name that mixes look-alike scripts (MixedScriptName)."""
    if confirmed:
        return
    mix = script_mix(name)
    if mix is not None:
        raise MixedScriptName(field, mix)


def check_name_parts(parts: dict[str, str], *, confirmed: bool) -> None:
    """As :func:`check_script_mix` for a name typed in parts (family and given names): each
    part, then the whole, which catches "Maria" + "Рора" (each part in one script)."""
    if confirmed:
        return
    for field, text in parts.items():
        check_script_mix(field, text, confirmed=False)
    mix = script_mix(" ".join(parts.values()))
    if mix is not None:
        first = mix.lookalikes[0].char
        field = next(f for f, text in parts.items() if first in text)
        raise MixedScriptName(field, mix)
