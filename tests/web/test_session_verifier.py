"""Through the web: inside a continuous signing session the password is re-checked by the
session's keyed verifier, a second person at the tablet still gets the full argon2id check, and
a wrong password is refused and counted exactly as before."""

from __future__ import annotations

from sqlalchemy import select
from store.helpers import CountingHasher

from workflow.store import _schema as s
from workflow.walk import values_for

from .conftest import PASSWORD, Site


def test_session_signatures_use_the_verifier_and_others_the_full_check(site: Site) -> None:
    hasher = CountingHasher()
    site.bedside.identity.passwords.hasher = hasher
    site.bedside.identity.use_session_key(b"k" * 32)
    view = site.walk_to("double_check_first")
    case_id = view.case.case_id
    nurse = site.client("n.alvarez")
    after_login = hasher.verifications

    def post(step: str, password: str, username: str | None = None) -> int:
        view = site.bedside.load(case_id)
        site.clock.advance(minutes=2)
        body = {
            "expected_version": view.version,
            "values": values_for(view.case, step, site.clock.now()),
            "password": password,
        }
        if username:
            body["username"] = username
        return nurse.post(f"/api/cases/{case_id}/steps/{step}", json=body).status_code

    assert post("double_check_first", PASSWORD) == 200
    assert hasher.verifications == after_login  # the session's own nurse: no second argon2 run
    # The blinded second checker signs on the same tablet with their own id: full check.
    assert post("double_check_second", PASSWORD, username="n.chen") == 200
    assert hasher.verifications == after_login + 1
    # A wrong password in the session is refused, checked in full and counted.
    assert post("pre_infusion", "not the right password") == 401
    assert hasher.verifications == after_login + 2
    with site.bedside.store.engine.connect() as conn:
        failed = conn.execute(
            select(s.users.c.failed_attempts).where(s.users.c.username == "n.alvarez")
        ).scalar_one()
    assert failed == 1
    assert post("pre_infusion", PASSWORD) == 200
    assert hasher.verifications == after_login + 2
    # The verifier sits in the server-side session row, never in what the browser holds.
    with site.bedside.store.engine.connect() as conn:
        rows = conn.execute(select(s.web_sessions.c.data)).scalars().all()
    assert any("password_verifier" in (d or "") for d in rows)
    assert all("password_verifier" not in c for c in nurse.cookies.values())
