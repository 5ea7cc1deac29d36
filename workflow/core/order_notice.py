"""What an order from the hospital tells a dose beyond its order entry (issue 16): a new due
time (XO with a new start time) and a discontinuation that came after the bag was made (DC/CA:
the bag is to be wasted, the dose must not be given).

Each is a signed ``order_notice`` event of the case, signed as the external orderer's (the
order's signer), so replay, every page and the records carry it. The refusal to go on with a
discontinued dose lives here, and the case's step judging calls it for every step: the double
checks, the bedside identification and the infusion start alike, whatever door (web form, JSON
API, ``bedside run``) the signature came through. The side exits (waste) stay open.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from workflow.core.errors import StepRefused
from workflow.core.events import format_time, parse_time

if TYPE_CHECKING:
    from workflow.core.case_state import CaseState

RESCHEDULED = "rescheduled"  # data: scheduled_at, previous_scheduled_at, message, note
DISCONTINUED = "discontinued"  # data: message, note (which order, message, orderer, why)
ACTIONS = (RESCHEDULED, DISCONTINUED)


def judge_notice(case: CaseState, data: Mapping[str, Any]) -> None:
    """Refuse a notice the dose cannot take (before anything changes)."""
    action = data.get("action")
    if action not in ACTIONS:
        raise StepRefused("unknown_notice", f"an order notice is one of {', '.join(ACTIONS)}")
    if case.closed:
        raise StepRefused("closed", f"this dose has ended ({case.state})")
    if case.given:
        raise StepRefused(
            "already_given", "the infusion of this dose was started: an order cannot change it"
        )
    if action == RESCHEDULED:
        if case.bag_prepared:
            raise StepRefused(
                "already_prepared",
                "this dose is already prepared: its due time cannot be changed (its bag's "
                "beyond-use time was set by the preparation); discontinue it and order again",
            )
        parse_time(str(data.get("scheduled_at")))
    elif not case.bag_prepared:
        raise StepRefused(
            "not_prepared", "a dose not yet prepared is cancelled by the order, not flagged"
        )
    elif case.order_stop is not None:
        raise StepRefused("already_discontinued", str(case.order_stop.get("note", "")))


def apply_notice(case: CaseState, data: Mapping[str, Any], at: datetime) -> None:
    if data["action"] == RESCHEDULED:
        case.scheduled_at = parse_time(str(data["scheduled_at"]))
    else:
        case.order_stop = {**dict(data), "at": format_time(at)}


def refuse_if_discontinued(case: CaseState) -> None:
    """The one rule: a dose whose order was discontinued after its bag was made is not given.
    Every step is refused, saying by which message and when, and that the bag is wasted."""
    stop = case.order_stop
    if stop is None:
        return
    at = parse_time(str(stop["at"]))
    raise StepRefused(
        "order_discontinued",
        f"{stop.get('note', 'The order was discontinued')} (received {at:%Y-%m-%d %H:%M} UTC). "
        "This dose must not be given: the bag is to be wasted (the side exit 'Record the bag "
        "as wasted').",
    )
