"""Shared by the interop, overlay and pictures tests: an installation and dose walks.

Imported as ``interop.support`` (pytest puts ``tests/`` on sys.path for the rootdir conftest).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from argon2 import PasswordHasher

from workflow.core.clock import FixedClock
from workflow.core.machine import Case
from workflow.core.protocol import Protocol
from workflow.dev.demo import _SIGNERS, DEMO_PASSWORD, DEMO_PEOPLE, DEMO_WEIGHT_KG
from workflow.dev.walk import TEST_PACE, ServiceWalk, order_values, values_for, walk_dose
from workflow.identity import Credentials, Identity
from workflow.service import Bedside, CaseView
from workflow.store import Store, open_store

START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


def who(username: str) -> Credentials:
    return Credentials(username, DEMO_PASSWORD)


def cheap_identity(store: Store) -> Identity:
    # Real argon2id with cheap parameters, as in the service tests.
    return Identity(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@contextmanager
def installation(
    db_url: str, protocol: Protocol, clock: FixedClock | None = None
) -> Iterator[Bedside]:
    clock = clock or FixedClock(START)
    store = open_store(db_url, clock=clock)
    identity = cheap_identity(store)
    app = Bedside(store, protocol, clock=clock, identity=identity)
    for p in DEMO_PEOPLE:
        identity.add_user(p.username, p.name, [p.role], DEMO_PASSWORD, by="test")
    try:
        yield app
    finally:
        store.close()


def reopen(app: Bedside, protocol: Protocol) -> Bedside:
    """The same store and people under another protocol (a new version was installed)."""
    return Bedside(app.store, protocol, clock=app.clock, identity=app.identity)


def clock_of(app: Bedside) -> FixedClock:
    assert isinstance(app.clock, FixedClock)
    return app.clock


def new_course(app: Bedside, mrn: str = "MRN-1") -> str:
    patient = app.store.add_patient(
        mrn=mrn, family_name="Quist", given_name="Ada", date_of_birth="1968-05-02", created_by="t"
    )
    p = app.protocol
    return app.store.start_course(
        patient.id, protocol_id=p.id, protocol_version=p.version, protocol_hash=p.content_hash
    ).id


def open_and_order(
    app: Bedside,
    course_id: str,
    weight: str = DEMO_WEIGHT_KG,
    ward: str = "unassigned",
    due_in: timedelta = timedelta(minutes=10),
) -> CaseView:
    """Open a dose due ``due_in`` from now and sign its order, as the prescriber."""
    clock = clock_of(app)
    view = app.open_case(course_id, clock.now() + due_in, who("dr.okafor"), ward=ward)
    clock.advance(minutes=5)
    return app.sign_step(
        view.case.case_id,
        view.version,
        "order",
        order_values(weight, clock.now() - timedelta(hours=1)),
        who("dr.okafor"),
    )


def step(
    app: Bedside, view: CaseView, minutes: float = 5, user: str | None = None, **overrides: Any
) -> CaseView:
    clock = clock_of(app)
    clock.advance(minutes=minutes)
    s = view.case.next_step()
    assert s is not None, view.case.state
    values = values_for(view.case, s.id, clock.now())
    for item in s.items:  # attestations an overlay added
        if item.must_be is True and item.id not in values:
            values[item.id] = True
    values.update(overrides)
    values = {k: v for k, v in values.items() if v is not None}
    return app.sign_step(view.case.case_id, view.version, s.id, values, who(user or _SIGNERS[s.id]))


def walk(app: Bedside, view: CaseView, until: str = "completed", **overrides: Any) -> CaseView:
    """Sign every step until state ``until`` (5 minutes a step, 15 for the infusion); each
    override goes to the step that has that item."""

    def values(case: Case, step_id: str, now: datetime) -> dict[str, Any]:
        s = case.protocol.step(step_id)
        out = values_for(case, step_id, now)
        for item in s.items:  # attestations an overlay added
            if item.must_be is True and item.id not in out:
                out[item.id] = True
        out.update({k: v for k, v in overrides.items() if s.item(k) is not None})
        return {k: v for k, v in out.items() if v is not None}

    service = ServiceWalk(app, view, who, _SIGNERS)
    walk_dose(service.case, clock_of(app), service.sign, pace=TEST_PACE, stop=until, values=values)
    assert service.view.case.state == until, service.view.case.state
    return cast(CaseView, service.view)


def held_and_skipped(app: Bedside, course_id: str, **findings: Any) -> CaseView:
    """A dose held at its pre-dose checks and then not given (cancelled: never made up)."""
    view = walk(app, open_and_order(app, course_id), until="hold_checks")
    view = step(app, view, **findings)
    assert view.case.state == "held", view.case.state
    clock_of(app).advance(minutes=5)
    return app.side_exit(
        view.case.case_id, view.version, "cancel", "dose_skipped_after_hold", "", who("dr.okafor")
    )


def given_dose(
    app: Bedside, course_id: str, ward: str = "unassigned", **overrides: Any
) -> CaseView:
    return walk(app, open_and_order(app, course_id, ward=ward), **overrides)


def next_slot(app: Bedside, course_id: str) -> None:
    """Move the clock to when the course's next dose may be given."""
    nd = app.next_dose(course_id, clock_of(app).now() + timedelta(hours=8))
    clock = clock_of(app)
    if nd.earliest_at > clock.now():
        clock.advance(seconds=(nd.earliest_at - clock.now()).total_seconds())
