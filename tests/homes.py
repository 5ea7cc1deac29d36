"""Homes for tests that sign many steps through real processes (`bedside` children, servers).

They set the site's argon2id cost to OWASP's floor (security.password_hash_*, a setting every
site has; workflow/identity/policy.py) instead of the default profile's ~300 ms of CPU a check:
the code path is the one a site runs, and a campaign of hundreds of signatures takes a third
less CPU. In-process tests use an even cheaper hasher passed to Identity (tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

FLOOR_COST_SETTINGS = (
    "# tests: argon2id at OWASP's floor (workflow/identity/policy.py)\n"
    "security:\n"
    "  password_hash_memory_kib: 19456\n"
    "  password_hash_iterations: 2\n"
    "  password_hash_lanes: 1\n"
)


def floor_cost_home(home: Path) -> Path:
    """``home`` created (if new) with a bedside.yaml setting argon2id at OWASP's floor; `bedside
    init` keeps an existing bedside.yaml (its zone is then UTC, the default). Private, as
    `bedside init` makes a home (folder 0700, file 0600): tests check every file's mode."""
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    settings = home / "bedside.yaml"
    settings.write_text(FLOOR_COST_SETTINGS, encoding="utf-8")
    settings.chmod(0o600)
    return home
