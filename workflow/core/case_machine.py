"""The transitions machine of a protocol: every state and move a case may make.

Built once per protocol and shared by its cases (see ``machine_for``); the case passes the
destination it judged, and the machine refuses a move the state does not allow.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from transitions import Machine

from workflow.core.protocol.model import HELD_STATE, Protocol

NEW_STATE = "new"
MISMATCH_SUFFIX = "_mismatch"


def _states(protocol: Protocol) -> list[str]:
    states = [NEW_STATE, *protocol.step_ids(), HELD_STATE, *protocol.final_states]
    states += [s.id + MISMATCH_SUFFIX for s in protocol.steps if s.blinded_against]
    return states


def _transitions(protocol: Protocol) -> list[dict[str, Any]]:
    """Every move the machine allows; the destination is chosen by the case and passed in."""
    steps = protocol.steps
    walk = [s.id for s in protocol.ordered_steps_from(protocol.initial)]
    active = [*walk] + [s.id + MISMATCH_SUFFIX for s in steps if s.blinded_against]
    out: list[dict[str, Any]] = [
        {"trigger": "do_open", "source": NEW_STATE, "dest": protocol.initial}
    ]

    def to(trigger: str, sources: list[str], dests: Iterable[str]) -> None:
        for dest in dests:
            out.append(
                {
                    "trigger": trigger,
                    "source": sources,
                    "dest": dest,
                    "conditions": [_dest_is(dest)],
                }
            )

    for s in steps:
        sources = [s.id]
        for other in steps:
            if other.blinded_against and s.id in (other.id, other.blinded_against):
                sources.append(other.id + MISMATCH_SUFFIX)
        later = walk[walk.index(s.id) + 1 :] if s.id in walk else []
        dests = [*later, "completed", HELD_STATE, "discontinued"]
        if s.blinded_against:
            dests.append(s.id + MISMATCH_SUFFIX)
        for other in steps:
            if other.blinded_against == s.id:
                dests.append(other.id + MISMATCH_SUFFIX)
        to("do_sign_" + s.id, sources, dict.fromkeys(dests))
    to("do_assess", active, [HELD_STATE, "discontinued"])
    to("do_assess_held", [HELD_STATE], ["discontinued"])
    to("do_resume", [HELD_STATE], walk)
    # A correction reopens the walk, or finds the double check differing again, or fires a rule.
    mismatches = [s.id + MISMATCH_SUFFIX for s in steps if s.blinded_against]
    to("do_correct", active, [*walk, *mismatches, HELD_STATE, "discontinued"])
    # A verifier sends a step it verifies back: the case returns to that step (rejection.py).
    to("do_reject", [s.id for s in steps if s.verifies], walk)
    for exit_state in ("discontinued", "cancelled", "wasted"):
        to("do_exit_" + exit_state, [*active, HELD_STATE], [exit_state])
    return out


def _dest_is(dest: str) -> Any:
    def check(event: Any) -> bool:
        return bool(event.kwargs.get("dest") == dest)

    check.__name__ = f"dest_{dest}"
    return check


# One transitions Machine per protocol, shared by every case of it. A machine is a few thousand
# objects (a protocol's ~460 transitions, their conditions and callbacks) tied in reference
# cycles; building one per case load made each web request leave that much cyclic garbage, and
# the collector's full passes over it (about 150 ms each, every few seconds under load) were
# the web bench's whole latency tail. Shared, the machine is built once; cases are never
# registered with it (``Machine.models`` would keep every case alive) but passed to each
# event's ``trigger``, which on a machine without a queue reads the machine and writes only
# the case, so threads may share it.
_MACHINES: OrderedDict[int, tuple[Protocol, Machine]] = OrderedDict()
_MACHINES_LOCK = threading.Lock()
_MACHINES_KEPT = 32  # protocols in use at once: versions pinned by running cases, overlays


def machine_for(protocol: Protocol) -> Machine:
    """The shared machine of ``protocol`` (keyed by the object: equal content is not enough
    to be sure, and holding the protocol keeps its id from being reused)."""
    key = id(protocol)
    with _MACHINES_LOCK:
        found = _MACHINES.get(key)
        if found is not None and found[0] is protocol:
            _MACHINES.move_to_end(key)
            return found[1]
    machine = Machine(
        model=None,
        states=_states(protocol),
        transitions=_transitions(protocol),
        initial=NEW_STATE,
        auto_transitions=False,
        send_event=True,
        ignore_invalid_triggers=False,
        model_attribute="state",
    )
    with _MACHINES_LOCK:
        _MACHINES[key] = (protocol, machine)
        _MACHINES.move_to_end(key)
        while len(_MACHINES) > _MACHINES_KEPT:
            _MACHINES.popitem(last=False)
    return machine
