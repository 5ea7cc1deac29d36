"""The protocol's state diagram as SVG, drawn by graphviz ``dot`` (Debian package graphviz).

The DOT text is written here from the same walk the Mermaid diagram shows (one source of truth:
``diagram.walk_transitions``); ``dot`` only lays it out. Driving ``dot`` directly avoids a
Python binding for one subprocess call.
"""

from __future__ import annotations

import shutil
import subprocess

from workflow.core.errors import BedsideError
from workflow.core.machine import MISMATCH_SUFFIX, NEW_STATE
from workflow.core.protocol.model import HELD_STATE, Protocol
from workflow.pictures.diagram import walk_transitions

_FINAL_COLOURS = {
    "completed": "#d9f2d9",
    "discontinued": "#f6d5d5",
    "cancelled": "#eeeeee",
    "wasted": "#f3e6cc",
}


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_source(protocol: Protocol) -> str:
    lines = [
        "digraph protocol {",
        "  graph [rankdir=TB, fontname=Helvetica, fontsize=12, nodesep=0.3, ranksep=0.35,",
        f"         label={_q(f'{protocol.name} v{protocol.version}')}, labelloc=t];",
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname=Helvetica,',
        "        fontsize=10];",
        '  edge [fontname=Helvetica, fontsize=8, color="#555555"];',
        f'  {_q(NEW_STATE)} [shape=circle, label="", width=0.2, fillcolor=black];',
        f'  {_q(HELD_STATE)} [fillcolor="#fff2b3", label="held\\n(prescriber decides)"];',
    ]
    for s in protocol.steps:
        lines.append(
            f"  {_q(s.id)} [label={_q(s.title + chr(10) + '(' + ', '.join(s.roles) + ')')}];"
        )
        if s.blinded_against:
            lines.append(
                f'  {_q(s.id + MISMATCH_SUFFIX)} [label="double-check\\nmismatch", '
                'fillcolor="#fde0c5"];'
            )
    for final in protocol.final_states:
        fill = _q(_FINAL_COLOURS.get(final, "#ffffff"))
        lines.append(f"  {_q(final)} [shape=doubleoctagon, fillcolor={fill}];")
    walk = {
        (t["source"], t["dest"])
        for t in walk_transitions(protocol)
        if t["trigger"].startswith("sign")
    }
    for t in walk_transitions(protocol):
        src, dst, label = t["source"], t["dest"], t["trigger"]
        if (src, dst) in walk:
            lines.append(f"  {_q(src)} -> {_q(dst)} [weight=10, penwidth=1.6, color=black];")
        else:
            lines.append(
                f"  {_q(src)} -> {_q(dst)} [label={_q(label)}, style=dashed, constraint=false];"
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_dot(source: str, fmt: str = "svg") -> bytes:
    dot = shutil.which("dot")
    if dot is None:
        raise BedsideError(
            "graphviz 'dot' is not installed (Debian: apt-get install graphviz; `make sysdeps`)"
        )
    done = subprocess.run(  # a fixed program; our own DOT text on stdin
        [dot, f"-T{fmt}"], input=source.encode(), capture_output=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise BedsideError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def state_diagram_svg(protocol: Protocol) -> bytes:
    return render_dot(dot_source(protocol), "svg")
