"""Orders from the hospital over a real MLLP socket (HL7 v2 RDE^O11 / ORM^O01): NW queues a
dose for the pharmacist, XO sends it back to verification, DC/CA takes unprepared doses off the
queue and flags a prepared one for waste; duplicates are acknowledged and not applied twice;
malformed, unknown-drug and identifier-mismatch messages are refused with the reason and leave
nothing but their interface log entry. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from interop.hl7_support import Sender, listener, msa, order
from interop.support import (
    clock_of,
    installation,
    new_course,
    next_slot,
    open_and_order,
    step,
    walk,
    who,
)
from workflow.core.errors import StepRefused
from workflow.core.machine import Case
from workflow.core.protocol import Protocol
from workflow.dev.walk import course_attestations
from workflow.records.case_records import compounding_record
from workflow.service import Bedside
from workflow.store import pinning


@pytest.fixture
def app(db_url: str, protocol: Protocol) -> Iterator[Bedside]:
    with installation(db_url, protocol) as bedside:
        yield bedside


@pytest.fixture
def sender(app: Bedside) -> Iterator[Sender]:
    with listener(app) as port:
        s = Sender(port)
        try:
            yield s
        finally:
            s.close()


def cases(app: Bedside) -> list[str]:
    return [r.id for r in app.store.list_cases()]


def test_a_stat_order_comes_first_on_the_pharmacy_queue(app: Bedside, sender: Sender) -> None:
    """STAT before routine, whatever the due times (issue 16.5); the page and the API say so."""
    new_course(app, mrn="MRN-1")
    new_course(app, mrn="MRN-2")
    routine = sender.send(order("MSG0101", placer="ORD2001", mrn="MRN-1", start="202611020800"))
    stat = sender.send(
        order("MSG0102", placer="ORD2002", mrn="MRN-2", start="202611021000", priority="S")
    )
    assert msa(routine)[0] == msa(stat)[0] == "AA", (routine, stat)
    queue = app.pharmacy_queue()
    mrns = [app.patient(r.view.record.patient_id).mrn for r in queue.rows]
    assert mrns == ["MRN-2", "MRN-1"]  # the later STAT dose first
    assert [r.priority for r in queue.rows] == ["stat", "routine"]


def test_new_order_queues_the_dose_for_the_pharmacist(app: Bedside, sender: Sender) -> None:
    new_course(app)
    ack = sender.send(order("MSG0001", priority="S"))
    code, control_id, text = msa(ack)
    assert (code, control_id) == ("AA", "MSG0001"), text
    assert text.endswith("stat; next: Pharmacist verifies the order"), text
    assert ack.startswith("MSH|^~\\&|BEDSIDE|")
    [case_id] = cases(app)
    view = app.load(case_id)
    assert view.case.state == "order_verification"  # on the pharmacy queue
    entry = view.case.current["order"]
    assert entry.values["dose_iu_per_kg"] == Decimal("600000")
    assert entry.values["dosing_weight_kg"] == Decimal("72.5")
    assert entry.values["weight_source"] == "standing_scale"
    assert entry.values["order_reference"] == "ORD1001"
    assert entry.signer.user_id == "external:1234"
    assert "external order (hl7)" in entry.signer.name
    assert view.record.scheduled_at == datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    assert app.order_priorities([case_id, "other"]) == {case_id: "stat", "other": "routine"}
    [logged] = app.interface_log()
    assert (logged.status, logged.ack_code, logged.kind) == ("applied", "AA", "RDE^O11 NW")
    queued = {"case_id": case_id, "effect": "queued", "state": "order_verification"}
    assert logged.effects == (queued,)
    # The pharmacist verifies it in Bedside like any order (someone other than the orderer).
    clock_of(app).advance(minutes=5)
    view = step(app, view)
    assert view.case.state == "eligibility"


def test_a_resent_message_is_acknowledged_and_not_applied_twice(
    app: Bedside, sender: Sender
) -> None:
    new_course(app)
    first = msa(sender.send(order("MSG0002")))
    again = msa(sender.send(order("MSG0002")))
    assert first[0] == again[0] == "AA"
    assert "duplicate" in again[2]
    assert len(cases(app)) == 1
    assert [e.status for e in app.interface_log()] == ["duplicate", "applied"]


def test_orm_o01_is_read_like_rde_o11(app: Bedside, sender: Sender) -> None:
    new_course(app)
    code, _, text = msa(sender.send(order("MSG0003", kind="ORM^O01^ORM_O01")))
    assert code == "AA", text
    assert len(cases(app)) == 1


def test_a_change_sends_the_verified_order_back_to_the_pharmacist(
    app: Bedside, sender: Sender
) -> None:
    new_course(app)
    assert msa(sender.send(order("MSG0010")))[0] == "AA"
    [case_id] = cases(app)
    clock_of(app).advance(minutes=5)
    view = step(app, app.load(case_id))  # the pharmacist verifies
    assert view.case.state == "eligibility"
    clock_of(app).advance(minutes=5)
    code, _, text = msa(sender.send(order("MSG0011", "XO", weight="70.1", reason="Re-weighed")))
    assert code == "AA", text
    view = app.load(case_id)
    assert view.case.state == "order_verification"
    assert view.case.current["order"].values["dosing_weight_kg"] == Decimal("70.1")
    assert app.interface_log()[0].effects[0]["effect"] == "requeued"
    assert app.order_priorities([case_id]) == {case_id: "routine"}
    # The hospital makes it STAT: the queue's priority follows; no entry changes.
    code, _, text = msa(sender.send(order("MSG0012", "XO", weight="70.1", priority="S")))
    assert code == "AA" and "alters no entry" in text, text
    assert app.order_priorities([case_id]) == {case_id: "stat"}
    assert app.load(case_id).case.state == "order_verification"


def test_a_discontinue_takes_the_unprepared_dose_off_the_queue(
    app: Bedside, sender: Sender
) -> None:
    new_course(app)
    assert msa(sender.send(order("MSG0020")))[0] == "AA"
    [case_id] = cases(app)
    clock_of(app).advance(minutes=5)
    # ORC-16 with every escape a hospital sends: | ^ & ~ and \ itself.
    reason = r"Toxicity\F\grade 3\S\renal \T\ hepatic\R\see note\E\ward"
    code, _, text = msa(sender.send(order("MSG0021", "DC", reason=f"^{reason}")))
    assert code == "AA", text
    view = app.load(case_id)
    assert view.case.state == "cancelled"
    assert view.case.end is not None
    note = str(view.case.end.get("note"))
    assert "Toxicity|grade 3^renal & hepatic~see note\\ward" in note
    assert "ORD1001" in note and "MSG0021" in note
    [event] = app.interface_events(limit=10)[:1]
    assert (event.effect, event.case_id, event.open) == ("removed", case_id, False)
    assert app.store.get_course(view.record.course_id).status == "active"


def test_a_discontinue_flags_a_prepared_dose_for_waste(app: Bedside, sender: Sender) -> None:
    new_course(app)
    assert msa(sender.send(order("MSG0030", start="202611020630")))[0] == "AA"
    [case_id] = cases(app)
    view = app.load(case_id)
    while not view.case.bag_prepared:
        view = step(app, view)
    clock_of(app).advance(minutes=5)
    code, _, text = msa(sender.send(order("MSG0031", "CA")))
    assert code == "AA", text
    assert "1 prepared dose(s) flagged for waste" in text
    view = app.load(case_id)
    assert not view.case.closed  # the bag exists: a person records its waste
    flagged = [e for e in app.interface_events() if e.effect == "flagged_for_waste"]
    assert [(e.case_id, e.open) for e in flagged] == [(case_id, True)]
    # A change to a prepared dose is refused: it would change a bag already made.
    code, _, text = msa(sender.send(order("MSG0032", "XO", weight="80")))
    assert code == "AE" and "already prepared" in text
    clock_of(app).advance(minutes=5)
    app.side_exit(case_id, view.version, "waste", "dose_not_given", "", who("p.lindqvist"))
    flagged = [e for e in app.interface_events() if e.effect == "flagged_for_waste"]
    assert [e.open for e in flagged] == [False]


@pytest.mark.parametrize(
    ("broken", "field"),
    [
        (order("MSG0040", dob="1968-05-02"), "PID-7"),
        (order("MSG0041", units="mg"), "RXE-5"),
        (order("MSG0042", dose="six hundred thousand"), "RXE-3"),
        (order("MSG0043", method=""), "OBX-17"),
        (order("MSG0044").replace("ORC|NW|", "ORC|ZZ|"), "ORC-1"),
        ("PID|1||MRN-1^^^GENHOSP^MR", "MSH"),
    ],
)
def test_a_malformed_message_is_rejected_naming_the_field(
    app: Bedside, sender: Sender, broken: str, field: str
) -> None:
    new_course(app)
    code, _, text = msa(sender.send(broken))
    assert code == "AR"
    assert text.startswith(field), text
    assert cases(app) == []
    [logged] = app.interface_log()
    assert (logged.status, logged.ack_code) == ("refused", "AR")
    assert logged.detail.startswith(field)


def test_an_unknown_drug_is_refused(app: Bedside, sender: Sender) -> None:
    new_course(app)
    code, _, text = msa(sender.send(order("MSG0050", drug="CIS50^Cisplatin^LOCAL")))
    assert code == "AE"
    assert "CIS50 / Cisplatin" in text and "aldesleukin" in text
    assert cases(app) == []
    assert [e.status for e in app.interface_log()] == ["refused"]


def test_a_second_identifier_mismatch_is_refused_never_merged(app: Bedside, sender: Sender) -> None:
    new_course(app)
    code, _, text = msa(sender.send(order("MSG0060", dob="19680503")))
    assert code == "AE"
    assert "second identifier does not match" in text
    code, _, text = msa(sender.send(order("MSG0061", given="Eve")))
    assert code == "AE"
    assert cases(app) == []
    patient = app.store.find_patient_by_mrn("MRN-1")
    assert patient is not None and patient.given_name == "Ada"


def start_course(app: Bedside, mrn: str) -> str:
    """The prescriber starts the course in Bedside, signing the protocol's attestations."""
    patient = app.store.find_patient_by_mrn(mrn)
    assert patient is not None
    attested = course_attestations(app.protocol)
    return app.start_course(patient.id, who("dr.okafor"), attested).id


