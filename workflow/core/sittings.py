"""Signing a sitting: the consecutive steps one person does at one sitting, one signature.

The protocol declares which steps may be signed together (``sittings``, validated at load by
protocol/_sittings.py). Here, every path that signs a sitting (the web form, the JSON API)
asks the same two things before anything is built: is this exactly a sitting of the protocol,
starting at the step the case waits for; and, after each step is judged, does the walk still
go on to the next step of the sitting (a step's outcome may have changed the walk). Each step
is judged by the case exactly as when signed alone and gives its own event; the events are
appended together or not at all by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from workflow.core.errors import StepRefused
from workflow.core.events import Event
from workflow.core.machine import Case


def check_sitting(case: Case, step_ids: Sequence[str]) -> tuple[str, ...]:
    """The sitting ``step_ids`` names, if the protocol declares exactly it and the case waits
    for its first step; else refused, naming what is wrong."""
    ids = tuple(step_ids)
    declared = case.protocol.sitting_from(ids[0]) if ids else ()
    if not declared or declared != ids:
        known = "; ".join(" + ".join(s) for s in case.protocol.sittings) or "none"
        raise StepRefused(
            "not_a_sitting",
            f"steps: {' + '.join(ids) or 'none'} are not signed together in this protocol "
            f"(its sittings: {known})",
            field="steps",
        )
    waiting = case.next_step()
    if waiting is None or waiting.id != ids[0] or ids[0] not in case.allowed_steps():
        raise StepRefused(
            "out_of_order",
            f"This dose is not waiting for '{case.protocol.step(ids[0]).title}'"
            + (f" (next: {waiting.title})" if waiting is not None else ""),
        )
    return ids


def sign_sitting(
    case: Case,
    entries: Sequence[tuple[str, Mapping[str, Any]]],
    sign_one: Callable[[str, Mapping[str, Any], Sequence[str]], Event],
) -> list[Event]:
    """Judge each step of the sitting in order through ``sign_one`` (the caller's single-step
    signing, given the sitting to record), checking before each later step that the walk
    still leads to it. The case is changed in memory only: the caller appends the events
    together, or, on a refusal, nothing."""
    ids = check_sitting(case, [step_id for step_id, _ in entries])
    events: list[Event] = []
    for step_id, values in entries:
        if events:
            waiting = case.next_step()
            if waiting is None or waiting.id != step_id:
                done = case.protocol.step(events[-1].step or "").title
                raise StepRefused(
                    "sitting_interrupted",
                    f"After '{done}' this dose does not go on to "
                    f"'{case.protocol.step(step_id).title}' (now: "
                    f"{waiting.title if waiting is not None else case.state}): nothing was "
                    "signed; sign the steps one at a time",
                )
        events.append(sign_one(step_id, values, ids))
    return events
