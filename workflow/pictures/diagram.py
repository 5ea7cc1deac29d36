"""The protocol's state diagram, drawn by transitions itself (Mermaid text, no graphviz).

The live case machine also carries the skip edges a resume or correction needs; the diagram
shows the walk a person follows: each step to its next, the double-check mismatch loop, and the
side exits.
"""

from __future__ import annotations

from typing import Any

from transitions.extensions import GraphMachine

from workflow.core.case_machine import MISMATCH_SUFFIX, NEW_STATE, _states
from workflow.core.protocol.model import HELD_STATE, Protocol


class _Model:
    pass


def walk_transitions(protocol: Protocol) -> list[dict[str, Any]]:
    """The moves a person follows (shared by the Mermaid and the graphviz drawings)."""
    walk = [s.id for s in protocol.ordered_steps_from(protocol.initial)]
    transitions: list[dict[str, Any]] = [
        {"trigger": "open", "source": NEW_STATE, "dest": protocol.initial}
    ]
    for s in protocol.steps:
        transitions.append({"trigger": f"sign {s.id}", "source": s.id, "dest": s.next})
        if s.blinded_against:
            mismatch = s.id + MISMATCH_SUFFIX
            transitions.append({"trigger": "differences", "source": s.id, "dest": mismatch})
            transitions.append({"trigger": "re-entry matches", "source": mismatch, "dest": s.next})
        if s.evaluates_rules:
            transitions.append({"trigger": "hold rule", "source": s.id, "dest": HELD_STATE})
            transitions.append(
                {"trigger": "discontinue rule", "source": s.id, "dest": "discontinued"}
            )
    transitions.append(
        {"trigger": "prescriber resumes", "source": HELD_STATE, "dest": protocol.resume_step}
    )
    transitions.append({"trigger": "cancel", "source": HELD_STATE, "dest": "cancelled"})
    transitions.append({"trigger": "waste", "source": HELD_STATE, "dest": "wasted"})
    wastable = [s.id for s in protocol.steps if s.wastable]
    if wastable:
        transitions.append({"trigger": "waste", "source": wastable[-1], "dest": "wasted"})
    transitions.append({"trigger": "cancel", "source": walk[0], "dest": "cancelled"})
    return transitions


def mermaid(protocol: Protocol) -> str:
    transitions = walk_transitions(protocol)
    model = _Model()
    GraphMachine(
        model=model,
        states=_states(protocol),
        transitions=transitions,
        initial=NEW_STATE,
        auto_transitions=False,
        graph_engine="mermaid",
        title=f"{protocol.name} v{protocol.version}",
        show_conditions=False,
    )
    text: str = model.get_graph().draw(None)  # type: ignore[attr-defined]
    return text