def test_an_order_without_an_active_course_waits_for_the_course_start(
    app: Bedside, sender: Sender
) -> None:
    """Issue 16 (orders16.1): accepted, kept pending (the patient registered from the
    order's two identifiers), shown with who ordered it and when; the prescriber's course
    start opens its dose exactly as NW does."""
    code, _, text = msa(sender.send(order("MSG0070", mrn="MRN-9", priority="S")))
    assert code == "AA", text
    assert "pending, waiting for a prescriber to start the course" in text
    patient = app.store.find_patient_by_mrn("MRN-9")
    assert patient is not None
    assert (patient.family_name, patient.given_name) == ("Quist", "Ada")
    assert patient.created_by == "external:1234"
    assert cases(app) == []  # no course: no dose
    [waiting] = app.pending_orders()
    assert waiting.patient.mrn == "MRN-9"
    assert (waiting.order.placer_order, waiting.order.priority) == ("ORD1001", "stat")
    assert "Okafor" in waiting.order.orderer and "external order (hl7)" in waiting.order.orderer
    assert waiting.order.received_at == clock_of(app).now()
    assert waiting.scheduled_at == datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    assert app.pending_orders(patient.id) == [waiting]
    [event] = app.interface_events()
    assert (event.effect, event.placer_order, event.open) == ("pending", "ORD1001", True)
    # Resent: a duplicate, still one pending order.
    assert "duplicate" in msa(sender.send(order("MSG0070", mrn="MRN-9")))[2]
    assert len(app.pending_orders()) == 1

    clock_of(app).advance(minutes=10)
    start_course(app, "MRN-9")
    assert app.pending_orders() == []
    [case_id] = cases(app)
    view = app.load(case_id)
    assert view.case.state == "order_verification"  # on the queue for the pharmacist
    entry = view.case.current["order"]
    assert entry.signer.user_id == "external:1234"
    assert entry.values["order_reference"] == "ORD1001"
    assert entry.values["dosing_weight_kg"] == Decimal("72.5")
    assert view.record.scheduled_at == datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    assert app.order_priorities([case_id]) == {case_id: "stat"}
    [row] = app.pharmacy_queue().rows
    assert (row.view.record.id, row.priority) == (case_id, "stat")
    [event] = app.interface_events()
    assert (event.state, event.open) == ("opened", False)
    [ended] = app.store.pending_orders(placer_order="ORD1001")
    assert ended.case_id == case_id and "opened cycle 1 dose 1" in ended.detail
    # Later messages for the order act on its dose as on any other.
    clock_of(app).advance(minutes=5)
    code, _, text = msa(sender.send(order("MSG0072", "DC", mrn="MRN-9")))
    assert code == "AA" and "1 dose(s) removed" in text, text


