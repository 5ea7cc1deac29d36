"""The quick pass reads a range's events as a stream (PostgreSQL: libpq's chunks of
``_FETCH`` rows; SQLite: the cursor), on SQLite and PostgreSQL. Made one row a chunk here, so
that a range spans many chunks, an intact log is proven as the full walk finds it; a range not
proven leaves the connection in its transaction, readable, and the full walk reports the
tamper on it; the same through the server-side cursor that streams them where libpq is
older than 17. (The quick pass reads such a range to its end rather than drop it: dropping a
PostgreSQL stream the server is still sending cancels the statement and aborts the
transaction. A log this small is sent whole before the check stops, so this test pins the
outcome; it cannot make the server still be sending.)"""

from __future__ import annotations

import pytest
from psycopg.pq import TransactionStatus

from tests.store.test_verify_parallel import _edit, seeded
from workflow.store import Store, verify_quick

__all__ = ["seeded"]  # the fixture, shared with test_verify_parallel


@pytest.fixture(params=["chunked", "server-side cursor"])
def one_row_chunks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """One row a chunk; on PostgreSQL both ways of streaming: libpq's chunked rows, and the
    server-side cursor used where libpq is older than 17."""
    monkeypatch.setattr(verify_quick, "_FETCH", 1)
    if request.param != "chunked":
        monkeypatch.setattr(verify_quick, "_chunked_rows", lambda: False)


@pytest.mark.usefixtures("one_row_chunks")
def test_an_intact_log_streamed_in_many_chunks_is_proven(seeded: Store) -> None:
    full = seeded.verify_chains({0, 7}, quick=False)
    assert full.ok
    with seeded.engine.connect() as conn:
        assert verify_quick.quick_verify(conn, {0, 7}, 1) == full
        assert verify_quick.quick_verify(conn, {0, 7}, 2) == full


@pytest.mark.usefixtures("one_row_chunks")
def test_a_range_not_proven_leaves_the_transaction_readable(seeded: Store) -> None:
    length, _ = seeded.log_head()
    _edit(seeded, 2, "data", '{"tampered":true}')  # early: most of the range is left unread
    with seeded.engine.connect() as conn:
        assert verify_quick.quick_verify(conn, set(), 1) is None
        driver = conn.connection.driver_connection
        if seeded.dialect == "postgresql":
            status = driver.info.transaction_status  # type: ignore[union-attr]
            assert status == TransactionStatus.INTRANS
        assert conn.exec_driver_sql("SELECT count(*) FROM events").scalar() == length
    report = seeded.verify_chains(jobs=1)
    problem = report.first_problem
    assert problem is not None and problem.position == 2
    assert "changed after it was written" in problem.message
    assert seeded.verify_chains(quick=False) == report
