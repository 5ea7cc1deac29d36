"""Through the web: inside a continuous signing session the password is re-checked by the
session's keyed verifier, a second person at the tablet still gets the full argon2id check, and
a wrong password is refused and counted exactly as before."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from store.helpers import CountingHasher

from workflow.dev.walk import values_for
from workflow.service import CaseView
from workflow.store import _schema as s
from workflow.web import WebSettings
from workflow.web.sweeper import sweep_sessions

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


def _session_rows(site: Site) -> list[Any]:
    with site.bedside.store.engine.connect() as conn:
        return list(conn.execute(select(s.web_sessions)).all())


def test_a_lapsed_signing_period_wipes_its_verifier_and_a_full_check_makes_a_new_one(
    site: Site,
) -> None:
    """Issue 13.2: the verifier stayed in a session whose 11.200 signing period had lapsed,
    though it could never be used again: a database copy plus `pki/` was an HMAC-speed target.
    It is now wiped by the request that finds the period lapsed; the next signature, with id
    and password, runs the full check and leaves a new verifier for the new period."""
    hasher = CountingHasher()
    identity = site.bedside.identity
    identity.passwords.hasher = hasher
    identity.use_session_key(b"k" * 32)
    view = site.walk_to("double_check_first")
    nurse = site.client("n.alvarez")
    (row,) = _session_rows(site)
    assert "password_verifier" in row.data
    # The tablet stays in use (the web session lives), but nobody signs for 16 minutes.
    site.clock.advance(minutes=10)
    assert nurse.get("/api/session").status_code == 200
    site.clock.advance(minutes=6)
    answer = nurse.get("/api/session")
    assert answer.status_code == 200 and answer.json()["signing_lapsed"] is True
    (row,) = _session_rows(site)
    assert row.ended_at is None and "password_verifier" not in row.data
    # The password alone is refused now; id and password start a new period.
    body = {
        "expected_version": view.version,
        "values": values_for(view.case, "double_check_first", site.clock.now()),
        "password": PASSWORD,
    }
    url = f"/api/cases/{view.case.case_id}/steps/double_check_first"
    assert nurse.post(url, json=body).status_code == 401
    view = site.bedside.load(view.case.case_id)  # the refusal is in the case's trail
    before = hasher.verifications
    body = {**body, "expected_version": view.version, "username": "n.alvarez"}
    assert nurse.post(url, json=body).status_code == 200
    assert hasher.verifications == before + 1
    (row,) = _session_rows(site)
    assert "password_verifier" in row.data
    # ... and the next password-only signature in it uses that new verifier.
    view = site.bedside.load(view.case.case_id)
    site.clock.advance(minutes=1)
    before = hasher.verifications
    body = {
        "expected_version": view.version,
        "values": values_for(view.case, "double_check_second", site.clock.now()),
        "password": PASSWORD,
        "username": "n.chen",
    }
    url = f"/api/cases/{view.case.case_id}/steps/double_check_second"
    assert nurse.post(url, json=body).status_code == 200
    view = site.bedside.load(view.case.case_id)
    before = hasher.verifications
    body = {
        "expected_version": view.version,
        "values": values_for(view.case, "pre_infusion", site.clock.now()),
        "password": PASSWORD,
    }
    url = f"/api/cases/{view.case.case_id}/steps/pre_infusion"
    assert nurse.post(url, json=body).status_code == 200
    assert hasher.verifications == before


def test_the_sweep_ends_idle_sessions_drops_lapsed_verifiers_and_purges_old_ones(
    site: Site,
) -> None:
    """Issue 13.2: a session nobody came back to was never ended, so its verifier (and every
    co-signer's) stayed in the database for good. `bedside serve` now sweeps at start-up and
    every few minutes: idle sessions end with their verifiers, lapsed verifiers of live
    sessions go, and ended sessions older than the retention are deleted."""
    identity = site.bedside.identity
    identity.use_session_key(b"k" * 32)
    settings = WebSettings(idle_timeout=timedelta(minutes=30), session_retention=timedelta(days=2))
    abandoned = site.client("n.alvarez")
    del abandoned  # the tablet was put down; nobody signs out
    site.clock.advance(minutes=20)
    kept = site.client("n.chen")  # signs in later and stays in use
    site.clock.advance(minutes=14)
    assert kept.get("/api/session").status_code == 200
    swept = sweep_sessions(site.bedside, settings)
    # n.alvarez: 34 minutes without a request, past the 30-minute web timeout: ended, wiped.
    # n.chen: used a minute ago, but no signature for 14 minutes: still within 11.200.
    assert (swept.ended, swept.wiped, swept.purged) == (1, 0, 0)
    rows = {r.username: r for r in _session_rows(site)}
    assert rows["n.alvarez"].ended_at is not None and rows["n.alvarez"].data == "{}"
    assert "password_verifier" in rows["n.chen"].data
    site.clock.advance(minutes=2)  # 16 minutes since n.chen's last signature: lapsed
    assert kept.get("/api/session").status_code == 200
    rows = {r.username: r for r in _session_rows(site)}
    assert "password_verifier" not in rows["n.chen"].data  # wiped by that request already
    site.clock.advance(days=2, minutes=1)
    swept = sweep_sessions(site.bedside, settings)
    assert swept.purged == 1  # n.alvarez's row: ended over two days ago
    rows = {r.username: r for r in _session_rows(site)}
    assert set(rows) == {"n.chen"} and rows["n.chen"].ended_at is not None


def test_the_sweep_drops_a_lapsed_verifier_of_a_session_that_is_not_visited(
    site: Site,
) -> None:
    """The request path wipes what it finds lapsed; the sweep does the same for a live session
    no request touches (a long web timeout outlasting 11.200's 15 minutes), co-signers
    included."""
    identity = site.bedside.identity
    identity.use_session_key(b"k" * 32)
    settings = WebSettings(idle_timeout=timedelta(hours=2))
    site.client("n.alvarez")
    with site.bedside.store.engine.begin() as conn:
        conn.execute(
            update(s.web_sessions).values(
                data='{"password_verifier": "a$b", "cosigners": {"n.chen": {"user_id": "x", '
                '"started_at": "2026-11-02T06:00:00+00:00", "last_used_at": '
                '"2026-11-02T06:00:00+00:00", "verifier": "c$d"}}}'
            )
        )
    assert sweep_sessions(site.bedside, settings).wiped == 0  # all within the limits
    site.clock.advance(minutes=16)
    swept = sweep_sessions(site.bedside, settings)
    assert (swept.ended, swept.wiped) == (0, 1)
    (row,) = _session_rows(site)
    assert row.ended_at is None and row.data == "{}"


def test_serve_sweeps_before_it_serves(site: Site) -> None:
    """The app's lifespan sweeps once before the first request, then on a schedule."""
    site.bedside.identity.use_session_key(b"k" * 32)
    site.client("n.alvarez")
    site.clock.advance(minutes=16)
    with TestClient(site.app):
        (row,) = _session_rows(site)
        assert row.ended_at is not None and row.data == "{}"