def test_a_pending_order_is_changed_by_xo_and_removed_by_dc(app: Bedside, sender: Sender) -> None:
    assert msa(sender.send(order("MSG0075", mrn="MRN-9")))[0] == "AA"
    code, _, text = msa(sender.send(order("MSG0076", "XO", mrn="MRN-9", weight="70.1")))
    assert code == "AA" and "pending order ORD1001 changed" in text, text
    [waiting] = app.pending_orders()
    assert waiting.order.order["dosing_weight_kg"] == "70.1"
    assert waiting.order.control_id == "MSG0076"
    # A change is judged by the order step's rules now: another dose with no reason is AE.
    code, _, text = msa(sender.send(order("MSG0077", "XO", mrn="MRN-9", dose="500000")))
    assert code == "AE", text
    assert app.pending_orders()[0].order.order["dose_iu_per_kg"] == "600000"
    code, _, text = msa(sender.send(order("MSG0078", "CA", mrn="MRN-9", reason="^Declined")))
    assert code == "AA" and "removed, no dose was opened" in text, text
    assert app.pending_orders() == []
    [removed] = app.store.pending_orders(placer_order="ORD1001")
    assert removed.status == "removed"
    assert "CA, message MSG0078" in removed.detail and "Declined" in removed.detail
    effects = [(e.effect, e.state, e.open) for e in app.interface_events()]
    assert effects == [
        ("pending_removed", "removed", False),
        ("pending_changed", "removed", False),
        ("pending", "removed", False),
    ]
    # The course start opens nothing for it; a later XO is refused naming why.
    start_course(app, "MRN-9")
    assert cases(app) == []
    code, _, text = msa(sender.send(order("MSG0079", "XO", mrn="MRN-9")))
    assert code == "AE" and "no longer pending (removed" in text, text


