"""Site settings: defaults without a file, every key read into frozen objects, bad files refused
with the file, line and key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from workflow.service import Bedside, open_bedside
from workflow.settings import ConfigError, load_settings


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = load_settings(tmp_path)
    assert s.time_zone == "UTC" and s.security.max_failed_attempts == 5
    assert s.web_idle_timeout == timedelta(minutes=15) and s.source == "defaults"


def test_every_key_is_read(tmp_path: Path) -> None:
    (tmp_path / "bedside.yaml").write_text(
        "site: {name: Ward 7B, time_zone: Europe/Oslo}\n"
        "security: {max_failed_attempts: 3, lockout_minutes: 30, password_max_age_days: null,\n"
        "           session_idle_minutes: 10, session_max_hours: 8, min_password_length: 14}\n"
        "web: {idle_timeout_minutes: 5, session_retention_days: 7}\n"
    )
    s = load_settings(tmp_path)
    assert s.site_name == "Ward 7B" and s.time_zone == "Europe/Oslo"
    p = s.security
    assert (p.max_failed_attempts, p.lockout, p.password_max_age) == (
        3,
        timedelta(minutes=30),
        None,
    )
    assert (p.session_idle_limit, p.session_max_length, p.min_password_length) == (
        timedelta(minutes=10),
        timedelta(hours=8),
        14,
    )
    assert s.web_idle_timeout == timedelta(minutes=5)
    assert s.web_session_retention == timedelta(days=7)


@pytest.mark.parametrize(
    ("text", "fragment", "line"),
    [
        ("site: {colour: blue}\n", "unknown key", 1),
        ("site:\n  time_zone: Mars/Olympus\n", "not a known time zone", 2),
        ("security:\n  lockout_minutes: soon\n", "must be a whole number", 2),
        ("security:\n  max_failed_attempts: 0\n", "0 is out of range (allowed: 1 to 100)", 2),
        ("web: {idle_timeout_minutes: 0}\n", "0 is out of range (allowed: 1 to 1440)", 1),
        ("web:\n  session_retention_days: 0\n", "0 is out of range (allowed: 1 to 3650)", 2),
        ("- a list\n", "must be a mapping", 1),
        (
            "security:\n  password_hash_memory_kib: 4096\n",
            "4096 is out of range (allowed: 19456 to 1048576)",
            2,
        ),
        ("security:\n  password_hash_iterations: 1\n", "(allowed: 2 to 10)", 2),
        ("security:\n  password_hash_lanes: 0\n", "(allowed: 1 to 16)", 2),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, text: str, fragment: str, line: int) -> None:
    (tmp_path / "bedside.yaml").write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path)
    hits = [i for i in exc.value.issues if fragment in i.message]
    assert hits, exc.value.issues
    assert abs(hits[0].line - line) <= 1


def test_the_installation_uses_them(tmp_path: Path) -> None:
    (tmp_path / "bedside.yaml").write_text(
        "security: {max_failed_attempts: 2}\nsite: {time_zone: America/Chicago}\n"
    )
    app = open_bedside(tmp_path, archive=False)
    assert app.identity.policy.max_failed_attempts == 2
    assert str(app.tz) == "America/Chicago"


def test_label_symbology_and_bench_balance(tmp_path: Path) -> None:
    """Issue 16: the bag label's symbology and the bench's balance port are site settings."""
    assert load_settings(tmp_path).label_symbology == "gs1_datamatrix"
    assert load_settings(tmp_path).balance_port is None
    (tmp_path / "bedside.yaml").write_text(
        "labels: {symbology: gs1_qr}\nbench: {balance_port: /dev/ttyUSB0, balance_baud: 19200}\n"
    )
    s = load_settings(tmp_path)
    assert (s.label_symbology, s.balance_port, s.balance_baud) == (
        "gs1_qr",
        "/dev/ttyUSB0",
        19200,
    )
    (tmp_path / "bedside.yaml").write_text(
        "labels:\n  symbology: code39\nbench:\n  balance_baud: 9601\n  scale: 1\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path)
    text = str(err.value)
    assert "bedside.yaml:2: labels.symbology: 'code39' is not a symbology" in text
    assert "bedside.yaml:4: bench.balance_baud: 9601 is not a serial rate" in text
    assert "bedside.yaml:5: bench.scale: unknown key" in text


def _stored_cost(app: Bedside, username: str) -> tuple[int, int, int]:
    """The argon2id parameters of the hash the database holds for ``username``."""
    from argon2 import extract_parameters

    with app.store.engine.connect() as conn:
        (stored,) = conn.exec_driver_sql(
            "SELECT password_hash FROM users WHERE username = ?", (username,)
        ).one()
    p = extract_parameters(stored)
    return p.memory_cost, p.time_cost, p.parallelism


def test_the_password_hash_cost_is_the_sites_and_a_changed_cost_rehashes_at_the_next_use(
    tmp_path: Path,
) -> None:
    """The argon2id parameters are a site decision within OWASP's floor; a stored hash keeps
    the parameters it was made with, and the owner's next successful check stores it again at
    the site's cost (so lowering or raising the cost reaches every account in use)."""
    app = open_bedside(tmp_path, archive=False)
    try:
        cost = app.identity.policy.password_hash
        assert (cost.memory_kib, cost.iterations, cost.lanes) == (65536, 3, 4)  # RFC 9106
        app.identity.add_user("n.test", "Nurse Test", ["nurse"], "a-long-password-1", by="t")
        assert _stored_cost(app, "n.test") == (65536, 3, 4)
    finally:
        app.store.close()

    (tmp_path / "bedside.yaml").write_text(
        "security:\n  password_hash_memory_kib: 19456\n  password_hash_iterations: 2\n"
        "  password_hash_lanes: 1\n"
    )
    app = open_bedside(tmp_path, archive=False)
    try:
        # The old hash still verifies; the check stores the password again at the new cost.
        app.identity.authenticate("n.test", "a-long-password-1")
        assert _stored_cost(app, "n.test") == (19456, 2, 1)
    finally:
        app.store.close()
