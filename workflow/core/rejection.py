"""A verifier sends a step back (issue 16.2): the pharmacist verifying a preparation from
outside the clean room rejects a step it verifies, with a reason, and the technician redoes it.

The rejection is a signed event (``step_rejected``) of the verifying step: the rejected step's
entry and every later entry up to the verifier's step are superseded (kept in the record, never
deleted), and the case goes back to the rejected step. Judged the same way when the event is
first made and on every replay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workflow.core.errors import StepRefused
from workflow.core.events import Signer

if TYPE_CHECKING:
    from workflow.core.case_state import CaseState

MAX_REASON = 500
REJECT_MEANING = "reviewed"


def judge_rejection(case: CaseState, step_id: str, reason: str, signer: Signer) -> list[str]:
    """The steps whose current entries the rejection supersedes (the rejected one first);
    StepRefused when this signer may not send ``step_id`` back now."""
    if case.closed or case.on_hold:
        raise StepRefused("out_of_order", f"This case is {case.state}: no step can be sent back")
    verifier = case.next_step()
    if verifier is None or step_id not in verifier.verifies:
        raise StepRefused(
            "out_of_order",
            f"'{step_id}' can be sent back only while the step that verifies it is open",
            field="step",
        )
    if signer.role not in verifier.roles:
        raise StepRefused(
            "wrong_role",
            f"Only {', '.join(verifier.roles)} may send a step back at '{verifier.title}'",
        )
    entry = case.current.get(step_id)
    if entry is None:
        raise StepRefused("out_of_order", f"'{step_id}' has no entry to send back", field="step")
    if entry.signer.user_id == signer.user_id:
        raise StepRefused(
            "same_signer", "The person who signed a step cannot verify or send back their own work"
        )
    text = reason.strip()
    if not text or len(text) > MAX_REASON:
        raise StepRefused(
            "invalid_item",
            f"reason: say why the step is sent back (1 to {MAX_REASON} characters)",
            field="reason",
        )
    walk = [s.id for s in case.protocol.ordered_steps_from(step_id)]
    upto = walk[: walk.index(verifier.id)] if verifier.id in walk else [step_id]
    return [sid for sid in upto if sid in case.current]
