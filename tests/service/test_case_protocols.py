"""A signature finds its step in the protocol its case was opened on, read once per case
(``ServiceBase._protocol_hash_of``): a case's protocol is never rewritten, an unknown case is
never remembered, and the answers are those of the case row."""

from __future__ import annotations

import pytest

from service.test_service import new_course, open_and_order
from workflow.core.errors import NotFound, StepRefused
from workflow.dev.demo import DEMO_PASSWORD
from workflow.identity import Credentials
from workflow.service import Bedside

NURSE = Credentials("n.alvarez", DEMO_PASSWORD)


def test_an_unknown_case_is_refused_every_time(app: Bedside) -> None:
    for _ in range(2):
        with pytest.raises(NotFound):
            app.sign_step("no-such-case", 1, "hold_checks", {}, NURSE)


def test_a_case_s_protocol_is_its_row_s_and_steps_are_checked_against_it(app: Bedside) -> None:
    view = open_and_order(app, new_course(app))
    case_id = view.case.case_id
    for _ in range(2):  # read, then remembered: the same answer
        with pytest.raises(StepRefused, match="'no_such_step' is not a step of this protocol"):
            app.sign_step(case_id, view.version, "no_such_step", {}, NURSE)
    assert app.store.get_case(case_id).protocol_hash == app.protocol.content_hash
    assert app._protocol_hash_of(case_id) == app.protocol.content_hash
