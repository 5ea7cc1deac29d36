"""Issue 11: the patient-safety checks hold on every path through the service, on SQLite and
PostgreSQL: corrections, the schedule at infusion start, retreatment, course attestations,
and what a refused signature may write."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from workflow.core.errors import AuthError, StepRefused
from workflow.core.events import SIGNATURE_FAILED
from workflow.core.protocol import load_protocol
from workflow.dev.walk import course_attestations
from workflow.identity import Credentials
from workflow.resources import default_protocol_path
from workflow.service import Bedside, CaseView
from workflow.store import COURSE_DISCONTINUED

from .test_service import clock_of, open_and_order, step, walk, who

ATTESTED = course_attestations(load_protocol(default_protocol_path()))


def patient(app: Bedside, mrn: str = "MRN-11") -> str:
    return app.store.add_patient(
        mrn=mrn,
        family_name="Quist",
        given_name="Ada",
        date_of_birth="1968-05-02",
        created_by="test",
    ).id


def refused(fn: object, *args: object, **kwargs: object) -> StepRefused:
    with pytest.raises(StepRefused) as exc:
        fn(*args, **kwargs)  # type: ignore[operator]
    return exc.value


# -- 11.8: course start attestations -------------------------------------------------------


def test_a_course_starts_with_the_prescribers_signed_attestations(app: Bedside) -> None:
    pid = patient(app)
    err = refused(app.start_course, pid, who("dr.okafor"), {"no_organ_allograft": True})
    assert err.reason == "missing_item" and len(err.fields) == 4
    assert "Hospital inpatient setting" in err.message and "[source: label_current]" in err.message
    with pytest.raises(AuthError):  # a nurse does not start a course
        app.start_course(pid, who("n.alvarez"), ATTESTED)
    assert app.store.list_courses(pid) == []
    course = app.start_course(pid, who("dr.okafor"), ATTESTED)
    record = course.start_record
    assert record is not None and record["attestations"] == ATTESTED
    assert record["by"]["role"] == "prescriber" and record["meaning"] == "approved"
    assert len(record["content_hash"]) == 64
    # Every dose opened on the course carries it in its chained opening event.
    view = open_and_order(app, course.id)
    assert view.case.course_start == app.store.get_course(course.id).start_record


# -- 11.5: permanently discontinued is permanent --------------------------------------------


def _discontinued_by_vt(app: Bedside, pid: str) -> CaseView:
    course = app.start_course(pid, who("dr.okafor"), ATTESTED)
    view = walk(app, open_and_order(app, course.id), until="hold_checks")
    view = step(app, view, vt_sustained_beats="7")
    assert view.case.state == "discontinued"
    return view


def test_retreatment_after_sustained_vt_is_refused_naming_rule_date_and_dose(
    app: Bedside,
) -> None:
    pid = patient(app)
    ended = _discontinued_by_vt(app, pid)
    (course,) = app.store.list_courses(pid)
    assert course.status == COURSE_DISCONTINUED
    # The next dose attempt names the discontinuation, not "no active course" with a {mrn}.
    err = refused(app.active_course, pid)
    assert err.reason == "course_discontinued"
    assert "sustained_vt" in err.message and "cycle 1 dose 1" in err.message
    assert "{mrn}" not in err.message
    # A new course is refused, naming the rule, the date and the dose that ended the last.
    err = refused(app.start_course, pid, who("dr.okafor"), ATTESTED)
    assert err.reason == "retreatment_contraindicated"
    when = ended.case.end["at"][:10]  # type: ignore[index]
    assert "sustained_vt" in err.message and when in err.message
    assert "cycle 1 dose 1" in err.message and "override_reason" in err.message
    assert len(app.store.list_courses(pid)) == 1
    # The protocol lets a prescriber override with a signed reason, kept on the course.
    course = app.start_course(
        pid, who("dr.okafor"), ATTESTED, override_reason="Tumour board: VT was drug-unrelated"
    )
    override = course.start_record["retreatment_override"]  # type: ignore[index]
    assert override["reason"].startswith("Tumour board")
    assert override["contraindication"]["rule_id"] == "sustained_vt"
    view = open_and_order(app, course.id)
    assert view.case.course_start["retreatment_override"] == override  # type: ignore[index]


def test_an_overlay_forbids_the_retreatment_override(app: Bedside) -> None:
    from pathlib import Path

    from workflow.core.protocol.overlay import load_overlay
    from workflow.resources import default_protocol_path

    app.protocol = load_overlay(
        Path(default_protocol_path()).with_name("aldesleukin.overlay-example.yaml"), app.protocol
    )
    app.add_protocol(app.protocol)
    pid = patient(app)
    _discontinued_by_vt(app, pid)
    err = refused(app.start_course, pid, who("dr.okafor"), ATTESTED, override_reason="please")
    assert err.reason == "retreatment_contraindicated" and "No new course" in err.message


# -- 11.4: the schedule holds at infusion start ----------------------------------------------


def test_infusion_start_rechecks_the_rest_against_the_real_time(app: Bedside) -> None:
    """A dose opened for its scheduled time after the rest must not start during it."""
    pid = patient(app)
    course = app.start_course(pid, who("dr.okafor"), ATTESTED)
    clock = clock_of(app)
    walk(app, open_and_order(app, course.id))  # cycle 1, day 1
    clock.advance(days=6)  # day 7: cycle 1 is over (its days 1-5), the 9-day rest runs
    # Cycle 2's first dose is opened for a time after the rest, while the rest still runs.
    view = app.open_case(course.id, clock.now() + timedelta(days=10), who("dr.okafor"))
    assert (view.case.cycle, view.case.dose_in_cycle) == (2, 1)
    clock.advance(minutes=5)
    view = app.sign_step(view.case.case_id, view.version, "order", _order(clock), who("dr.okafor"))
    view = walk(app, view, until="infusion_start")
    version = view.version
    err = refused(step, app, view)
    assert err.reason == "rest_period"
    assert app.load(view.case.case_id).version == version
    assert "9-day rest" in err.message


def _order(clock: object) -> dict[str, str]:
    from workflow.dev.demo import DEMO_WEIGHT_KG
    from workflow.dev.walk import order_values

    now = clock.now()  # type: ignore[attr-defined]
    return order_values(DEMO_WEIGHT_KG, now - timedelta(hours=1))


def test_infusion_start_refuses_a_second_open_dose_of_the_course(app: Bedside) -> None:
    """Two doses opened at once (two tablets racing): the second one cannot start."""
    pid = patient(app)
    course = app.start_course(pid, who("dr.okafor"), ATTESTED)
    first = walk(app, open_and_order(app, course.id), until="infusion_start")
    # Simulate the race: a second case created beside the first, past the opening check.
    clock = clock_of(app)
    from workflow.core.machine import Case
    from workflow.core.schedule import NextDose
    from workflow.service import patient_ref

    case, opened = Case.open(
        app.protocol,
        "racing-case",
        patient=patient_ref(app.store.get_patient(pid)),
        course_id=course.id,
        dose=NextDose(1, 1, 1, clock.now(), None, 1),
        scheduled_at=clock.now(),
        actor=first.case.events[0].actor,  # type: ignore[arg-type]
        at=clock.now(),
    )
    app.store.create_case(
        opened,
        course_id=course.id,
        cycle=1,
        dose_in_cycle=1,
        dose_in_course=1,
        scheduled_at=clock.now(),
        state=case.state,
        protocol_version=app.protocol.version,
        protocol_hash=app.protocol.content_hash,
    )
    err = refused(step, app, first)
    assert err.reason == "dose_in_progress"


# -- 11.1: corrections through the service ---------------------------------------------------


def test_the_first_checker_cannot_correct_the_second_check(app: Bedside) -> None:
    pid = patient(app)
    course = app.start_course(pid, who("dr.okafor"), ATTESTED)
    view = walk(app, open_and_order(app, course.id), until="pre_infusion")
    second = view.case.current["double_check_second"]
    first_nurse = view.case.current["double_check_first"].signer.user_id
    first_username = app.identity.get_user_by_id(first_nurse).username
    err = refused(
        app.correct,
        view.case.case_id,
        view.version,
        second.seq,
        {"dosing_weight_kg": "99.9"},  # not on the scanned label's code: typed
        "typo",
        who(first_username),
    )
    assert err.reason == "same_person"
    assert app.load(view.case.case_id).version == view.version
    # The second checker's own correction reopens the comparison: the infusion is blocked.
    second_username = app.identity.get_user_by_id(second.signer.user_id).username
    view = app.correct(
        view.case.case_id,
        view.version,
        second.seq,
        {"dosing_weight_kg": "99.9"},
        "misread",
        who(second_username),
    )
    assert view.case.state == "double_check_second_mismatch"
    err = refused(
        app.sign_step, view.case.case_id, view.version, "pre_infusion", {}, who("n.alvarez")
    )
    assert err.reason == "double_check_mismatch" and "99.9" not in err.message


# -- 11.11 / 11.12: what a refused signature writes -----------------------------------------


def test_a_wrong_role_or_an_ended_case_writes_nothing_into_the_case(app: Bedside) -> None:
    pid = patient(app)
    course = app.start_course(pid, who("dr.okafor"), ATTESTED)
    view = walk(app, open_and_order(app, course.id), until="hold_checks")
    with pytest.raises(AuthError):  # a technician signing the nurse's hold checks
        app.sign_step(view.case.case_id, view.version, "hold_checks", {}, who("t.mensah"))
    assert app.load(view.case.case_id).version == view.version
    done = walk(app, view)
    assert done.case.state == "completed"
    for proof in (who("t.mensah"), Credentials("n.alvarez", "wrong password here")):
        with pytest.raises((AuthError, StepRefused)):
            app.sign_step(done.case.case_id, done.version, "record_sign_off", {}, proof)
    assert app.load(done.case.case_id).version == done.version
    # The security log keeps every one of them.
    refused_events = [e for e in app.identity.auth_events() if e.outcome == "refused"]
    assert len(refused_events) >= 3


def test_what_was_typed_as_a_user_id_is_never_kept_in_the_case(app: Bedside) -> None:
    pid = patient(app)
    course = app.start_course(pid, who("dr.okafor"), ATTESTED)
    view = walk(app, open_and_order(app, course.id), until="hold_checks")
    typed = "Sunflower-Horse-42"  # a password typed into the user-id field
    with pytest.raises(AuthError):
        app.sign_step(
            view.case.case_id, view.version, "hold_checks", {}, Credentials(typed, "whatever1234")
        )
    view = app.load(view.case.case_id)  # the failed attempt is in the case's trail
    with pytest.raises(AuthError):  # a real account with the wrong password: named by account
        app.sign_step(
            view.case.case_id,
            view.version,
            "hold_checks",
            {},
            Credentials("n.alvarez", "not-her-password"),
        )
    events = app.load(view.case.case_id).case.events
    failed = [e for e in events if e.type == SIGNATURE_FAILED]
    assert len(failed) == 2
    assert failed[0].data["username"] is None and failed[0].data["user_id"] is None
    assert failed[1].data["username"] == "n.alvarez" and failed[1].data["user_id"]
    assert all(typed not in str(e.data) for e in events)


def test_a_record_fault_after_the_closing_step_never_unsigns_it(app: Bedside, home: Path) -> None:
    """The sign-off is committed before the records are made: a signing fault then (here the
    signing key left readable by others, which signing refuses) is reported with the view and
    the step stands; catch-up makes the records once the fault is mended."""
    pid = patient(app)
    course = app.start_course(pid, who("dr.okafor"), ATTESTED)
    view = walk(app, open_and_order(app, course.id), until="record_sign_off")
    key = next((home / "pki").glob("signing-key*.pem"))
    key.chmod(0o644)
    view = step(app, view)
    assert view.case.state == "completed" and view.archive_error
    assert app.load(view.case.case_id).case.state == "completed"
    assert app.store.search_archive(case_id=view.case.case_id) == []
    assert app.unarchived_cases() == [view.case.case_id]
    key.chmod(0o600)
    assert app.archive_pending().archived == [view.case.case_id]
    kinds = sorted(r.kind for r in app.store.search_archive(case_id=view.case.case_id))
    assert kinds == ["administration", "compounding"]
