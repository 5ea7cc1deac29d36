"""A signature typed at a web tablet is checked, appended and recorded in the tablet's session in
ONE transaction (issue 14.2): the event and the session's 11.200 state commit together or not
at all. Real SQLite and PostgreSQL (the ``app`` fixture runs on both), real argon2id."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from workflow.core.errors import ConflictError
from workflow.dev.demo import _SIGNERS, DEMO_PASSWORD
from workflow.dev.walk import values_for
from workflow.service import Bedside, CaseView
from workflow.service.vocabulary import SessionEnded, WebSession, tablet_proof
from workflow.store.web_sessions import COSIGNERS, VERIFIER

from .test_service import clock_of, new_course, open_and_order, step


def _next(app: Bedside, view: CaseView) -> tuple[str, str, dict[str, object]]:
    """The case's next step, who signs it, and its values now."""
    s = view.case.next_step()
    assert s is not None
    return s.id, _SIGNERS[s.id], values_for(view.case, s.id, clock_of(app).now())


def _session(app: Bedside, token: str) -> WebSession:
    session = app.web_session(token)
    assert session is not None
    return session


def test_a_tablet_signature_moves_the_case_and_its_session_together(
    app: Bedside, home: Path
) -> None:
    app.use_site_key(home)  # continuous sessions keep a password verifier, as `serve` does
    clock = clock_of(app)
    course = new_course(app)
    view = open_and_order(app, course)
    step_id, user, values = _next(app, view)
    signed = app.sign_in(user, DEMO_PASSWORD)
    assert signed.session.data.get(VERIFIER)
    clock.advance(minutes=4)

    # The password alone, inside the continuous period the sign-in started.
    proof = tablet_proof(_session(app, signed.token), DEMO_PASSWORD, None)
    after = app.sign_step(view.case.case_id, view.version, step_id, values, proof)

    assert after.version == view.version + 1
    last = app.load_events(view.case.case_id)[-1]
    assert last.actor is not None
    assert last.actor.name == app.get_user(user).printed_name
    session = _session(app, signed.token)
    assert session.signing_last_used_at == clock.now()
    assert session.signing_started_at == signed.session.signing_started_at
    assert session.data[VERIFIER] == signed.session.data[VERIFIER]  # used, not renewed


def test_a_second_person_at_the_tablet_is_kept_as_its_cosigner(app: Bedside, home: Path) -> None:
    app.use_site_key(home)
    clock = clock_of(app)
    view = open_and_order(app, new_course(app))
    step_id, user, values = _next(app, view)
    # Someone else's tablet: the signer types both components there.
    signed = app.sign_in("n.alvarez" if user != "n.alvarez" else "n.chen", DEMO_PASSWORD)
    clock.advance(minutes=2)
    proof = tablet_proof(_session(app, signed.token), DEMO_PASSWORD, user)
    app.sign_step(view.case.case_id, view.version, step_id, values, proof)

    session = _session(app, signed.token)
    kept = session.data[COSIGNERS][user]
    assert kept["user_id"] == app.get_user(user).id
    assert kept["last_used_at"] == clock.now().isoformat()
    assert kept["verifier"]
    # The tablet's own person did not sign: their period is as the sign-in left it.
    assert session.signing_last_used_at == signed.session.signing_last_used_at


def test_a_signature_in_a_session_ended_meanwhile_writes_no_event(app: Bedside) -> None:
    clock = clock_of(app)
    view = open_and_order(app, new_course(app))
    step_id, user, values = _next(app, view)
    signed = app.sign_in(user, DEMO_PASSWORD)
    proof = tablet_proof(_session(app, signed.token), DEMO_PASSWORD, None)  # the page's copy
    clock.advance(minutes=1)
    app.end_web_session(signed.session.id)  # signed out in another tab, or swept as idle

    with pytest.raises(SessionEnded):
        app.sign_step(view.case.case_id, view.version, step_id, values, proof)

    # The session update failed, so the append was rolled back with it.
    assert app.load(view.case.case_id).version == view.version
    assert len(app.load_events(view.case.case_id)) == view.version
    assert app.store.log_head()[0] == sum(len(app.load_events(r.id)) for r in app.list_cases())


def test_a_failed_append_leaves_the_session_as_it_was(app: Bedside) -> None:
    """The signature is checked (the proof's signing period moves on in memory), then its
    append is refused because another tablet signed the case first: the session row keeps
    its old signing times, exactly as before."""
    clock = clock_of(app)
    view = open_and_order(app, new_course(app))
    step_id, user, values = _next(app, view)
    signed = app.sign_in(user, DEMO_PASSWORD)
    clock.advance(minutes=3)
    before = _session(app, signed.token)
    proof = tablet_proof(before, DEMO_PASSWORD, None)
    roles = view.case.protocol.step(step_id).roles
    signer = app.signer(proof, roles)
    event = view.case.sign(step_id, values, signer, clock.now())
    mark = proof.mark(clock.now())
    assert mark.times is not None and mark.times[1] == clock.now()  # what would be written

    # Another tablet signs this step first (the command line here).
    moved = step(app, app.load(view.case.case_id))
    assert moved.version == view.version + 1
    proto = view.case.protocol
    with pytest.raises(ConflictError):
        app.store.append(
            view.case.case_id,
            view.version,
            [event],
            protocol_version=proto.version,
            protocol_hash=proto.content_hash,
            state=view.case.state,
            session=mark,
        )

    assert _session(app, signed.token) == before
    assert app.load(view.case.case_id).version == moved.version


def test_the_web_sessions_commands_of_the_service(app: Bedside) -> None:
    clock = clock_of(app)
    first = app.sign_in("n.alvarez", DEMO_PASSWORD)
    # A second sign-in at the same browser ends the session its cookie named.
    second = app.sign_in("n.chen", DEMO_PASSWORD, replacing=first.token)
    assert _session(app, first.token).ended_at == clock.now()
    assert _session(app, second.token).ended_at is None
    assert second.user.username == "n.chen"

    clock.advance(minutes=1)
    app.touch_web_session(second.session.id)
    assert _session(app, second.token).last_seen_at == clock.now()
    assert not app.end_idle_web_session(second.session.id, timedelta(minutes=5))
    clock.advance(minutes=6)
    assert app.end_idle_web_session(second.session.id, timedelta(minutes=5))
    clock.advance(minutes=1)
    swept = app.sweep_web_sessions(timedelta(minutes=5), timedelta(days=0))
    assert swept.purged == 2  # both ended sessions are past a zero retention
    assert app.web_session(second.token) is None
