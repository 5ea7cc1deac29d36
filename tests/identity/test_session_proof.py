"""The continuous session's password verifier (workflow/identity/session_proof.py): it may
stand in for a second argon2id run only when it proves exactly what that run would."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from store.helpers import CountingHasher

from workflow.core.clock import FixedClock
from workflow.identity import AuthRefused, Credentials, Identity, SessionPassword
from workflow.identity.session_proof import KEY_FILE, SessionVerifier, load_session_key
from workflow.store import Store
from workflow.store import _schema as s

PASSWORD = "correct horse battery"
NEW_PASSWORD = "another long password"
KEY = bytes(range(32))


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def keyed(store: Store, hasher: CountingHasher) -> Identity:
    identity = Identity(store, hasher=hasher, session_key=KEY)
    identity.add_user("ann", "Ann Nurse, RN", ["nurse"], PASSWORD, by="u-admin")
    return identity


def _failed_attempts(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(s.users.c.failed_attempts)).scalar_one())


def test_a_session_signature_needs_no_second_argon2_run(
    keyed: Identity, hasher: CountingHasher, clock: FixedClock
) -> None:
    session = keyed.login("ann", PASSWORD)
    assert session.verifier and PASSWORD not in session.verifier
    assert "verifier" not in repr(session) and PASSWORD not in repr(session)
    before = hasher.verifications
    for _ in range(3):
        clock.advance(minutes=5)
        signer = keyed.sign_as(SessionPassword(session, PASSWORD), "nurse")
        assert (signer.name, signer.role) == ("Ann Nurse, RN", "nurse")
    assert hasher.verifications == before
    # Every signature is still on the security log, like any other.
    signs = keyed.auth_events(username="ann", limit=10)
    assert [e.action for e in signs[:3]] == ["sign"] * 3


def test_a_wrong_password_gets_the_full_check_and_counts_toward_lockout(
    keyed: Identity, hasher: CountingHasher, store: Store
) -> None:
    session = keyed.login("ann", PASSWORD)
    before = hasher.verifications
    with pytest.raises(AuthRefused) as err:
        keyed.sign_as(SessionPassword(session, "not the password at all"), "nurse")
    assert err.value.reason == "bad_credentials"
    assert hasher.verifications == before + 1
    assert _failed_attempts(store) == 1
    for _ in range(keyed.policy.max_failed_attempts - 1):
        with pytest.raises(AuthRefused):
            keyed.sign_as(SessionPassword(session, "still not it, sorry"), "nurse")
    # Locked: the right password, verifier or not, signs nothing now.
    with pytest.raises(AuthRefused) as err:
        keyed.sign_as(SessionPassword(session, PASSWORD), "nurse")
    assert err.value.reason == "account_locked"


def test_a_password_change_retires_every_older_verifier(
    keyed: Identity, hasher: CountingHasher
) -> None:
    session = keyed.login("ann", PASSWORD)
    old_verifier = session.verifier
    keyed.change_password("ann", PASSWORD, NEW_PASSWORD)
    with pytest.raises(AuthRefused):
        keyed.sign_as(SessionPassword(session, PASSWORD), "nurse")
    before = hasher.verifications
    keyed.sign_as(SessionPassword(session, NEW_PASSWORD), "nurse")
    assert hasher.verifications == before + 1  # full check against the new hash ...
    assert session.verifier and session.verifier != old_verifier  # ... which renews it
    keyed.sign_as(SessionPassword(session, NEW_PASSWORD), "nurse")
    assert hasher.verifications == before + 1


def test_deactivation_and_roles_still_apply(keyed: Identity) -> None:
    session = keyed.login("ann", PASSWORD)
    with pytest.raises(AuthRefused) as err:
        keyed.sign_as(SessionPassword(session, PASSWORD), "pharmacist")
    assert err.value.reason == "wrong_role"
    keyed.deactivate("ann", by="u-admin")
    with pytest.raises(AuthRefused) as err:
        keyed.sign_as(SessionPassword(session, PASSWORD), "nurse")
    assert err.value.reason == "account_deactivated"


def test_a_lapsed_session_is_refused_before_any_verifier_is_looked_at(
    keyed: Identity, clock: FixedClock
) -> None:
    session = keyed.login("ann", PASSWORD)
    clock.advance(minutes=keyed.policy.session_idle_limit // timedelta(minutes=1) + 1)
    with pytest.raises(AuthRefused) as err:
        keyed.sign_as(SessionPassword(session, PASSWORD), "nurse")
    assert err.value.reason == "session_ended"


@pytest.mark.parametrize("verifier", ["", "no-dollar", "$", "abc$", "00" * 16 + "$" + "ff" * 32])
def test_a_damaged_verifier_falls_back_to_the_full_check(
    keyed: Identity, hasher: CountingHasher, verifier: str
) -> None:
    session = keyed.login("ann", PASSWORD)
    session.verifier = verifier
    before = hasher.verifications
    keyed.sign_as(SessionPassword(session, PASSWORD), "nurse")
    assert hasher.verifications == before + 1


def test_without_a_site_key_every_signature_runs_argon2(
    store: Store, hasher: CountingHasher
) -> None:
    identity = Identity(store, hasher=hasher)
    identity.add_user("ann", "Ann Nurse, RN", ["nurse"], PASSWORD, by="u-admin")
    session = identity.login("ann", PASSWORD)
    assert session.verifier is None
    before = hasher.verifications
    identity.sign_as(SessionPassword(session, PASSWORD), "nurse")
    identity.sign_as(Credentials("ann", PASSWORD), "nurse")
    assert hasher.verifications == before + 2


def test_verifiers_are_bound_to_their_key_user_and_hash() -> None:
    one, other = SessionVerifier(KEY), SessionVerifier(bytes(32))
    v = one.make("u-1", "$argon2id$h1", PASSWORD)
    assert one.matches(v, "u-1", "$argon2id$h1", PASSWORD)
    assert not other.matches(v, "u-1", "$argon2id$h1", PASSWORD)
    assert not one.matches(v, "u-2", "$argon2id$h1", PASSWORD)
    assert not one.matches(v, "u-1", "$argon2id$h2", PASSWORD)
    assert not one.matches(v, "u-1", "$argon2id$h1", PASSWORD + "x")
    assert one.make("u-1", "$argon2id$h1", PASSWORD) != v  # salted: never the same twice
    with pytest.raises(ValueError, match="32 bytes"):
        SessionVerifier(b"short")


def test_the_key_file_is_made_once_private_and_refused_when_short(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    key = load_session_key(folder)
    path = folder / KEY_FILE
    assert len(key) == 32 and load_session_key(folder) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(b"cut off")
    with pytest.raises(OSError, match="shorter than 32 bytes"):
        load_session_key(folder)


def test_the_web_session_keeps_the_verifier_server_side_and_drops_it_at_the_end(
    store: Store, keyed: Identity, clock: FixedClock
) -> None:
    from workflow.store import web_sessions

    signing = keyed.login("ann", PASSWORD)
    token, session = web_sessions.create(
        store.engine, signing.user_id, signing.username, clock.now(), verifier=signing.verifier
    )
    assert signing.verifier and signing.verifier not in token
    stored: Any = web_sessions.get(store.engine, token)
    assert stored.data[web_sessions.VERIFIER] == signing.verifier
    web_sessions.end(store.engine, session.id, clock.now())
    ended: Any = web_sessions.get(store.engine, token)
    assert ended.ended_at is not None and ended.data == {}
