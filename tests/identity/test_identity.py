"""Users, passwords, lockout, aging, roles and the continuous-session rule (21 CFR 11.200)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from workflow.core.clock import FixedClock
from workflow.core.errors import InputError, NotFound
from workflow.core.events import Signer
from workflow.identity import (
    AuthRefused,
    Credentials,
    Identity,
    SecurityPolicy,
    SessionPassword,
)
from workflow.identity.trail_names import unknown_name
from workflow.store import Store

PASSWORD = "correct horse battery"
OTHER = "another long password"


@pytest.fixture
def ann(identity: Identity) -> str:
    identity.add_user("Ann", "Ann Nurse, RN", ["nurse"], PASSWORD, by="u-admin")
    return "ann"


def _refused(identity: Identity, username: str, password: str) -> AuthRefused:
    with pytest.raises(AuthRefused) as err:
        identity.authenticate(username, password)
    return err.value


def _last_reason(identity: Identity, username: str) -> tuple[str, str, str]:
    event = identity.auth_events(username=username, limit=1)[0]
    return event.action, event.outcome, event.reason


def test_add_and_authenticate(identity: Identity, ann: str) -> None:
    user = identity.authenticate("ANN ", PASSWORD)
    assert (user.username, user.printed_name, user.roles) == (
        "ann",
        "Ann Nurse, RN",
        frozenset({"nurse"}),
    )
    assert _last_reason(identity, ann) == ("login", "ok", "ok")
    assert [u.username for u in identity.list_users()] == ["ann"]


@pytest.mark.parametrize(
    ("username", "roles", "password", "field"),
    [
        ("a", ["nurse"], PASSWORD, "username"),
        ("ann smith", ["nurse"], PASSWORD, "username"),
        ("bob", [], PASSWORD, "roles"),
        ("bob", ["surgeon"], PASSWORD, "role"),
        ("bob", ["nurse"], "short", "password"),
        ("bob", ["nurse"], "xxbobxxxxxxxxxx", "password"),
    ],
)
def test_bad_accounts_are_refused(
    identity: Identity, username: str, roles: list[str], password: str, field: str
) -> None:
    with pytest.raises(InputError) as err:
        identity.add_user(username, "Bob", roles, password)
    assert err.value.field == field
    assert password not in err.value.message or field != "password"


def test_usernames_are_never_reused(identity: Identity, ann: str) -> None:
    identity.deactivate(ann, by="u-admin")
    with pytest.raises(InputError, match="never reused"):
        identity.add_user("ann", "Another Ann", ["nurse"], PASSWORD)


def test_unknown_user_and_wrong_password_look_the_same(identity: Identity, ann: str) -> None:
    wrong = _refused(identity, ann, "not the password!")
    unknown = _refused(identity, "nobody", PASSWORD)
    assert (wrong.reason, wrong.message) == (unknown.reason, unknown.message)
    assert wrong.reason == "bad_credentials"
    assert wrong.to_dict()["code"] == "bad_credentials"
    # ...but the audit trail tells them apart.
    assert _last_reason(identity, ann) == ("login", "refused", "wrong_password")
    assert _last_reason(identity, "nobody") == ("login", "refused", "unknown_user")


def test_a_password_typed_as_the_username_is_not_kept(
    identity: Identity, ann: str, store: Store
) -> None:
    """Unknown usernames are kept as a keyed digest (trail_names.py), still counted together,
    still found by an auditor who asks about that name."""
    slip = "Correct-Horse-42"  # the password, in the user-id field
    for _ in range(identity.policy.max_failed_attempts):
        assert _refused(identity, slip, "x").reason == "bad_credentials"
    assert _refused(identity, slip, "x").reason == "account_locked"
    with store.engine.connect() as conn:
        names = [r[0] for r in conn.execute(text("SELECT username FROM auth_events"))]
    assert slip.lower() not in names and slip not in names
    events = identity.auth_events(username=slip)
    assert {e.username for e in events} == {unknown_name(slip.lower(), None)}
    assert [e.reason for e in events if e.outcome == "refused"] == ["account_locked"] + [
        "unknown_user"
    ] * identity.policy.max_failed_attempts
    # With the site key the digest is keyed: a copy of the database is no oracle for guesses.
    keyed = Identity(store, hasher=identity.passwords.hasher, session_key=b"k" * 32)
    _refused(keyed, "other-slip", "x")
    assert keyed.auth_events(username="other-slip")[0].username == unknown_name(
        "other-slip", b"k" * 32
    )
    assert unknown_name("other-slip", b"k" * 32) != unknown_name("other-slip", None)


def test_lockout_after_repeated_failures(identity: Identity, ann: str, clock: FixedClock) -> None:
    policy = identity.policy
    for _ in range(policy.max_failed_attempts):
        assert _refused(identity, ann, "guess guess guess").reason == "bad_credentials"
    locked = _refused(identity, ann, PASSWORD)  # even the right password is refused now
    assert locked.reason == "account_locked"
    assert "locked until 2026-11-02 06:15 UTC" in locked.message
    refusals = identity.auth_events(username=ann, outcome="refused")
    assert [e.reason for e in refusals] == ["account_locked"] + ["wrong_password"] * 5
    assert any(e.action == "locked" for e in identity.auth_events(username=ann))
    clock.advance(minutes=15, seconds=1)
    assert identity.authenticate(ann, PASSWORD).failed_attempts == 0


def test_admin_can_unlock(identity: Identity, ann: str) -> None:
    for _ in range(identity.policy.max_failed_attempts):
        _refused(identity, ann, "guess guess guess")
    identity.unlock(ann, by="u-admin")
    assert identity.authenticate(ann, PASSWORD).username == ann


def test_deactivated_account(identity: Identity, ann: str) -> None:
    identity.deactivate(ann, by="u-admin")
    assert _refused(identity, ann, PASSWORD).reason == "account_deactivated"
    assert _last_reason(identity, ann) == ("login", "refused", "account_deactivated")
    # Without the password nothing about the account is revealed.
    assert _refused(identity, ann, "not the password!").reason == "bad_credentials"
    identity.reactivate(ann, by="u-admin")
    assert identity.authenticate(ann, PASSWORD).active


def test_expired_password_must_be_changed(identity: Identity, ann: str, clock: FixedClock) -> None:
    clock.advance(days=181)
    assert _refused(identity, ann, PASSWORD).reason == "password_expired"
    assert _last_reason(identity, ann) == ("login", "refused", "password_expired")
    with pytest.raises(InputError, match="differ"):
        identity.change_password(ann, PASSWORD, PASSWORD)
    identity.change_password(ann, PASSWORD, OTHER)
    assert identity.authenticate(ann, OTHER).username == ann
    assert _refused(identity, ann, PASSWORD).reason == "bad_credentials"


def test_reset_password_forces_a_change(identity: Identity, ann: str) -> None:
    identity.reset_password(ann, "temporary password 1", by="u-admin")
    assert _refused(identity, ann, "temporary password 1").reason == "password_change_required"
    identity.change_password(ann, "temporary password 1", OTHER)
    assert identity.authenticate(ann, OTHER).must_change_password is False


def test_sign_as_with_credentials(identity: Identity, ann: str) -> None:
    user = identity.get_user(ann)
    signer = identity.sign_as(Credentials(ann, PASSWORD), "nurse")
    assert signer == Signer(user.id, "Ann Nurse, RN", "nurse")
    assert _last_reason(identity, ann) == ("sign", "ok", "ok")


def test_wrong_role_is_refused_and_logged(identity: Identity, ann: str) -> None:
    with pytest.raises(AuthRefused) as err:
        identity.sign_as(Credentials(ann, PASSWORD), "pharmacist")
    assert err.value.reason == "wrong_role"
    assert "does not hold the role pharmacist" in err.value.message
    assert _last_reason(identity, ann) == ("sign", "refused", "wrong_role")
    with pytest.raises(InputError):
        identity.sign_as(Credentials(ann, PASSWORD), "janitor")


def test_sign_as_the_first_allowed_role_held(identity: Identity, ann: str) -> None:
    """A step's allowed roles, in order: the signer signs in the first they hold, read from
    the account the check reads; holding none is the first one refused."""
    ok = Credentials(ann, PASSWORD)
    assert identity.sign_as(ok, ("pharmacist", "nurse")).role == "nurse"
    assert identity.sign_as(ok, ["nurse", "pharmacist"]).role == "nurse"
    with pytest.raises(AuthRefused) as err:
        identity.sign_as(ok, ("pharmacist", "prescriber"))
    assert err.value.reason == "wrong_role"
    assert "does not hold the role pharmacist" in err.value.message
    with pytest.raises(AuthRefused) as bad:
        identity.sign_as(Credentials(ann, "not the password!"), ("pharmacist", "nurse"))
    assert bad.value.reason == "bad_credentials"
    with pytest.raises(InputError):
        identity.sign_as(ok, ("nurse", "janitor"))
    with pytest.raises(InputError):
        identity.sign_as(ok, ())


def test_continuous_session_needs_only_the_password(
    identity: Identity, ann: str, clock: FixedClock
) -> None:
    session = identity.login(ann, PASSWORD)
    for _ in range(3):
        clock.advance(minutes=14)  # each signing keeps the session continuous
        assert identity.sign_as(SessionPassword(session, PASSWORD), "nurse").role == "nurse"
    with pytest.raises(AuthRefused) as err:
        identity.sign_as(SessionPassword(session, "not the password!"), "nurse")
    assert err.value.reason == "bad_credentials"  # the password is still checked every time
    clock.advance(minutes=16)  # idle too long: continuity is broken
    with pytest.raises(AuthRefused) as err:
        identity.sign_as(SessionPassword(session, PASSWORD), "nurse")
    assert err.value.reason == "session_ended"
    assert session.ended
    assert _last_reason(identity, ann) == ("sign", "refused", "session_ended")
    # Outside the session both components work, as always.
    assert identity.sign_as(Credentials(ann, PASSWORD), "nurse").role == "nurse"


def test_session_ends_at_logout_and_after_max_length(
    store: object, ann: str, identity: Identity, clock: FixedClock
) -> None:
    session = identity.login(ann, PASSWORD)
    identity.end_session(session)
    with pytest.raises(AuthRefused, match="ended"):
        identity.sign_as(SessionPassword(session, PASSWORD), "nurse")
    strict = Identity(
        identity.store,
        SecurityPolicy(session_max_length=timedelta(minutes=20)),
        identity.passwords.hasher,
    )
    session = strict.login(ann, PASSWORD)
    for _ in range(2):
        clock.advance(minutes=10)
        strict.sign_as(SessionPassword(session, PASSWORD), "nurse")
    clock.advance(minutes=1)
    with pytest.raises(AuthRefused, match="maximum length"):
        strict.sign_as(SessionPassword(session, PASSWORD), "nurse")


def test_deactivation_stops_an_open_session(identity: Identity, ann: str) -> None:
    session = identity.login(ann, PASSWORD)
    identity.deactivate(ann, by="u-admin")
    with pytest.raises(AuthRefused) as err:
        identity.sign_as(SessionPassword(session, PASSWORD), "nurse")
    assert err.value.reason == "account_deactivated"


def test_passwords_are_never_stored_in_clear(identity: Identity, ann: str) -> None:
    _refused(identity, ann, "a wrong guess here")
    identity.change_password(ann, PASSWORD, OTHER)
    with identity.store.engine.connect() as conn:
        dump = repr(conn.execute(text("SELECT * FROM users")).all())
        dump += repr(conn.execute(text("SELECT * FROM auth_events")).all())
    for secret in (PASSWORD, OTHER, "a wrong guess here"):
        assert secret not in dump
    assert "$argon2id$" in dump
    assert PASSWORD not in repr(Credentials(ann, PASSWORD))


def test_unknown_user_admin_operations(identity: Identity) -> None:
    with pytest.raises(NotFound):
        identity.deactivate("ghost", by="u-admin")
    with pytest.raises(NotFound):
        identity.get_user("ghost")
