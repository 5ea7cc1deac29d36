"""Record layouts as data: templates/records/<kind>.yaml loaded into frozen, checked objects.

The renderer never hard-codes a size, a width or a printed title; it reads them from here. A
bad layout raises one :class:`LayoutError` listing every problem as ``FILE:LINE: key: message``.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any

from workflow.core.errors import ProtocolError, ProtocolIssue
from workflow.core.protocol._yaml import YList, YMap, load_located
from workflow.resources import templates_dir

from .document import RECORD_KINDS
from .fonts import FontFile

PAGE_SIZES: frozenset[str] = frozenset({"A4", "Letter"})
# Fonts every PDF viewer has; anything else must come as a TrueType file.
STANDARD_FONTS: frozenset[str] = frozenset(
    {
        "Helvetica",
        "Helvetica-Bold",
        "Helvetica-Oblique",
        "Helvetica-BoldOblique",
        "Times-Roman",
        "Times-Bold",
        "Times-Italic",
        "Times-BoldItalic",
        "Courier",
        "Courier-Bold",
        "Courier-Oblique",
        "Courier-BoldOblique",
    }
)
PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "drug",
        "kind_title",
        "title",
        "record_id",
        "case_id",
        "subject",
        "record_hash",
        "record_hash_short",
        "page",
        "pages",
    }
)
_WIDTH_TOLERANCE = Decimal("0.005")


class LayoutError(ProtocolError):
    """A record layout file is not valid (same FILE:LINE form as a protocol error)."""

    code = "invalid_layout"


@dataclass(frozen=True)
class FontSpec:
    standard: str
    ttf: tuple[str, ...]
    # The Debian package that provides the files, named when one is missing.
    package: str = ""


@dataclass(frozen=True)
class Margins:
    top_mm: float
    bottom_mm: float
    left_mm: float
    right_mm: float


@dataclass(frozen=True)
class SectionSpec:
    key: str
    title: str
    required: bool


@dataclass(frozen=True)
class Layout:
    source: str
    kind: str
    kind_title: str
    page_size: str
    margins: Margins
    font_regular: FontSpec
    font_bold: FontSpec
    font_mono: FontSpec
    # Tried, in order, for any character a style's own font has no glyph for.
    font_fallbacks: tuple[FontFile, ...]
    size_title: float
    size_heading: float
    size_body: float
    size_small: float
    size_header: float
    size_footer: float
    color_text: str
    color_muted: str
    color_rule: str
    color_heading_background: str
    color_flag: str
    header_left: str
    header_right: str
    header_second: str
    footer_left: str
    footer_right: str
    subject_title: str
    subject_pairs_per_line: int
    subject_widths: tuple[float, ...]
    row_headings: tuple[str, str, str]
    row_widths: tuple[float, float, float]
    sections: tuple[SectionSpec, ...]
    table_widths: Mapping[str, tuple[float, ...]]
    signatures_title: str
    signature_headings: tuple[str, str, str, str, str]
    signature_widths: tuple[float, float, float, float, float]
    integrity_title: str
    qr_size_mm: float
    protocol_label: str
    chain_label: str
    record_label: str
    integrity_note: str

    def section(self, key: str) -> SectionSpec | None:
        for spec in self.sections:
            if spec.key == key:
                return spec
        return None


class _Reader:
    """Typed access to a located YAML tree that records, rather than raises, each problem."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.issues: list[ProtocolIssue] = []

    def issue(self, node: YMap | YList | None, key: str, message: str) -> None:
        line = 1
        if isinstance(node, YMap):
            line = node.line_of(key.rsplit(".", 1)[-1])
        elif isinstance(node, YList):
            line = node.line
        self.issues.append(ProtocolIssue(self.filename, line, f"{key}: {message}"))

    def known(self, node: YMap, path: str, keys: frozenset[str]) -> None:
        # An unknown key is usually a typo or a flow mapping split by an unquoted comma
        # ("title: A (b, c)"); either way the file does not say what its author meant.
        for key in node:
            if key not in keys:
                where = f"{path}.{key}" if path else key
                self.issues.append(
                    ProtocolIssue(self.filename, node.line_of(key), f"{where}: unknown key")
                )

    def map(self, parent: YMap, key: str, path: str) -> YMap:
        value = parent.get(key)
        if not isinstance(value, YMap):
            self.issue(parent, path, "missing or not a mapping")
            empty = YMap()
            empty.line = parent.line_of(key)
            empty.key_lines = {}
            return empty
        return value

    def text(self, parent: YMap, key: str, path: str, *, pattern: bool = False) -> str:
        value = parent.get(key)
        if not isinstance(value, str) or not value.strip():
            self.issue(parent, path, "missing or not text")
            return ""
        if pattern:
            try:
                names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
            except ValueError as exc:
                self.issue(parent, path, f"bad pattern: {exc}")
                return ""
            unknown = names - PLACEHOLDERS
            if unknown:
                self.issue(
                    parent,
                    path,
                    f"unknown placeholder(s) {sorted(unknown)}; allowed: "
                    f"{', '.join(sorted(PLACEHOLDERS))}",
                )
                return ""
        return str(value)

    def number(self, parent: YMap, key: str, path: str, low: float, high: float) -> float:
        value = parent.get(key)
        try:
            if isinstance(value, bool) or value is None:
                raise InvalidOperation
            number = Decimal(str(value))
        except InvalidOperation:
            self.issue(parent, path, "missing or not a number")
            return low
        if not Decimal(str(low)) <= number <= Decimal(str(high)):
            self.issue(parent, path, f"{number} is outside {low}..{high}")
            return low
        return float(number)

    def widths(self, parent: YMap, key: str, path: str, count: int | None) -> tuple[float, ...]:
        value = parent.get(key)
        if not isinstance(value, YList) or not value:
            self.issue(parent, path, "missing or not a list of fractions")
            return ()
        out: list[Decimal] = []
        for item in value:
            try:
                if isinstance(item, bool):
                    raise InvalidOperation
                fraction = Decimal(str(item))
            except InvalidOperation:
                self.issue(parent, path, f"{item!r} is not a number")
                return ()
            if not Decimal(0) < fraction <= Decimal(1):
                self.issue(parent, path, f"{fraction} is not a fraction in (0, 1]")
                return ()
            out.append(fraction)
        if count is not None and len(out) != count:
            self.issue(parent, path, f"needs {count} widths, has {len(out)}")
            return ()
        total = sum(out, Decimal(0))
        if abs(total - 1) > _WIDTH_TOLERANCE:
            self.issue(parent, path, f"widths add up to {total}, not 1")
            return ()
        return tuple(float(f) for f in out)

    def texts(self, parent: YMap, key: str, path: str, count: int) -> tuple[str, ...]:
        value = parent.get(key)
        if (
            not isinstance(value, YList)
            or len(value) != count
            or not all(isinstance(v, str) for v in value)
        ):
            self.issue(parent, path, f"needs a list of {count} texts")
            return ("",) * count
        return tuple(str(v) for v in value)

    def color(self, parent: YMap, key: str, path: str) -> str:
        value = self.text(parent, key, path)
        if value and not (
            len(value) == 7 and value[0] == "#" and all(c in string.hexdigits for c in value[1:])
        ):
            self.issue(parent, path, f"{value!r} is not a #rrggbb colour")
            return "#000000"
        return value or "#000000"

    def font(self, parent: YMap, key: str, path: str) -> FontSpec:
        node = self.map(parent, key, path)
        self.known(node, path, frozenset({"standard", "ttf", "package"}))
        standard = self.text(node, "standard", f"{path}.standard")
        if standard and standard not in STANDARD_FONTS:
            self.issue(
                node,
                f"{path}.standard",
                f"{standard!r} is not a standard PDF font; "
                f"allowed: {', '.join(sorted(STANDARD_FONTS))}",
            )
        files = node.get("ttf", [])
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            self.issue(node, f"{path}.ttf", "must be a list of TrueType file paths")
            files = []
        package = node.get("package", "")
        if not isinstance(package, str):
            self.issue(node, f"{path}.package", "must be a Debian package name")
            package = ""
        return FontSpec(standard or "Helvetica", tuple(str(f) for f in files), package)

    def mappings(
        self, seq: YList, path: str, keys: frozenset[str], shape: str
    ) -> Iterator[tuple[str, YMap]]:
        """(``path[i]``, entry) for each entry of ``seq`` that is a mapping with only ``keys``;
        an entry that is not a mapping is reported as not being ``shape``."""
        for i, item in enumerate(seq):
            where = f"{path}[{i}]"
            if not isinstance(item, YMap):
                self.issue(seq, where, f"must be {shape}")
                continue
            self.known(item, where, keys)
            yield where, item

    def fallbacks(self, parent: YMap, key: str, path: str) -> tuple[FontFile, ...]:
        value = parent.get(key, YList())
        if not isinstance(value, YList):
            self.issue(parent, path, "must be a list of {ttf, package, subfont}")
            return ()
        out: list[FontFile] = []
        keys = frozenset({"ttf", "package", "subfont"})
        for where, item in self.mappings(value, path, keys, "a mapping with ttf and package"):
            ttf = self.text(item, "ttf", f"{where}.ttf")
            package = self.text(item, "package", f"{where}.package")
            subfont = item.get("subfont", 0)
            if isinstance(subfont, bool) or not isinstance(subfont, int) or subfont < 0:
                self.issue(item, f"{where}.subfont", "must be a font index, 0 or more")
                subfont = 0
            out.append(FontFile(ttf, package, subfont))
        return tuple(out)


