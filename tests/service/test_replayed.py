"""Loads replay only the events added since this process last replayed the case
(workflow/service/replayed.py), on SQLite and PostgreSQL: the case each load returns is the one
a full replay of the stored events gives, it is the caller's alone, and any change to the rows
(a new event, an edit with or without the hashes recomputed, a new site product) is seen."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from interop.support import clock_of, open_and_order, step, walk, who
from interop.support import new_course as shared_new_course
from sqlalchemy import update
from store.forgery import forge_event

from workflow.core.errors import IntegrityError
from workflow.core.machine import Case
from workflow.dev.demo import _SIGNERS
from workflow.dev.walk import values_for
from workflow.service import Bedside, CaseView
from workflow.store import Store
from workflow.store import _schema as s

GTIN = "00614141000418"  # a made-up GTIN with a valid check digit (test data, not a product)


def _state(case: Case) -> dict[str, Any]:
    return {k: v for k, v in vars(case).items() if k not in ("protocol", "_machine")}


def _as_replayed(view: CaseView) -> None:
    """The loaded case is, attribute for attribute, a full replay of its own events."""
    case = view.case
    full = Case.replay(case.protocol, case.case_id, case.events)
    assert _state(case) == _state(full)


def _ordered(app: Bedside, mrn: str = "MRN-1") -> CaseView:
    return open_and_order(app, shared_new_course(app, mrn))


def test_each_load_replays_only_the_new_events(app: Bedside) -> None:
    view = _ordered(app)
    cid = view.case.case_id
    hits = app.replayed.hits
    for _ in range(4):
        view = step(app, app.load(cid))
        loaded = app.load(cid)
        assert loaded.version == view.version
        _as_replayed(loaded)
    assert app.replayed.hits >= hits + 8  # every load after the first replayed one event or none


def test_the_loaded_case_is_the_callers_own(app: Bedside) -> None:
    view = _ordered(app)
    cid = view.case.case_id
    mine = app.load(cid)
    clock = clock_of(app)
    nxt = mine.case.next_step()
    assert nxt is not None
    signer = app.signer(who(_SIGNERS[nxt.id]), nxt.roles)
    mine.case.sign(nxt.id, values_for(mine.case, nxt.id, clock.now()), signer, clock.now())
    again = app.load(cid)  # what the store holds: the sign above was never appended
    assert again.version == view.version and again.case.state == view.case.state
    assert again.case is not mine.case
    _as_replayed(again)


def test_an_event_written_by_another_server_is_replayed(app: Bedside) -> None:
    view = _ordered(app)
    cid = view.case.case_id
    app.load(cid)
    other = Bedside(Store(app.store.engine, app.clock), app.protocol, clock=app.clock)
    other.identity = app.identity
    moved = step(other, other.load(cid))
    loaded = app.load(cid)
    assert loaded.version == moved.version and loaded.case.state == moved.case.state
    _as_replayed(loaded)


def test_a_forged_event_is_replayed_not_remembered(app: Bedside) -> None:
    """An edit whose forger recomputed every hash passes the chain walk: the case replayed is
    the forged one (what only outside evidence can tell, tests/store/forgery.py), never the
    case remembered from before the edit."""
    view = step(app, _ordered(app))
    cid = view.case.case_id
    assert app.load(cid).case.ward != "Forged ward"
    forge_event(app.store.engine, cid, 1, lambda data: data.update(ward="Forged ward"))
    loaded = app.load(cid)
    assert loaded.case.ward == "Forged ward"
    _as_replayed(loaded)


def test_an_edited_event_is_refused_after_loads(app: Bedside) -> None:
    view = step(app, _ordered(app))
    cid = view.case.case_id
    app.load(cid)
    with app.store.engine.begin() as conn:
        conn.execute(
            update(s.events)
            .where(s.events.c.case_id == cid, s.events.c.seq == 2)
            .values(data='{"values":{}}')
        )
    with pytest.raises(IntegrityError, match="event 2 was changed"):
        app.load(cid)


def test_a_forged_new_event_fails_as_without_the_cache(app: Bedside) -> None:
    """The remembered case takes the last event and it fails: the load replays in full, so it
    raises what a server that never loaded the case raises."""
    view = step(app, _ordered(app))
    cid = view.case.case_id
    app.load(cid)
    forge_event(app.store.engine, cid, view.version, lambda data: data["values"].update(bogus="1"))
    cold = Bedside(Store(app.store.engine, app.clock), app.protocol, clock=app.clock)
    with pytest.raises(Exception) as expected:
        cold.load(cid)
    with pytest.raises(type(expected.value)) as got:
        app.load(cid)
    assert str(got.value) == str(expected.value)


def test_a_new_site_product_replays_on_the_new_list(app: Bedside) -> None:
    view = _ordered(app)
    cid = view.case.case_id
    before = app.load(cid).case.protocol
    assert app.load(cid).case.protocol is before  # the same list: the same protocol object
    app.add_to_formulary(GTIN, "vial", "Proleukin vial", "22 million IU", who("p.lindqvist"))
    after = app.load(cid)
    assert after.case.protocol is not before
    assert GTIN in {p.gtin for p in after.case.protocol.formulary}
    assert app.load(cid).case.protocol is after.case.protocol
    _as_replayed(after)


def test_threads_loading_and_signing_one_case(app: Bedside) -> None:
    """Loads from many threads while the case moves on: each gets a case equal to a full
    replay of its own events, which it may change without touching anyone else's."""
    view = _ordered(app)
    cid = view.case.case_id
    failures: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                mine = app.load(cid)
                _as_replayed(mine)
                mine.case.flags.append(mine.case.flags[0] if mine.case.flags else None)  # type: ignore[arg-type]
                mine.case.history.clear()  # the caller's own: nobody else's case changes
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        view = walk(app, app.load(cid), until="double_check_first")
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not failures, failures[0]
    assert view.case.state == "double_check_first"
    _as_replayed(app.load(cid))
