"""Through the web: inside a continuous signing session the password is re-checked by the
session's keyed verifier, a second person at the tablet still gets the full argon2id check, and
a wrong password is refused and counted exactly as before."""

from __future__ import annotations

from sqlalchemy import select
from store.helpers import CountingHasher

from workflow.service import CaseView
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


def test_a_second_checker_who_signed_here_recently_gets_the_verifier_too(site: Site) -> None:
    """The blinded second checker types id and password every time; after one full check at
    this tablet, later ones within the continuity limits use that person's verifier. A wrong
    password, a lapse, a password change or the end of the session bring the full check
    back."""
    hasher = CountingHasher()
    identity = site.bedside.identity
    identity.passwords.hasher = hasher
    identity.use_session_key(b"k" * 32)

    def dose_of_a_new_patient(n: int) -> CaseView:
        site.course_id = site.new_course(f"MRN-CS-{n}", "Cosign", f"Pat {n}", "1970-01-01")
        return site.walk_to("double_check_second")

    doses = [dose_of_a_new_patient(n) for n in range(7)]
    nurse = site.client("n.alvarez")  # the tablet's session, kept alive throughout

    def second_check() -> tuple[int, int]:
        """The next dose's second check at this tablet; (status, argon2 runs it cost)."""
        view = doses.pop(0)
        site.clock.advance(minutes=1)
        before = hasher.verifications
        body = {
            "expected_version": view.version,
            "values": values_for(view.case, "double_check_second", site.clock.now()),
            "password": password["n.chen"],
            "username": "n.chen",
        }
        r = nurse.post(f"/api/cases/{view.case.case_id}/steps/double_check_second", json=body)
        if r.status_code == 401:
            doses.insert(0, site.bedside.load(view.case.case_id))  # tried again (refusal logged)
        return r.status_code, hasher.verifications - before

    password = {"n.chen": PASSWORD}
    assert second_check() == (200, 1)  # first time at this tablet: full check
    assert second_check() == (200, 0)  # again, within 15 minutes: the verifier
    with site.bedside.store.engine.connect() as conn:
        rows = conn.execute(select(s.web_sessions.c.data)).scalars().all()
    assert any('"cosigners"' in (d or "") and "n.chen" in (d or "") for d in rows)
    password["n.chen"] = "not the right password"
    assert second_check() == (401, 1)  # a mismatch is never decided by the verifier
    with site.bedside.store.engine.connect() as conn:
        failed = conn.execute(
            select(s.users.c.failed_attempts).where(s.users.c.username == "n.chen")
        ).scalar_one()
    assert failed == 1
    password["n.chen"] = PASSWORD
    assert second_check() == (200, 0)
    # The tablet stays in use, but n.chen has not signed here for 16 minutes: full check.
    site.clock.advance(minutes=10)
    assert nurse.get("/api/session").status_code == 200
    site.clock.advance(minutes=6)
    assert second_check() == (200, 1)
    identity.change_password("n.chen", PASSWORD, "a brand new long password")
    password["n.chen"] = "a brand new long password"
    assert second_check() == (200, 1)  # the old verifier is bound to the old hash
    assert second_check() == (200, 0)
