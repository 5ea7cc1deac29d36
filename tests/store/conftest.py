"""Store tests run on a SQLite file and on a real PostgreSQL (``db_url``, ``store`` and
``identity`` in tests/conftest.py): one fresh database per test session, one schema per test.
When the server is unreachable those runs are skipped, unless ``BEDSIDE_REQUIRE_POSTGRES=1``
(CI), which makes them fail."""

from __future__ import annotations

from datetime import UTC, datetime

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)  # the shared clock's start (tests/conftest.py)
