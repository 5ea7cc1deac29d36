"""Right-to-left text for reportlab, which draws every string left to right.

Hebrew and Arabic are stored in logical order (the order they are typed). To print them,
Arabic letters are first given their joined forms (arabic-reshaper: initial, medial, final,
isolated, and the lam-alef ligatures), then each line is put into visual order by the Unicode
Bidirectional Algorithm (python-bidi). Lines are broken in logical order *before* reordering,
so a long right-to-left note wraps with its first words on the first line.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable

import arabic_reshaper
from arabic_reshaper import ArabicReshaper
from arabic_reshaper.ligatures import LIGATURES
from bidi import get_display

_RTL_CLASSES = frozenset({"R", "AL", "AN", "RLE", "RLO", "RLI"})
_ARABIC_CLASSES = frozenset({"AL", "AN"})


# Every right-to-left letter lies in these blocks (Hebrew to Arabic Extended, their
# presentation forms, the historic RTL scripts, the embedding controls): a fast first look.
_MAYBE_RTL = re.compile(
    "[\u0590-\u08ff\u200f\u202b\u202e\u2067\ufb1d-\ufdff\ufe70-\ufeff"
    "\U00010800-\U00010fff\U0001e800-\U0001efff]"
)


def has_rtl(text: str) -> bool:
    if not _MAYBE_RTL.search(text):
        return False
    return any(unicodedata.bidirectional(ch) in _RTL_CLASSES for ch in text)


def base_is_rtl(text: str) -> bool:
    """The paragraph direction the Unicode algorithm gives: that of its first strong letter."""
    for ch in text:
        cls = unicodedata.bidirectional(ch)
        if cls == "L":
            return False
        if cls in ("R", "AL"):
            return True
    return False


@functools.cache
def _reshaper(glyphs: frozenset[int]) -> ArabicReshaper:
    # Only the ligatures the font can print (DejaVu Sans has lam-alef but not, for example,
    # the single-glyph "Allah" ligature U+FDF2, which would otherwise print as a box).
    config: dict[str, bool | str] = {"support_ligatures": True}
    for name, (_text, forms) in LIGATURES:
        config[name] = all(ord(f) in glyphs for f in forms if f)
    isolated = (v[0] for v in arabic_reshaper.letters.LETTERS_ARABIC.values() if v[0])
    config["use_unshaped_instead_of_isolated"] = not all(ord(c) in glyphs for c in isolated)
    return ArabicReshaper(configuration=config)


def shape(text: str, glyphs: frozenset[int]) -> str:
    """Arabic letters in their joined forms (still logical order); other text unchanged."""
    if not _MAYBE_RTL.search(text) or not any(
        unicodedata.bidirectional(ch) in _ARABIC_CLASSES for ch in text
    ):
        return text
    return str(_reshaper(glyphs).reshape(text))


def visual(line: str, rtl: bool) -> str:
    """One line in the order it is drawn, left to right."""
    if not has_rtl(line):
        return line
    return str(get_display(line, base_dir="R" if rtl else "L"))


def wrap(text: str, width: float, measure: Callable[[str], float]) -> list[str]:
    """Greedy word wrap in logical order; a word wider than ``width`` is cut by characters."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = word if not line else f"{line} {word}"
            if measure(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            while measure(word) > width and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and measure(word[:cut]) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines
