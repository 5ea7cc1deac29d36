"""Words for people: what a signed event, a role or a side exit is called on pages, in flash
messages and in the PDF records, instead of its id.

Step and role titles come from the protocol; the engine's own events (side exits, corrections,
assessments) have fixed titles here, the one place every edge asks.
"""

from __future__ import annotations

from workflow.core import events as ev
from workflow.core.events import Event
from workflow.core.protocol import Protocol

# The engine's events that belong to no step, as a person reads them.
EVENT_TITLES: dict[str, str] = {
    ev.CASE_OPENED: "Dose opened",
    ev.ASSESSMENT: "Assessment",
    ev.HELD: "Dose held",
    ev.RESUMED: "Resume after hold",
    ev.DISCONTINUED: "Discontinue the course",
    ev.CANCELLED: "Cancel the dose",
    ev.WASTED: "Record the bag as wasted",
    ev.CORRECTION: "Correction",
    ev.SIGNATURE_FAILED: "Refused signature",
    ev.ORDER_NOTICE: "Order from the hospital",
}

# The side exits (protocol ``side_exits`` keys) and the event each one signs.
EXIT_EVENTS: dict[str, str] = {
    "resume": ev.RESUMED,
    "discontinue": ev.DISCONTINUED,
    "cancel": ev.CANCELLED,
    "waste": ev.WASTED,
}

# What each dangerous side exit does, said before the second, deliberate step.
EXIT_CONSEQUENCES: dict[str, str] = {
    "resume": "The held dose goes on: the next step of the checklist opens.",
    "discontinue": "The course is permanently discontinued: this dose ends and no further "
    "dose of this course may be opened or given.",
    "cancel": "This dose is cancelled and ends here: it will not be given, and it is never "
    "made up by doubling a later dose.",
    "waste": "The prepared bag is recorded as wasted and this dose ends: a new preparation "
    "(a new dose) is needed.",
}


# The warnings the engine raises (``protocol.model.WARNING_CODES``), as records title them.
WARNING_TITLES: dict[str, str] = {
    "concentration_below_window": "Concentration below the window",
    "concentration_above_window": "Concentration above the window",
    "dose_not_label_dose": "Dose other than the label dose",
    "weight_outside_adult_range": "Weight outside the adult range",
    "weight_stale": "Dosing weight not recent",
    "eligibility_test_old": "Eligibility test older than the window",
    "infusion_duration_deviation": "Infusion stopped early or late",
}


def warning_title(code: str) -> str:
    return WARNING_TITLES.get(code, code.replace("_", " ").capitalize())


def role_title(protocol: Protocol, role: str) -> str:
    """A role as people say it ("Registered nurse"), or the id when the protocol lacks it."""
    found = protocol.roles.get(role)
    return found.title if found else role


def step_title(protocol: Protocol, step_id: str) -> str:
    return protocol.step(step_id).title if step_id in protocol.step_ids() else step_id


def exit_title(name: str) -> str:
    return EVENT_TITLES.get(EXIT_EVENTS.get(name, ""), name.replace("_", " ").capitalize())


def event_title(protocol: Protocol, event: Event) -> str:
    """What a signed event was: its step's title, else the engine's title for its type."""
    if event.step:
        title = step_title(protocol, event.step)
        return f"{title} (correction)" if event.type == ev.CORRECTION else title
    return EVENT_TITLES.get(event.type, event.type.replace("_", " ").capitalize())