# The mappings under the top level, read in this order (the issue list keeps it).
_PARTS = (
    "fonts",
    "sizes",
    "colors",
    "header",
    "footer",
    "subject",
    "rows",
    "tables",
    "signatures",
    "integrity",
)
# The keys each mapping may have (``margins`` is page.margins_mm).
_KNOWN = (
    ("page", "page", {"size", "margins_mm"}),
    ("margins", "page.margins_mm", {"top", "bottom", "left", "right"}),
    ("fonts", "fonts", {"regular", "bold", "mono", "fallbacks"}),
    ("sizes", "sizes", {"title", "heading", "body", "small", "header", "footer"}),
    ("colors", "colors", {"text", "muted", "rule", "heading_background", "flag"}),
    ("header", "header", {"left", "right", "second"}),
    ("footer", "footer", {"left", "right"}),
    ("subject", "subject", {"title", "pairs_per_line", "widths"}),
    ("rows", "rows", {"headings", "widths"}),
    ("tables", "tables", {"default_widths", "widths"}),
    ("signatures", "signatures", {"title", "headings", "widths"}),
    (
        "integrity",
        "integrity",
        {"title", "qr_size_mm", "protocol_label", "chain_label", "record_label", "note"},
    ),
)


def _parse(tree: Any, filename: str) -> Layout:
    r = _Reader(filename)
    if not isinstance(tree, YMap):
        raise LayoutError([ProtocolIssue(filename, 1, "a layout mapping is expected")])
    kind = r.text(tree, "kind", "kind")
    if kind and kind not in RECORD_KINDS:
        r.issue(tree, "kind", f"unknown kind {kind!r}; allowed: {', '.join(sorted(RECORD_KINDS))}")
    page = r.map(tree, "page", "page")
    size = r.text(page, "size", "page.size")
    if size and size not in PAGE_SIZES:
        r.issue(page, "page.size", f"{size!r} is not one of {', '.join(sorted(PAGE_SIZES))}")
    n = {"page": page, "margins": r.map(page, "margins_mm", "page.margins_mm")}
    n.update((name, r.map(tree, name, name)) for name in _PARTS)
    for name, path, keys in _KNOWN:
        r.known(n[name], path, frozenset(keys))
    sections = _sections(r, tree)
    table_widths = _table_widths(r, n["tables"])
    pairs = r.number(n["subject"], "pairs_per_line", "subject.pairs_per_line", 1, 4)
    subject_widths = r.widths(n["subject"], "widths", "subject.widths", int(pairs) * 2)
    layout = Layout(
        source=filename,
        kind=kind,
        kind_title=r.text(tree, "kind_title", "kind_title"),
        page_size=size or "A4",
        **_look(r, n),
        **_frame(r, n, int(pairs), subject_widths),
        sections=sections,
        table_widths=MappingProxyType(table_widths),
        **_signing(r, n),
    )
    r.known(tree, "", _TOP_KEYS)
    if r.issues:
        raise LayoutError(r.issues)
    return layout


