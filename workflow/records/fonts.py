"""Fonts for printed records and labels: one chain per text style, chosen per character.

No single font prints every name a hospital registers: DejaVu Sans (fonts-dejavu-core) has
Latin, Greek, Cyrillic, Hebrew and Arabic but no Chinese, Japanese or Korean; WenQuanYi Micro
Hei (fonts-wqy-microhei) has those. Each run of text is set in the first font of the chain
that has a glyph for it, so a name is never printed as empty boxes. reportlab embeds TrueType
outlines only (not the CFF outlines of Noto CJK), which is why the CJK font is WenQuanYi.

A font file that is missing is not silently replaced by a font without the glyphs: a character
that only a missing font could print raises :class:`MissingFontError` naming the file and the
Debian package (``make sysdeps`` installs them). A character that no configured font has at
all (an emoji in a note, a script no font here covers) is printed as its code point,
``[U+1F600]``, so the record still says exactly what was typed.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

from workflow.core.errors import BedsideError


class MissingFontError(BedsideError):
    """A character needs a font whose file is not installed on this machine."""

    code = "missing_font"


@dataclass(frozen=True)
class FontFile:
    """A TrueType file (``.ttf``, or ``.ttc`` with ``subfont``) and the package providing it."""

    path: str
    package: str
    subfont: int = 0


@dataclass(frozen=True)
class _Loaded:
    name: str
    glyphs: frozenset[int]


@functools.cache
def _load(path: str, subfont: int) -> _Loaded:
    # reportlab keeps registered fonts process-wide; parse each TrueType file once.
    name = f"Bedside-{Path(path).stem}" + (f"-{subfont}" if subfont else "")
    font = TTFont(name, path, subfontIndex=subfont)
    pdfmetrics.registerFont(font)
    return _Loaded(name, frozenset(font.face.charToGlyph))


def _winansi(ch: str) -> bool:
    try:
        ch.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def code_point(ch: str) -> str:
    return f"[U+{ord(ch):04X}]"


def describe(ch: str) -> str:
    return f"{ch!r} (U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed character')})"


class FontChain:
    """The fonts of one text style, in the order they are tried for each character."""

    def __init__(
        self, own: Sequence[FontFile], standard: str, fallbacks: Sequence[FontFile]
    ) -> None:
        self.standard = standard
        self._fallbacks = [f for f in fallbacks if f not in own]
        files = [*own, *self._fallbacks]
        self.missing = tuple(f for f in files if not Path(f.path).is_file())
        present = [f for f in own if Path(f.path).is_file()]
        # The style's own font, or the standard PDF font when none of its files is installed
        # (it prints only Windows-1252 text; anything else goes down the chain or fails).
        self._primary_glyphs: frozenset[int] | None = None
        self.primary = standard
        if present:
            loaded = _load(present[0].path, present[0].subfont)
            self.primary, self._primary_glyphs = loaded.name, loaded.glyphs
        self._glyphs: dict[str, frozenset[int]] = {}
        self._chosen: dict[str, str | None] = {}

    def _has(self, font: str, ch: str) -> bool:
        if font == self.primary:
            if self._primary_glyphs is None:
                return _winansi(ch)
            return ord(ch) in self._primary_glyphs
        return ord(ch) in self._glyphs.get(font, frozenset())

    def font_for(self, ch: str) -> str | None:
        """The first font of the chain with a glyph for ``ch`` (None: no installed font has)."""
        if ch in self._chosen:
            return self._chosen[ch]
        found: str | None = self.primary if self._has(self.primary, ch) else None
        if found is None:
            # Fallbacks are parsed only when a character needs them (WenQuanYi is 5 MB).
            for f in self._fallbacks:
                if Path(f.path).is_file():
                    loaded = _load(f.path, f.subfont)
                    self._glyphs[loaded.name] = loaded.glyphs
                    if ord(ch) in loaded.glyphs:
                        found = loaded.name
                        break
        self._chosen[ch] = found
        return found

    def glyphs_for(self, ch: str) -> frozenset[int]:
        """The glyphs of the font that prints ``ch`` (what Arabic shaping may use)."""
        font = self.font_for(ch)
        if font == self.primary:
            return self._primary_glyphs or frozenset()
        return self._glyphs.get(font or "", frozenset())

    def runs(self, text: str) -> list[tuple[str, str]]:
        """``text`` cut into (font name, text) runs, each printable in its font.

        Spaces and characters the current font has stay in the current run, so a name in one
        script is one run. Raises MissingFontError when a character could only be printed by a
        font whose file is missing.
        """
        if self._primary_glyphs is not None and self._primary_glyphs.issuperset(map(ord, text)):
            return [(self.primary, text)] if text else []  # the common case, at C speed
        out: list[tuple[str, str]] = []
        current: str | None = None
        buf: list[str] = []
        for ch in text:
            if current is not None and (ch == " " or self._has(current, ch)):
                buf.append(ch)
                continue
            font = self.font_for(ch)
            piece = ch
            if font is None:
                if self.missing:
                    raise MissingFontError(
                        f"cannot print {describe(ch)}: it needs a font that is not installed: "
                        + ", ".join(f"{f.path} (Debian package {f.package})" for f in self.missing)
                        + "; install the package(s) (make sysdeps)"
                    )
                font, piece = self.primary, code_point(ch)
            if font != current and buf:
                assert current is not None
                out.append((current, "".join(buf)))
                buf = []
            current = font
            buf.append(piece)
        if buf:
            assert current is not None
            out.append((current, "".join(buf)))
        return out

    def width(self, text: str, size: float) -> float:
        return float(sum(pdfmetrics.stringWidth(t, f, size) for f, t in self.runs(text)))