def test_a_pending_order_with_a_bad_entry_is_refused_on_arrival(
    app: Bedside, sender: Sender
) -> None:
    """The order entry is judged by the order step on arrival (a dose other than the label
    dose needs the prescriber's reason): refused, nothing kept, not even the patient."""
    code, _, text = msa(sender.send(order("MSG0085", mrn="MRN-9", dose="500000")))
    assert code == "AE", text
    assert app.pending_orders() == [] and app.store.find_patient_by_mrn("MRN-9") is None


def test_a_pending_order_the_schedule_refuses_at_the_course_start_fails_visibly(
    app: Bedside, sender: Sender
) -> None:
    """Two orders waiting: the course start opens the first; the second would be a second
    open dose of the course, which the schedule refuses; it is marked failed with why, and
    the course start stands."""
    assert msa(sender.send(order("MSG0090", mrn="MRN-9")))[0] == "AA"
    assert msa(sender.send(order("MSG0091", mrn="MRN-9", placer="ORD1002")))[0] == "AA"
    assert len(app.pending_orders()) == 2
    course_id = start_course(app, "MRN-9")
    assert app.store.get_course(course_id).status == "active"
    assert len(cases(app)) == 1
    first, second = app.store.pending_orders()
    assert (first.status, second.status) == ("opened", "failed")
    assert second.detail.startswith("not opened at the course start:"), second.detail


