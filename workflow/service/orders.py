"""Orders from the hospital, applied: the one command both doors (HL7 v2 over MLLP, FHIR
MedicationRequest over the JSON API) go through, as ``Bedside.receive_order``.

- NW (new): the patient is matched by both identifiers (MRN, then name + date of birth: a
  mismatch is refused, never merged), the order's drug must be the protocol's, the patient's
  active course takes the dose, and the dose is opened with the order signed as the ordering
  provider's external order: it waits on the pharmacy queue for the Bedside pharmacist's order
  verification, like any order.
- XO (change): the order entry of the order's open dose is corrected with the new values, which
  sends it back to the pharmacist's verification (a prepared dose is refused: discontinue it and
  send a new order).
- DC / CA (discontinue / cancel): every open dose of the order not yet prepared ends with the
  protocol's ``cancel`` side exit and a recorded reason; a prepared one is flagged for waste (a
  person wastes the bag, with the ``waste`` side exit).

All of a message is one transaction with its interface log entry: applied whole, or refused
with nothing but the log entry written. A message control id already applied is acknowledged
again and not applied twice.

A course is never started by an interface: its start is the prescriber's signed attestation of
the boxed warning's conditions, which only a person signs in Bedside. A new order for a patient
without an active course (a patient not yet registered is registered from the order's two
identifiers) is accepted and kept as a **pending order**, waiting for the prescriber to start
the course: the order entry is judged now by the order step's rules (so the hospital hears at
once what Bedside would refuse), XO rewrites it, DC/CA removes it, and the course start
(:func:`open_pending_orders`, called by ``Bedside.start_course`` whatever door the prescriber
used) opens its dose exactly as NW does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from workflow.core.course import course_status
from workflow.core.errors import (
    BedsideError,
    InputError,
    StepRefused,
)
from workflow.core.events import Event, Signer, format_time
from workflow.core.machine import Case
from workflow.core.order_message import CHANGE, NEW, OrderDose, OrderMessage
from workflow.core.order_notice import DISCONTINUED as DISCONTINUED_NOTICE
from workflow.core.order_notice import RESCHEDULED as RESCHEDULED_NOTICE
from workflow.core.schedule import next_dose
from workflow.store import Course, InterfaceEntry, OrderCase, Patient, PendingOrder

if TYPE_CHECKING:
    from workflow.service import Bedside, CaseView

log = logging.getLogger("bedside.interface")

# The side exit a discontinued or cancelled order takes on a dose not yet prepared, and its
# reason (the note says which message, which order, who and why).
EXIT = "cancel"
EXIT_REASON = "other"
# Effects an order has on doses, as the interface log and the pharmacy queue show them.
QUEUED, REQUEUED, REMOVED, FLAGGED_FOR_WASTE = "queued", "requeued", "removed", "flagged_for_waste"
RESCHEDULED_EFFECT = "rescheduled"  # XO moved the dose's due time
# ... and on orders waiting for their patient's course to be started (no dose yet).
PENDING, PENDING_CHANGED, PENDING_REMOVED = "pending", "pending_changed", "pending_removed"
# A pending order's status: waiting for the course start, opened (its dose is on the queue),
# removed by DC/CA, failed (the course start could not open its dose: ``detail`` says why).
WAITING, OPENED, ENDED, FAILED = "waiting", "opened", "removed", "failed"


@dataclass(frozen=True)
class OrderResult:
    """What receiving one message did: ``ack_code`` AA (applied, or a duplicate acknowledged
    again), AE (refused by Bedside: the reason says why) or AR (unreadable message)."""

    ack_code: str
    status: str  # applied | duplicate | refused
    detail: str
    effects: tuple[dict[str, str], ...] = ()
    entry_id: int | None = None

    @property
    def accepted(self) -> bool:
        return self.ack_code == "AA"


class _Duplicate(Exception):
    def __init__(self, entry: InterfaceEntry) -> None:
        self.entry = entry


def receive_order(bedside: Bedside, message: OrderMessage) -> OrderResult:
    """Apply one order (see the module's words); every outcome is in the interface log."""
    received = bedside.clock.now()
    try:
        signer = orderer_signer(bedside, message)
        with bedside.store.atomic():
            prior = bedside.store.applied_message(message.channel, message.control_id)
            if prior is not None:
                raise _Duplicate(prior)
            effects, detail = _apply(bedside, message, signer)
            entry = bedside.store.log_interface_message(
                _entry(message, received, "applied", "AA", detail, effects)
            )
    except _Duplicate as dup:
        return _duplicate(bedside, message, received, dup.entry)
    except BedsideError as exc:
        # Sent twice at once (an engine failing over to a second connection): the other copy
        # was applied while this one ran, and this one met its dose or its log entry's unique
        # key. It is a duplicate, not a refusal.
        prior = bedside.store.applied_message(message.channel, message.control_id)
        if prior is not None:
            return _duplicate(bedside, message, received, prior)
        return refuse(bedside, message, received, exc)
    _archive_ended(bedside, effects)
    log.info("%s %s %s: %s", message.kind, message.control_id, message.placer_order, detail)
    return OrderResult("AA", "applied", detail, tuple(effects), entry.id)


def refuse(
    bedside: Bedside,
    message: OrderMessage,
    received: datetime,
    exc: BedsideError,
) -> OrderResult:
    """Log a refused order (nothing of it was applied) and say why: AE."""
    detail = exc.message
    entry = bedside.store.log_interface_message(_entry(message, received, "refused", "AE", detail))
    log.warning("%s %s refused: %s", message.kind, message.control_id, detail)
    return OrderResult("AE", "refused", detail, (), entry.id)


def reject_unreadable(
    bedside: Bedside, channel: str, raw: str, control_id: str | None, kind: str, exc: BedsideError
) -> OrderResult:
    """Log a message that could not be read into an order at all, and say why: AR."""
    entry = bedside.store.log_interface_message(
        InterfaceEntry(
            received_at=bedside.clock.now(),
            channel=channel,
            control_id=control_id,
            kind=kind,
            placer_order=None,
            status="refused",
            ack_code="AR",
            detail=exc.message,
            message=raw,
        )
    )
    log.warning("%s %s rejected: %s", kind, control_id or "(no control id)", exc.message)
    return OrderResult("AR", "refused", exc.message, (), entry.id)


def orderer_signer(bedside: Bedside, message: OrderMessage) -> Signer:
    """The ordering provider as the order's signer: a Bedside prescriber with the same
    username is named by their printed name; anyone else as the message names them. The id is
    always marked external: this person did not sign in Bedside, their hospital system did."""
    who = message.orderer
    name = who.display
    try:
        user = bedside.identity.get_user(who.id)
    except BedsideError:  # not a Bedside user (or not a username at all)
        user = None
    if user is not None and "prescriber" in user.roles and user.active:
        name = f"{user.printed_name} ({user.username})"
    return Signer(
        f"external:{who.id}"[:64], f"{name}, external order ({message.channel})", "prescriber"
    )


def _apply(
    bedside: Bedside, message: OrderMessage, signer: Signer
) -> tuple[list[dict[str, str]], str]:
    if message.control == NEW:
        return _new(bedside, message, signer)
    links = bedside.store.order_cases(placer_order=message.placer_order)
    if not links:
        pending = bedside.store.pending_orders(placer_order=message.placer_order)
        if pending:
            return _pending_control(bedside, message, signer, pending[0])
        raise StepRefused(
            "unknown_order", f"ORC-2: order {message.placer_order} is not known to Bedside"
        )
    patient = _match_patient(bedside, message)
    views = [bedside.load(link.case_id) for link in links]
    if any(v.record.patient_id != patient.id for v in views):
        raise StepRefused(
            "identifier_mismatch",
            f"order {message.placer_order} belongs to another patient than MRN "
            f"{message.patient.mrn}: refused",
        )
    if message.control == CHANGE:
        return _change(bedside, message, signer, views)
    return _discontinue(bedside, message, signer, views)


def _new(
    bedside: Bedside, message: OrderMessage, signer: Signer
) -> tuple[list[dict[str, str]], str]:
    dose = _dose(message)
    _check_drug(bedside, dose)
    patient = _patient_for_new(bedside, message, signer)
    known = bedside.store.order_cases(placer_order=message.placer_order) or (
        bedside.store.pending_orders(placer_order=message.placer_order)
    )
    if known:
        raise StepRefused(
            "order_exists",
            f"ORC-2: order {message.placer_order} was already received; a change is sent as XO",
        )
    values = _order_values(message, dose)
    try:
        course = bedside.active_course(patient.id)
    except StepRefused as no_course:
        return _keep_pending(bedside, message, signer, patient, dose, values, no_course.message)
    view = _open_order(
        bedside,
        course,
        signer,
        values,
        dose.scheduled_at,
        placer_order=message.placer_order,
        channel=message.channel,
        priority=message.priority,
    )
    effect = _effect(view, QUEUED)
    # The MRN and not the name: this line is the ACK's text and the listener's log line.
    return [effect], (
        f"order {message.placer_order} opened cycle {view.case.cycle} dose "
        f"{view.case.dose_in_cycle} for MRN {patient.mrn}, "
        f"{message.priority}; next: {_next_title(view)}"
    )


def _open_order(
    bedside: Bedside,
    course: Course,
    signer: Signer,
    values: dict[str, Any],
    scheduled_at: datetime,
    *,
    placer_order: str,
    channel: str,
    priority: str,
) -> CaseView:
    """Open the course's next dose, sign its order as the external orderer and link the dose
    to the hospital's order number: NW, and a pending order when its course is started, both
    come here."""
    view = bedside.open_case_as(course, scheduled_at, signer)
    order_step = bedside.protocol.initial  # the prescriber's order, as the protocol names it
    view = bedside.act_as(
        view, signer, lambda c, s, now: c.sign(order_step, values, s, now), archive=False
    )
    bedside.store.link_order_case(
        OrderCase(
            case_id=view.record.id,
            placer_order=placer_order,
            course_id=course.id,
            channel=channel,
            priority=priority,
            orderer=signer.name,
            created_at=bedside.clock.now(),
        )
    )
    return view


def _patient_for_new(bedside: Bedside, message: OrderMessage, signer: Signer) -> Patient:
    """The patient a new order names: matched by both identifiers, or, when the MRN is not
    registered, registered from them (the store's rules for a name and a date of birth apply;
    a bad one refuses the order naming the field)."""
    given = message.patient
    if bedside.store.find_patient_by_mrn(given.mrn) is None:
        return bedside.store.add_patient(
            mrn=given.mrn,
            family_name=given.family_name,
            given_name=given.given_name,
            date_of_birth=given.date_of_birth,
            created_by=signer.user_id,
        )
    return _match_patient(bedside, message)


def _judge_order(
    bedside: Bedside, patient: Patient, signer: Signer, values: dict[str, Any], at: datetime
) -> None:
    """Judge a pending order's entry now by the order step's own rules, on a dose that is
    opened in memory only (the course's first, as the course start will open it) and never
    stored: what Bedside would refuse at the course start is refused (AE) on arrival."""
    from workflow.service.views import patient_ref

    protocol = bedside.protocol
    dose = next_dose(protocol, course_status([], protocol.course_rules), at, bedside.tz)
    now = bedside.clock.now()
    case, _ = Case.open(
        protocol,
        "pending-order-check",
        patient=patient_ref(patient),
        course_id="pending",
        dose=dose,
        scheduled_at=at,
        actor=signer,
        at=now,
    )
    case.sign(protocol.initial, values, signer, now)


def _keep_pending(
    bedside: Bedside,
    message: OrderMessage,
    signer: Signer,
    patient: Patient,
    dose: OrderDose,
    values: dict[str, Any],
    why: str,
) -> tuple[list[dict[str, str]], str]:
    _judge_order(bedside, patient, signer, values, dose.scheduled_at)
    now = bedside.clock.now()
    bedside.store.add_pending_order(
        PendingOrder(
            placer_order=message.placer_order,
            patient_id=patient.id,
            channel=message.channel,
            control_id=message.control_id,
            kind=message.kind,
            priority=message.priority,
            orderer_id=signer.user_id,
            orderer=signer.name,
            order=_pending_values(values, dose),
            received_at=now,
            updated_at=now,
            detail=why,
        )
    )
    return [_pending_effect(message.placer_order, PENDING)], (
        f"order {message.placer_order} received for MRN {patient.mrn}, {message.priority}: "
        "pending, waiting for a prescriber to start the course in Bedside (no active course)"
    )


def _pending_values(values: dict[str, Any], dose: OrderDose) -> dict[str, str]:
    return {**{k: str(v) for k, v in values.items()}, "scheduled_at": dose.scheduled_at.isoformat()}


def _pending_effect(placer_order: str, effect: str) -> dict[str, str]:
    return {"case_id": "", "placer_order": placer_order, "effect": effect, "state": WAITING}


def _pending_control(
    bedside: Bedside, message: OrderMessage, signer: Signer, pending: PendingOrder
) -> tuple[list[dict[str, str]], str]:
    """XO or DC/CA of an order still waiting for its course start."""
    patient = _match_patient(bedside, message)
    if pending.patient_id != patient.id:
        raise StepRefused(
            "identifier_mismatch",
            f"order {message.placer_order} belongs to another patient than MRN "
            f"{message.patient.mrn}: refused",
        )
    if pending.status != WAITING:
        raise StepRefused(
            "order_ended",
            f"order {message.placer_order} is no longer pending ({pending.status}: "
            f"{pending.detail})",
        )
    now = bedside.clock.now()
    if message.control == CHANGE:
        dose = _dose(message)
        _check_drug(bedside, dose)
        values = _order_values(message, dose)
        _judge_order(bedside, patient, signer, values, dose.scheduled_at)
        bedside.store.update_pending_order(
            replace(
                pending,
                control_id=message.control_id,
                priority=message.priority,
                orderer_id=signer.user_id,
                orderer=signer.name,
                order=_pending_values(values, dose),
                updated_at=now,
            )
        )
        return [_pending_effect(message.placer_order, PENDING_CHANGED)], (
            f"pending order {message.placer_order} changed ({message.priority}); still waiting "
            "for a prescriber to start the course"
        )
    word = "discontinued" if message.control != "cancel" else "cancelled"
    note = _end_note(message)
    bedside.store.update_pending_order(
        replace(pending, status=ENDED, detail=note, control_id=message.control_id, updated_at=now)
    )
    effect = {**_pending_effect(message.placer_order, PENDING_REMOVED), "state": ENDED}
    return [effect], f"pending order {message.placer_order} {word}: removed, no dose was opened"


def open_pending_orders(bedside: Bedside, course: Course) -> list[PendingOrder]:
    """A prescriber started ``course``: every order of its patient waiting for that opens its
    dose now, exactly as a new order (NW) would have, signed as the external orderer's order
    and queued for the pharmacist's verification. Each in its own transaction; one the
    schedule or the order step refuses now is marked ``failed`` with the reason (the course
    start stands: it is the prescriber's, not the order's). Returns the orders as they ended."""
    out = []
    for pending in bedside.store.pending_orders(patient_id=course.patient_id, statuses=[WAITING]):
        order = dict(pending.order)
        scheduled_at = datetime.fromisoformat(order.pop("scheduled_at"))
        signer = Signer(pending.orderer_id, pending.orderer, "prescriber")
        try:
            with bedside.store.atomic():
                view = _open_order(
                    bedside,
                    course,
                    signer,
                    order,
                    scheduled_at,
                    placer_order=pending.placer_order,
                    channel=pending.channel,
                    priority=pending.priority,
                )
                ended = replace(
                    pending,
                    status=OPENED,
                    case_id=view.record.id,
                    updated_at=bedside.clock.now(),
                    detail=(
                        f"opened cycle {view.case.cycle} dose {view.case.dose_in_cycle} at the "
                        f"course start; next: {_next_title(view)}"
                    ),
                )
                bedside.store.update_pending_order(ended)
        except BedsideError as exc:
            ended = replace(
                pending,
                status=FAILED,
                updated_at=bedside.clock.now(),
                detail=f"not opened at the course start: {exc.message}",
            )
            bedside.store.update_pending_order(ended)
            log.warning("pending order %s not opened: %s", pending.placer_order, exc.message)
        else:
            log.info("pending order %s opened case %s", pending.placer_order, view.record.id)
        out.append(ended)
    return out


def _change(
    bedside: Bedside, message: OrderMessage, signer: Signer, views: Sequence[CaseView]
) -> tuple[list[dict[str, str]], str]:
    dose = _dose(message)
    _check_drug(bedside, dose)
    open_views = [v for v in views if not v.case.closed]
    if not open_views:
        raise StepRefused(
            "order_ended", f"order {message.placer_order} has no open dose left to change"
        )
    if any(link_priority != message.priority for link_priority in _priorities(bedside, views)):
        bedside.store.set_order_priority(message.placer_order, message.priority)
    effects: list[dict[str, str]] = []
    for view in open_views:
        case = view.case
        if case.bag_prepared or case.given:
            raise StepRefused(
                "already_prepared",
                f"a dose of order {message.placer_order} (cycle {case.cycle} dose "
                f"{case.dose_in_cycle}) is already prepared: it cannot be changed; send DC "
                "and a new order",
            )
        entry = case.current.get(case.protocol.initial)
        if entry is None:
            raise StepRefused("not_ready", f"order {message.placer_order} has no signed order")
        if case.scheduled_at != dose.scheduled_at:
            view = _reschedule(bedside, view, signer, message, dose.scheduled_at)
            effects.append(_effect(view, RESCHEDULED_EFFECT))
        wanted = _order_values(message, dose)
        changes = {k: v for k, v in wanted.items() if _stored(entry.values.get(k)) != _stored(v)}
        if not changes:
            continue
        why = f"Order changed by the hospital (XO, message {message.control_id})"
        if message.reason:
            why += f": {message.reason}"
        target = entry.seq
        view = bedside.act_as(
            view,
            signer,
            _correction(target, changes, why),
            archive=False,
        )
        effects.append(_effect(view, REQUEUED))
    if not effects:
        return [], (
            f"order {message.placer_order}: the change alters no entry of its dose (priority "
            f"{message.priority})"
        )
    requeued = sum(1 for e in effects if e["effect"] == REQUEUED)
    moved = [e for e in effects if e["effect"] == RESCHEDULED_EFFECT]
    said = [f"{requeued} dose(s) back to {_next_title(view)}"] if requeued else []
    if moved:
        said.append(f"{len(moved)} dose(s) now due {dose.scheduled_at:%Y-%m-%d %H:%M} UTC")
    return effects, f"order {message.placer_order} changed; {', '.join(said)}"


def _discontinue(
    bedside: Bedside, message: OrderMessage, signer: Signer, views: Sequence[CaseView]
) -> tuple[list[dict[str, str]], str]:
    word = "discontinued" if message.control != "cancel" else "cancelled"
    note = _end_note(message)
    effects: list[dict[str, str]] = []
    given = 0
    for view in views:
        case = view.case
        if case.closed:
            continue
        if case.given:
            given += 1  # the drug is already running or given: nothing to take back
            continue
        if case.bag_prepared:
            # Signed into the case: every step is refused from now on (core/order_notice.py);
            # a person wastes the bag with the waste side exit.
            view = bedside.act_as(
                view, signer, _notice(DISCONTINUED_NOTICE, {"note": note}, message), archive=False
            )
            effects.append(_effect(view, FLAGGED_FOR_WASTE))
            continue
        view = bedside.act_as(
            view,
            signer,
            lambda c, s, now: c.cancel(s, now, EXIT_REASON, note),
            archive=False,
        )
        effects.append(_effect(view, REMOVED))
    removed = sum(1 for e in effects if e["effect"] == REMOVED)
    flagged = sum(1 for e in effects if e["effect"] == FLAGGED_FOR_WASTE)
    running = f", {given} dose(s) already given or running" if given else ""
    return effects, (
        f"order {message.placer_order} {word}: {removed} dose(s) removed from the queue, "
        f"{flagged} prepared dose(s) flagged for waste{running}"
    )


def _notice(
    action: str, data: dict[str, Any], message: OrderMessage
) -> Callable[[Case, Signer, datetime], Event]:
    body = {**data, "message": f"{message.kind} {message.control_id}"}
    return lambda c, s, now: c.order_notice(action, body, s, now)


def _reschedule(
    bedside: Bedside, view: CaseView, signer: Signer, message: OrderMessage, at: datetime
) -> CaseView:
    """XO with a new start time: the dose's due time follows, if the schedule rules allow the
    dose (this cycle and dose number) at that time; else AE naming the rule."""
    case = view.case
    others = [c for c in bedside.course_cases(case.course_id) if c.case_id != case.case_id]
    status = course_status(others, case.protocol.course_rules)
    try:
        slot = next_dose(case.protocol, status, at, bedside.tz)
    except StepRefused as exc:
        raise StepRefused(
            exc.reason,
            f"TQ1-7 / timing: the new due time {at:%Y-%m-%d %H:%M} UTC is refused by the "
            f"schedule: {exc.message}",
        ) from None
    if (slot.cycle, slot.dose_in_cycle, slot.dose_in_course) != (
        case.cycle,
        case.dose_in_cycle,
        case.dose_in_course,
    ):
        raise StepRefused(
            "schedule_changed",
            f"TQ1-7 / timing: due at {at:%Y-%m-%d %H:%M} UTC this dose would be cycle "
            f"{slot.cycle} dose {slot.dose_in_cycle}, not the ordered cycle {case.cycle} dose "
            f"{case.dose_in_cycle}: refused by the schedule; discontinue it and order again",
        )
    previous = case.scheduled_at
    why = f"Due time changed by the hospital (XO, message {message.control_id})"
    data = {
        "scheduled_at": format_time(at),
        "previous_scheduled_at": format_time(previous) if previous else "",
        "note": why + (f": {message.reason}" if message.reason else ""),
    }
    return bedside.act_as(view, signer, _notice(RESCHEDULED_NOTICE, data, message), archive=False)


def _end_note(message: OrderMessage) -> str:
    """What a DC/CA says on what it ends: which order, which message, who, why."""
    word = "discontinued" if message.control != "cancel" else "cancelled"
    code = "DC" if message.control != "cancel" else "CA"
    note = (
        f"Order {message.placer_order} {word} by the hospital ({code}, message "
        f"{message.control_id}, by {message.orderer.display})"
    )
    if message.reason:
        note += f": {message.reason}"
    return note


def _next_title(view: CaseView) -> str:
    """The step the dose waits for now, in the protocol's words."""
    step = view.case.next_step()
    return step.title if step is not None else view.case.state


def _priorities(bedside: Bedside, views: Sequence[CaseView]) -> list[str]:
    links = bedside.store.order_cases(case_ids=[v.record.id for v in views])
    return [link.priority for link in links]


def _correction(
    target: int, changes: dict[str, Any], why: str
) -> Callable[[Case, Signer, datetime], Event]:
    return lambda c, s, now: c.correct(target, changes, why, s, now)


def _match_patient(bedside: Bedside, message: OrderMessage) -> Patient:
    """The patient both identifiers name: the MRN finds them, the name and date of birth must
    then agree (two identifiers, never merged on one)."""
    given = message.patient
    patient = bedside.store.find_patient_by_mrn(given.mrn)
    if patient is None:
        raise StepRefused(
            "unknown_patient",
            f"PID-3: no patient with MRN {given.mrn} is registered in Bedside; register them "
            f"and start their course (bedside course start --mrn {given.mrn})",
        )
    same_name = (
        patient.family_name.casefold() == given.family_name.casefold()
        and patient.given_name.casefold() == given.given_name.casefold()
    )
    if not same_name or patient.date_of_birth != given.date_of_birth:
        raise StepRefused(
            "identifier_mismatch",
            f"PID-5/PID-7: MRN {given.mrn} is registered to another name or date of birth "
            f"than the order gives ({given.family_name.upper()}, {given.given_name}, born "
            f"{given.date_of_birth:%Y-%m-%d}); the second identifier does not match, so the "
            "order is refused and nothing is merged",
        )
    return patient


def _check_drug(bedside: Bedside, dose: OrderDose) -> None:
    protocol = bedside.protocol
    known = {protocol.drug.casefold(), protocol.brand.casefold(), protocol.id.casefold()}
    named = {part.strip().casefold() for part in dose.drug.split("/")}
    if not known & named:
        raise StepRefused(
            "unknown_drug",
            f"RXE-2: {dose.drug or '(empty)'} is not the drug of a protocol Bedside runs "
            f"(allowed: {protocol.drug}, {protocol.brand})",
        )


def _dose(message: OrderMessage) -> OrderDose:
    if message.dose is None:
        raise InputError("RXE", "a new or changed order needs its dose, weight and start time")
    return message.dose


def _order_values(message: OrderMessage, dose: OrderDose) -> dict[str, Any]:
    values: dict[str, Any] = {
        "dose_iu_per_kg": str(dose.dose_iu_per_kg),
        "dosing_weight_kg": str(dose.weight_kg),
        "weight_source": dose.weight_source,
        "weight_measured_at": dose.weight_measured_at.isoformat(),
        "order_reference": message.placer_order[:64],
    }
    if dose.deviation_reason:
        values["dose_deviation_reason"] = dose.deviation_reason
    return values


def _stored(value: Any) -> str:
    """A value as text for comparing an order entry with a change (numbers by value)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return str(Decimal(str(value)).normalize())
    try:
        return str(Decimal(str(value)).normalize())
    except ArithmeticError:
        pass
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).isoformat()
        except ValueError:
            return value
    return "" if value is None else str(value)


def _effect(view: CaseView, effect: str) -> dict[str, str]:
    return {"case_id": view.record.id, "effect": effect, "state": view.case.state}


def _entry(
    message: OrderMessage,
    received: datetime,
    status: str,
    ack_code: str,
    detail: str,
    effects: Sequence[dict[str, str]] = (),
) -> InterfaceEntry:
    return InterfaceEntry(
        received_at=received,
        channel=message.channel,
        control_id=message.control_id,
        kind=message.kind,
        placer_order=message.placer_order,
        status=status,
        ack_code=ack_code,
        detail=detail,
        message=message.raw,
        effects=tuple(effects),
    )


def _duplicate(
    bedside: Bedside, message: OrderMessage, received: datetime, prior: InterfaceEntry
) -> OrderResult:
    detail = (
        f"duplicate of message {message.control_id} applied at "
        f"{prior.received_at:%Y-%m-%d %H:%M:%S} UTC; not applied again"
    )
    entry = bedside.store.log_interface_message(
        _entry(message, received, "duplicate", "AA", detail)
    )
    log.info("%s %s: %s", message.kind, message.control_id, detail)
    return OrderResult("AA", "duplicate", detail, prior.effects, entry.id)


def _archive_ended(bedside: Bedside, effects: Sequence[dict[str, str]]) -> None:
    """Records of the doses the order ended, made now that the transaction is committed."""
    if bedside.archiver is None:
        return
    for effect in effects:
        if effect["effect"] == REMOVED:
            # Inline or by the records writer, as a closing step's; a failure is logged there
            # and the cancellation stands (`archive catch-up` makes the records later).
            bedside.after_end(bedside.load(effect["case_id"]))


@dataclass(frozen=True)
class HL7Reply:
    """What the MLLP listener sends back for one message, and the line it logs."""

    result: OrderResult
    ack: str
    control_id: str | None
    kind: str

    def log_line(self) -> str:
        return (
            f"{self.kind} {self.control_id or '(no control id)'} "
            f"{self.result.ack_code} {self.result.status}: {self.result.detail}"
        )


def receive_hl7(bedside: Bedside, text: str) -> HL7Reply:
    """One HL7 v2 message as the listener received it, read, applied and acknowledged: AA
    (applied or duplicate), AE (refused: unknown drug or order, identifier mismatch, a rule),
    AR (unreadable: the field at fault is named)."""
    from workflow.interop import hl7v2

    control_id = hl7v2.control_id_of(text)
    try:
        message = hl7v2.parse_order(text, bedside.tz)
    except InputError as exc:
        kind = _kind_of(text)
        result = reject_unreadable(bedside, "hl7", text, control_id, kind, exc)
        return HL7Reply(
            result, hl7v2.ack(text, "AR", exc.message, control_id or ""), control_id, kind
        )
    result = receive_order(bedside, message)
    return HL7Reply(
        result,
        hl7v2.ack(text, result.ack_code, result.detail, message.control_id),
        message.control_id,
        message.kind,
    )


def _kind_of(text: str) -> str:
    from workflow.interop import hl7v2

    try:
        return hl7v2.message_kind(hl7v2.parse_message(text))
    except (BedsideError, IndexError, KeyError):
        return "unreadable"


def receive_fhir(bedside: Bedside, body: Any, raw: str) -> OrderResult:
    """A FHIR R4 MedicationRequest (Bundle, or with contained resources) as the API received
    it: read, then applied through :func:`receive_order`. Unreadable: AR naming the FHIR path."""
    from workflow.interop import fhir_order

    try:
        message = fhir_order.parse_medication_request(body, bedside.tz)
    except InputError as exc:
        control_id = None
        if isinstance(body, dict):
            ident = body.get("identifier")
            value = ident.get("value") if isinstance(ident, dict) else None
            control_id = str(value or body.get("id") or "")[:200] or None
        return reject_unreadable(bedside, "fhir", raw, control_id, "MedicationRequest", exc)
    return receive_order(bedside, replace(message, raw=raw))