def _sections(r: _Reader, tree: YMap) -> tuple[SectionSpec, ...]:
    sections: list[SectionSpec] = []
    seen: set[str] = set()
    raw_sections = tree.get("sections")
    if not isinstance(raw_sections, YList):
        r.issue(tree, "sections", "missing or not a list")
        return ()
    keys = frozenset({"key", "title", "required"})
    for path, item in r.mappings(raw_sections, "sections", keys, "a mapping with key and title"):
        key = r.text(item, "key", f"{path}.key")
        title = r.text(item, "title", f"{path}.title")
        required = item.get("required", False)
        if not isinstance(required, bool):
            r.issue(item, f"{path}.required", "must be true or false")
            required = False
        if key in seen:
            r.issue(item, f"{path}.key", f"section {key!r} is listed twice")
        seen.add(key)
        sections.append(SectionSpec(key, title, required))
    return tuple(sections)


def _table_widths(r: _Reader, tables: YMap) -> dict[str, tuple[float, ...]]:
    table_widths: dict[str, tuple[float, ...]] = {}
    if tables.get("default_widths", "equal") != "equal":
        r.issue(tables, "tables.default_widths", "only 'equal' is supported")
    raw_widths = tables.get("widths")
    if raw_widths is None:
        pass
    elif not isinstance(raw_widths, YMap):
        r.issue(tables, "tables.widths", "must map a table key to its column widths")
    else:
        for tkey in raw_widths:
            table_widths[tkey] = r.widths(raw_widths, tkey, f"tables.widths.{tkey}", None)
    return table_widths


