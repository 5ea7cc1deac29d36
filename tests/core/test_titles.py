"""Words for people: every warning the engine raises has a title, every side exit a title
and a consequence, and events are named by their step's title."""

from __future__ import annotations

from workflow.core.protocol import Protocol
from workflow.core.protocol.model import SIDE_EXITS, WARNING_CODES
from workflow.core.titles import (
    EXIT_CONSEQUENCES,
    WARNING_TITLES,
    exit_title,
    role_title,
    step_title,
)


def test_every_warning_and_exit_has_words(protocol: Protocol) -> None:
    assert set(WARNING_TITLES) == set(WARNING_CODES)
    assert set(EXIT_CONSEQUENCES) == set(SIDE_EXITS)
    assert exit_title("cancel") == "Cancel the dose"
    assert role_title(protocol, "pharmacy_technician") == "Pharmacy technician"
    assert step_title(protocol, "order_verification") == protocol.step("order_verification").title
