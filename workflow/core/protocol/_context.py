"""What every protocol section's checker shares: one error collector and the cross-references.

Each section of a protocol file (head, dosing, steps and items, rules, ...) is read by its own
module. They all report into one ``Issues`` list, so a file's problems are listed together, and
they leave here what later sections look up: the sources and roles defined, the quantities a
bound may name, every citation (checked once all sources are known) and each step's node (for
the line of a later cross-step message). The overlay reader uses the same context.
"""

from __future__ import annotations

from ._fields import Issues, MapReader
from .model import Quantity, Role, Source


class Context:
    """The shared error collector plus what sections register for one another."""

    def __init__(self, issues: Issues) -> None:
        self.issues = issues
        self.sources: dict[str, Source] = {}
        self.roles: dict[str, Role] = {}
        self.quantity_refs: dict[str, Quantity] = {}
        # (line, source id, where) triples checked once all sources are known.
        self.source_refs: list[tuple[int, str, str]] = []
        self.step_nodes: dict[str, MapReader] = {}
        self.scans_declared = False  # any step with ``scans`` (else inferred, for old texts)

    def cite(self, line: int, source: str | None, where: str) -> None:
        """Note a citation; it is checked against the sources at the end (they may come later)."""
        if source is not None:
            self.source_refs.append((line, source, where))

    def check_sources(self) -> None:
        for line, source, where in self.source_refs:
            if source not in self.sources:
                self.issues.add(
                    line,
                    f"{where}: source '{source}' is not defined under "
                    f"sources (defined: {', '.join(sorted(self.sources))})",
                )

    def quantity(
        self, parent: MapReader, key: str, unit: str, path: str, positive: bool = True
    ) -> Quantity | None:
        """Read ``{value, unit, source, confirmed, note}`` under ``key``; remember it by path."""
        r = parent.sub(key)
        if r is None:
            return None
        value = r.number("value")
        got_unit = r.text("unit")
        source = r.text("source")
        confirmed = r.flag("confirmed", default=True)
        note = r.text("note", required=False, default="") or ""
        r.done()
        self.cite(r.line_of("source"), source, path)
        if got_unit is not None and got_unit != unit:
            self.issues.add(
                r.line_of("unit"),
                f"{path}.unit must be '{unit}' (Bedside computes "
                f"in one unit convention), got '{got_unit}'",
            )
            return None
        if value is not None and positive and value <= 0:
            self.issues.add(r.line_of("value"), f"{path}.value must be greater than 0, got {value}")
            return None
        if value is None or source is None:
            return None
        q = Quantity(value, unit, source, confirmed, note)
        self.quantity_refs[path] = q
        return q