def test_a_refusal_after_the_dose_was_opened_leaves_nothing_half_applied(
    app: Bedside, sender: Sender
) -> None:
    """The dose is opened before the order entry is judged; a dose other than the label dose
    with no prescriber's reason is refused there, and the opened dose goes with it."""
    new_course(app)
    code, _, text = msa(sender.send(order("MSG0080", dose="500000")))
    assert code == "AE", text
    assert cases(app) == []
    assert [e.status for e in app.interface_log()] == ["refused"]
    # With the prescriber's reason (RXE-7) the same order is applied.
    rx = order("MSG0081", dose="500000").replace(
        "|INJ^Injection|", "|INJ^Injection|^Reduced per tumour board\\T\\renal function|"
    )
    code, _, text = msa(sender.send(rx))
    assert code == "AA", text
    [case_id] = cases(app)
    entry = app.load(case_id).case.current["order"]
    assert entry.values["dose_deviation_reason"] == "Reduced per tumour board&renal function"


def test_a_second_new_order_with_the_same_number_is_refused(app: Bedside, sender: Sender) -> None:
    new_course(app)
    assert msa(sender.send(order("MSG0090")))[0] == "AA"
    code, _, text = msa(sender.send(order("MSG0091")))
    assert code == "AE" and "already received" in text
    assert len(cases(app)) == 1


def test_the_protocol_text_is_kept_even_when_the_first_order_was_refused(
    app: Bedside, sender: Sender
) -> None:
    """The first order of a fresh installation saves the protocol's text inside its
    transaction; refused, that save is rolled back, and the next order saves it again."""
    new_course(app)
    assert msa(sender.send(order("MSG0100", dose="500000")))[0] == "AE"
    assert msa(sender.send(order("MSG0101")))[0] == "AA"
    [case_id] = cases(app)
    # What a restarted server (or an upgraded one) replays the case on.
    restored = pinning.restore(app.store, app.load(case_id).record.protocol_hash)
    assert restored.content_hash == app.protocol.content_hash


def test_the_same_message_on_two_connections_at_once_is_applied_once(app: Bedside) -> None:
    """An interface engine that fails over resends on a second connection while the first is
    still being answered: the interface log's unique key lets one apply it, the other is told
    it is a duplicate."""
    new_course(app)
    message = order("MSG0110")
    answers: list[tuple[str, str, str]] = []
    with listener(app) as port:
        senders = [Sender(port), Sender(port)]
        start = threading.Barrier(2)

        def send(sender: Sender) -> None:
            start.wait()
            answers.append(msa(sender.send(message)))

        threads = [threading.Thread(target=send, args=(s,)) for s in senders]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for s in senders:
            s.close()
    assert [a[0] for a in answers] == ["AA", "AA"], answers
    assert len(cases(app)) == 1
    assert sorted(e.status for e in app.interface_log()) == ["applied", "duplicate"]


