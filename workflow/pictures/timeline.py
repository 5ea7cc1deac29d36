"""A patient's course on one picture: each dose given, held or skipped, per cycle, on the q8h
schedule, with the rules that fired.

The model (``course_timeline``) is read off replayed cases only. It is drawn as a list of
simple shapes, rendered both to SVG (web UI) and to a reportlab Drawing (course report PDF), so
both pictures are the same picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from xml.sax.saxutils import escape, quoteattr

from workflow.core.course import course_rule_firing, was_held
from workflow.core.machine import Case
from workflow.core.protocol.model import Protocol

COLOURS = {
    "given": "#2e7d32",
    "held": "#f9a825",
    "skipped": "#9e9e9e",
    "wasted": "#8d6e63",
    "discontinued": "#c62828",
    "in_progress": "#1565c0",
}


@dataclass(frozen=True)
class Dose:
    cycle: int
    dose_in_cycle: int
    at: datetime  # infusion start if given, else when it was scheduled
    status: str  # a key of COLOURS
    rules: tuple[str, ...]  # rules that held or discontinued it


@dataclass(frozen=True)
class Timeline:
    title: str
    doses: tuple[Dose, ...]
    slots_per_cycle: int  # q8h slots within the cycle's days
    interval_h: float
    course_note: str | None = None
    cycle_starts: dict[int, datetime] = field(default_factory=dict)


def dose_status(case: Case) -> str:
    if case.state == "discontinued":
        return "discontinued"
    if case.given_at is not None:
        return "given"
    if was_held(case) or case.on_hold:
        return "held"
    if case.state == "wasted":
        return "wasted"
    if case.closed:
        return "skipped"
    return "in_progress"


def _rules(case: Case) -> tuple[str, ...]:
    seen: list[str] = []
    for h in case.hold_log:
        if h.get("kind") in ("held", "discontinued"):
            for f in h.get("firings", []):
                if f["rule_id"] not in seen:
                    seen.append(f["rule_id"])
    return tuple(seen)


def course_timeline(protocol: Protocol, cases: Sequence[Case], title: str) -> Timeline:
    s = protocol.schedule
    interval = float(s.min_interval.value)
    slots = int(float(s.cycle_days.value) * 24 / interval)
    doses: list[Dose] = []
    starts: dict[int, datetime] = {}
    for case in cases:
        at = case.given_at or case.scheduled_at or case.events[0].at
        starts[case.cycle] = min(starts.get(case.cycle, at), at)
        doses.append(Dose(case.cycle, case.dose_in_cycle, at, dose_status(case), _rules(case)))
    return Timeline(
        title,
        tuple(doses),
        slots,
        interval,
        course_rule_firing(protocol.course_rules, cases),
        starts,
    )


# -- shapes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    kind: str  # "line", "circle", "rect", "text"
    x: float
    y: float
    w: float = 0  # line: x2; rect: width; circle: radius
    h: float = 0  # line: y2; rect: height
    colour: str = "#000000"
    text: str = ""
    size: float = 10
    fill: bool = True


WIDTH = 760.0
_LEFT = 70.0
_ROW = 70.0
_TOP = 50.0


def shapes(t: Timeline) -> tuple[list[Shape], float]:
    """The drawing and its height, in points, y downwards."""
    out: list[Shape] = [Shape("text", 10, 22, text=t.title, size=13)]
    cycles = sorted(t.cycle_starts) or [1]
    span = WIDTH - _LEFT - 20
    step = span / max(t.slots_per_cycle, 1)
    y = _TOP
    for cycle in cycles:
        mid = y + 22
        out.append(Shape("text", 10, mid + 4, text=f"cycle {cycle}", size=10))
        out.append(Shape("line", _LEFT, mid, _LEFT + span, mid, colour="#bbbbbb"))
        for k in range(t.slots_per_cycle + 1):
            x = _LEFT + k * step
            out.append(Shape("line", x, mid - 5, x, mid + 5, colour="#bbbbbb"))
            if k % 3 == 0:
                out.append(
                    Shape("text", x - 8, mid + 20, text=f"day {k // 3 + 1}", size=7, colour="#777")
                )
        start = t.cycle_starts.get(cycle)
        for d in (d for d in t.doses if d.cycle == cycle):
            hours = (d.at - start).total_seconds() / 3600 if start else 0
            x = _LEFT + min(hours / t.interval_h, t.slots_per_cycle) * step
            out.append(Shape("circle", x, mid, 7, colour=COLOURS[d.status]))
            out.append(Shape("text", x - 3, mid - 11, text=str(d.dose_in_cycle), size=7))
        y += _ROW
    # Legend and the rules that fired.
    x = _LEFT
    for status, colour in COLOURS.items():
        out.append(Shape("circle", x, y + 6, 5, colour=colour))
        out.append(Shape("text", x + 9, y + 10, text=status.replace("_", " "), size=8))
        x += 95
    y += 28
    for d in t.doses:
        if d.rules:
            line = f"cycle {d.cycle} dose {d.dose_in_cycle} {d.status}: {', '.join(d.rules)}"
            out.append(Shape("text", 10, y, text=line, size=8))
            y += 13
    if t.course_note:
        out.append(Shape("text", 10, y, text=t.course_note[:150], size=8, colour="#c62828"))
        y += 13
    return out, y + 10


def timeline_svg(t: Timeline) -> str:
    items, height = shapes(t)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{WIDTH:.0f}" height="{height:.0f}" fill="#ffffff"/>',
        f"<title>{escape(t.title)}</title>",
    ]
    for s in items:
        if s.kind == "line":
            parts.append(
                f'<line x1="{s.x:.1f}" y1="{s.y:.1f}" x2="{s.w:.1f}" y2="{s.h:.1f}" '
                f'stroke="{s.colour}"/>'
            )
        elif s.kind == "circle":
            parts.append(f'<circle cx="{s.x:.1f}" cy="{s.y:.1f}" r="{s.w:.1f}" fill="{s.colour}"/>')
        elif s.kind == "text":
            parts.append(
                f'<text x="{s.x:.1f}" y="{s.y:.1f}" font-size="{s.size:g}" '
                f"fill={quoteattr(s.colour)}>{escape(s.text)}</text>"
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
