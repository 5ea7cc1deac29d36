"""What the ward and the pharmacy see: the ward board, the pharmacy queue with each dose's
priority, and what orders from the hospital did to doses. Part of
:class:`workflow.service.Bedside`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from workflow.core.errors import InputError
from workflow.core.order_message import ROUTINE, STAT
from workflow.service.base import ServiceBase
from workflow.service.board import PHARMACY_PHASES, standing, start_of_day
from workflow.service.views import (
    BoardRow,
    InterfaceEvent,
    PendingOrderView,
    PharmacyQueue,
    StepCount,
)
from workflow.store import InterfaceEntry


class Worklists(ServiceBase):
    """Mixed into :class:`workflow.service.Bedside`: the board, the queue, the interface."""

    def ward_board(self, *, limit: int = 200) -> list[BoardRow]:
        """Every dose of the ward in every state: not yet ended, or ended today (the site's
        day), soonest due first, each with where it stands now."""
        now = self.clock.now()
        since = start_of_day(now, self.tz)
        records = self.store.board(self.protocol.final_states, since, limit=limit)
        rows = []
        for record in records:
            view = self.load(record.id)
            rows.append(BoardRow(view, standing(view.case, record.scheduled_at, now)))
        return rows

    def pharmacy_queue(self, *, limit: int = 200, step: str | None = None) -> PharmacyQueue:
        """The doses waiting for a pharmacy step (order verification, eligibility, compounding,
        verification): STAT orders from the hospital first (the order's priority, issue 16.5),
        then soonest due (overdue ones are the soonest), with how many wait at each step. A
        dose opened in Bedside carries no urgency and is routine. ``step`` keeps only the doses
        waiting at that step (``held``: the doses on hold); the counts stay the whole queue's.
        A step that is not one of the queue's is refused naming the ones that are."""
        states = self.pharmacy_states()
        if step is not None and step != HELD and step not in states:
            raise InputError(
                "step", f"'{step}' is not a step of the pharmacy queue", ", ".join([*states, HELD])
            )
        now = self.clock.now()
        records = self.store.worklist(states, limit=limit)
        priority = self.order_priorities([r.id for r in records])
        rows = []
        for record in records:
            view = self.load(record.id)
            standing_now = standing(view.case, record.scheduled_at, now)
            rows.append(BoardRow(view, standing_now, priority[record.id]))
        rows.sort(key=lambda r: (r.priority != STAT, r.standing.due_at, r.view.case.case_id))
        per_step = self._per_step(rows)
        if step is not None:
            rows = [r for r in rows if _waiting_at(r) == step]
        return PharmacyQueue(rows, per_step, step)

    def _per_step(self, rows: Sequence[BoardRow]) -> list[StepCount]:
        """The count at each step in the order first seen, the held doses last."""
        seen = Counter(_waiting_at(r) for r in rows)
        out = [
            StepCount(step, self.protocol.step(step).title, n)
            for step, n in seen.items()
            if step != HELD
        ]
        if seen[HELD]:
            out.append(StepCount(HELD, "On hold", seen[HELD]))
        return out

    def pharmacy_states(self) -> list[str]:
        """States where the next signature is pharmacy's: the order's verification, eligibility
        and every compounding step."""
        pharmacy = {"pharmacy_technician", "pharmacist"}
        return [
            s.id
            for s in self.protocol.steps
            if set(s.roles) & pharmacy and s.phase in ("order", "eligibility", *PHARMACY_PHASES)
        ]

    def pending_orders(self, patient_id: str | None = None) -> list[PendingOrderView]:
        """Orders from the hospital waiting for a prescriber to start their patient's course
        (STAT first, then oldest), each with its patient, who ordered it and when; for the
        pharmacy queue, the ward board and the patient's page."""
        from workflow.service.orders import WAITING

        waiting = self.store.pending_orders(patient_id=patient_id, statuses=[WAITING])
        views = [PendingOrderView(o, self.store.get_patient(o.patient_id)) for o in waiting]
        views.sort(key=lambda v: (v.order.priority != STAT, v.order.received_at))
        return views

    def order_priorities(self, case_ids: Sequence[str]) -> dict[str, str]:
        """Each case's priority for the pharmacy queue: ``stat`` or ``routine`` as the
        hospital's order gave it (ORC-7.6 / TQ1-9, MedicationRequest.priority); a dose opened
        in Bedside, with no external order, is ``routine``."""
        found = {o.case_id: o.priority for o in self.store.order_cases(case_ids=case_ids)}
        return {case_id: found.get(case_id, ROUTINE) for case_id in case_ids}

    def interface_log(
        self, *, limit: int = 100, placer_order: str | None = None
    ) -> list[InterfaceEntry]:
        """The interface log (every message received, applied, duplicate or refused), newest
        first."""
        return self.store.interface_log(limit=limit, placer_order=placer_order)

    def interface_events(self, *, limit: int = 50) -> list[InterfaceEvent]:
        """What orders from the hospital did to doses, newest first: the doses a
        discontinued order removed from the pharmacy queue, the prepared dose it flagged for
        waste (``open`` while that dose is still not ended), the doses queued or re-queued."""
        out: list[InterfaceEvent] = []
        for entry in self.store.interface_log(limit=limit, with_effects=True):
            for effect in entry.effects:
                state = effect.get("state", "")
                if effect["effect"] == "flagged_for_waste":
                    state = self.store.get_case(effect["case_id"]).state
                is_open = state not in self.protocol.final_states
                if not effect["case_id"]:  # a pending order (no dose yet): where it is now
                    [pending] = self.store.pending_orders(placer_order=effect["placer_order"])
                    state, is_open = pending.status, pending.status == "waiting"
                out.append(
                    InterfaceEvent(
                        at=entry.received_at,
                        kind=entry.kind,
                        control_id=entry.control_id or "",
                        placer_order=entry.placer_order or "",
                        case_id=effect["case_id"],
                        effect=effect["effect"],
                        state=state,
                        open=is_open,
                        detail=entry.detail,
                    )
                )
        return out


# The queue's filter for the doses on hold (a state, not a step of the protocol).
HELD = "held"


def _waiting_at(row: BoardRow) -> str:
    """The step a dose waits at on the queue, or ``held``."""
    return HELD if row.view.case.on_hold else row.view.case.state