def test_a_change_with_a_new_start_time_moves_the_due_time(app: Bedside, sender: Sender) -> None:
    """Issue 16 (orders16.2): XO's TQ1-7 moves the dose's due time on the queue, signed into
    the case (replay and the records carry it); a time the schedule refuses is AE naming it."""
    new_course(app)
    assert msa(sender.send(order("MSG0120", start="202611020800")))[0] == "AA"
    [case_id] = cases(app)
    clock_of(app).advance(minutes=5)
    code, _, text = msa(sender.send(order("MSG0121", "XO", start="202611021000")))
    assert code == "AA", text
    assert text == "order ORD1001 changed; 1 dose(s) now due 2026-11-02 10:00 UTC", text
    moved = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    view = app.load(case_id)
    assert view.record.scheduled_at == moved and view.case.scheduled_at == moved
    [row] = app.pharmacy_queue().rows
    assert row.standing.due_at == moved
    notice = view.case.events[-1]
    assert notice.type == "order_notice" and notice.actor is not None
    assert notice.actor.user_id == "external:1234"
    assert notice.data["previous_scheduled_at"].startswith("2026-11-02T08:00")
    assert "XO, message MSG0121" in notice.data["note"]
    assert app.interface_log()[0].effects[0]["effect"] == "rescheduled"
    # Nothing else changed: the order entry stands, the dose stays where it was.
    assert view.case.state == "order_verification"
    assert len(view.case.history) == 1


def test_a_change_to_a_time_the_schedule_refuses_is_refused_naming_the_rule(
    app: Bedside, sender: Sender
) -> None:
    course_id = new_course(app, mrn="MRN-1")
    given = walk(app, open_and_order(app, course_id))  # dose 1 given and completed
    assert given.case.state == "completed"
    next_slot(app, course_id)
    assert msa(sender.send(order("MSG0130", start=f"{clock_of(app).now():%Y%m%d%H%M}")))[0] == "AA"
    case_id = next(c for c in cases(app) if c != given.record.id)
    before = app.load(case_id)
    too_soon = given.case.given_at + timedelta(hours=2)  # type: ignore[operator]
    code, _, text = msa(sender.send(order("MSG0131", "XO", start=f"{too_soon:%Y%m%d%H%M}")))
    assert code == "AE", text
    assert text.startswith("TQ1-7 / timing: the new due time"), text
    after = app.load(case_id)
    assert after.version == before.version
    assert after.record.scheduled_at == before.record.scheduled_at


def test_a_dose_discontinued_after_its_bag_was_made_is_refused_at_every_step(
    app: Bedside, sender: Sender
) -> None:
    """Issue 16 (orders16.3): the DC/CA of a prepared dose is signed into the case, and every
    later step (double checks, bedside identification, infusion start) is refused saying which
    message, when, and that the bag is to be wasted; the waste side exit stays open."""
    new_course(app)
    assert msa(sender.send(order("MSG0140", start="202611020630")))[0] == "AA"
    [case_id] = cases(app)
    view = app.load(case_id)
    while not view.case.bag_prepared:
        view = step(app, view)
    clock_of(app).advance(minutes=5)
    code, _, text = msa(sender.send(order("MSG0141", "DC", reason="^Creatinine rising")))
    assert code == "AA", text
    view = app.load(case_id)
    assert view.case.order_stop is not None
    with pytest.raises(StepRefused) as refused:
        step(app, view)
    err = refused.value
    assert err.reason == "order_discontinued"
    assert "DC, message MSG0141" in err.message and "Creatinine rising" in err.message
    assert "received 2026-11-02" in err.message and "the bag is to be wasted" in err.message
    assert app.load(case_id).version == view.version  # nothing written
    # Replayed from the store, the case still refuses (the notice is an event of the case).
    assert Case.replay(app.protocol, case_id, view.case.events).order_stop is not None
    # The records carry it.
    record = compounding_record(view.case, "0" * 64)
    assert record is not None
    [notices] = [s for s in record.sections if s.key == "order_notices"]
    assert notices.rows[0].label == "Order discontinued"
    assert "MSG0141" in (notices.rows[0].note or "")
    # The bag is wasted: the side exit is open.
    clock_of(app).advance(minutes=5)
    ended = app.side_exit(case_id, view.version, "waste", "dose_not_given", "", who("p.lindqvist"))
    assert ended.case.state == "wasted"
