"""A web request's session and its account are read in one transaction
(People.web_session_and_user), on SQLite and PostgreSQL: the same as the two reads apart."""

from __future__ import annotations

from sqlalchemy import update

from workflow.dev.demo import DEMO_PASSWORD
from workflow.service import Bedside
from workflow.store import _schema as s


def test_the_session_and_its_user_read_together(app: Bedside) -> None:
    signed = app.sign_in("n.alvarez", DEMO_PASSWORD)
    found = app.web_session_and_user(signed.token)
    assert found is not None
    session, user = found
    assert session == app.web_session(signed.token)
    assert user == app.get_user_by_id(session.user_id) == signed.user
    assert app.web_session_and_user("not-a-token") is None


def test_the_user_is_the_one_the_session_row_names_now(app: Bedside) -> None:
    """Read from the row, not remembered: a row edited to name another account names it."""
    signed = app.sign_in("n.alvarez", DEMO_PASSWORD)
    other = app.get_user("t.mensah")
    with app.store.engine.begin() as conn:
        conn.execute(
            update(s.web_sessions)
            .where(s.web_sessions.c.id == signed.session.id)
            .values(user_id=other.id)
        )
    found = app.web_session_and_user(signed.token)
    assert found is not None and found[1] == other