def _look(r: _Reader, n: dict[str, YMap]) -> dict[str, Any]:
    """Margins, fonts, sizes and colours."""
    margins, fonts, sizes, colors = n["margins"], n["fonts"], n["sizes"], n["colors"]
    return {
        "margins": Margins(
            *(
                r.number(margins, side, f"page.margins_mm.{side}", 5, 60)
                for side in ("top", "bottom", "left", "right")
            )
        ),
        "font_regular": r.font(fonts, "regular", "fonts.regular"),
        "font_bold": r.font(fonts, "bold", "fonts.bold"),
        "font_mono": r.font(fonts, "mono", "fonts.mono"),
        "font_fallbacks": r.fallbacks(fonts, "fallbacks", "fonts.fallbacks"),
        "size_title": r.number(sizes, "title", "sizes.title", 6, 36),
        "size_heading": r.number(sizes, "heading", "sizes.heading", 5, 24),
        "size_body": r.number(sizes, "body", "sizes.body", 5, 18),
        "size_small": r.number(sizes, "small", "sizes.small", 4, 14),
        "size_header": r.number(sizes, "header", "sizes.header", 4, 14),
        "size_footer": r.number(sizes, "footer", "sizes.footer", 4, 14),
        "color_text": r.color(colors, "text", "colors.text"),
        "color_muted": r.color(colors, "muted", "colors.muted"),
        "color_rule": r.color(colors, "rule", "colors.rule"),
        "color_heading_background": r.color(
            colors, "heading_background", "colors.heading_background"
        ),
        "color_flag": r.color(colors, "flag", "colors.flag"),
    }


def _frame(
    r: _Reader, n: dict[str, YMap], pairs: int, subject_widths: tuple[float, ...]
) -> dict[str, Any]:
    """Header, footer, the subject block and the rows' headings and widths."""
    header, footer, rows = n["header"], n["footer"], n["rows"]
    return {
        "header_left": r.text(header, "left", "header.left", pattern=True),
        "header_right": r.text(header, "right", "header.right", pattern=True),
        "header_second": r.text(header, "second", "header.second", pattern=True),
        "footer_left": r.text(footer, "left", "footer.left", pattern=True),
        "footer_right": r.text(footer, "right", "footer.right", pattern=True),
        "subject_title": r.text(n["subject"], "title", "subject.title"),
        "subject_pairs_per_line": pairs,
        "subject_widths": subject_widths,
        "row_headings": r.texts(rows, "headings", "rows.headings", 3),
        "row_widths": r.widths(rows, "widths", "rows.widths", 3),
    }


def _signing(r: _Reader, n: dict[str, YMap]) -> dict[str, Any]:
    """The signatures table and the integrity block (QR code, hashes, note)."""
    sigs, integrity = n["signatures"], n["integrity"]
    return {
        "signatures_title": r.text(sigs, "title", "signatures.title"),
        "signature_headings": r.texts(sigs, "headings", "signatures.headings", 5),
        "signature_widths": r.widths(sigs, "widths", "signatures.widths", 5),
        "integrity_title": r.text(integrity, "title", "integrity.title"),
        "qr_size_mm": r.number(integrity, "qr_size_mm", "integrity.qr_size_mm", 15, 80),
        "protocol_label": r.text(integrity, "protocol_label", "integrity.protocol_label"),
        "chain_label": r.text(integrity, "chain_label", "integrity.chain_label"),
        "record_label": r.text(integrity, "record_label", "integrity.record_label"),
        "integrity_note": r.text(integrity, "note", "integrity.note"),
    }


_TOP_KEYS = frozenset({"kind", "kind_title", "page", "sections", *_PARTS})


def load_layout_file(path: Path) -> Layout:
    """Load and check one layout file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LayoutError([ProtocolIssue(str(path), 1, f"cannot read layout: {exc}")]) from exc
    tree, issues = load_located(text, str(path))
    if issues:
        raise LayoutError(issues)
    return _parse(tree, str(path))


_CACHE: dict[str, Layout] = {}


def load_layout(kind: str) -> Layout:
    """The shipped layout for a record kind (parsed once per process)."""
    if kind not in RECORD_KINDS:
        raise LayoutError([ProtocolIssue("templates/records", 1, f"kind: no layout for {kind!r}")])
    if kind not in _CACHE:
        layout = load_layout_file(templates_dir() / "records" / f"{kind}.yaml")
        if layout.kind != kind:
            raise LayoutError(
                [
                    ProtocolIssue(
                        layout.source, 1, f"kind: file says {layout.kind!r}, expected {kind!r}"
                    )
                ]
            )
        _CACHE[kind] = layout
    return _CACHE[kind]
