"""The one way tests reach PostgreSQL (fixtures in tests/conftest.py and the reliability
campaigns use it): ``BEDSIDE_TEST_POSTGRES_URL`` (default the local server's database ``test``).
An unreachable server skips the test, or fails it under CI (``BEDSIDE_REQUIRE_POSTGRES=1``)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from workflow.store.engine import normalise_url

PG_URL = os.environ.get("BEDSIDE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# CI sets this so an unreachable PostgreSQL fails the run instead of skipping its tests.
REQUIRE_PG = os.environ.get("BEDSIDE_REQUIRE_POSTGRES") == "1"


def pg_admin() -> Engine:
    """An autocommit engine on the server's admin database; skips (or fails under CI) when the
    server is unreachable."""
    admin = create_engine(normalise_url(PG_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL unreachable at {PG_URL}: {exc.orig}"
        if REQUIRE_PG:
            pytest.fail(message + " (BEDSIDE_REQUIRE_POSTGRES=1)")
        pytest.skip(message)
    return admin


@contextlib.contextmanager
def new_pg_database(prefix: str, before_drop: Callable[[], None] | None = None) -> Iterator[str]:
    """A PostgreSQL database of its own (``<prefix>_<random>``), dropped afterwards by a fresh
    admin connection. The one way tests reach PostgreSQL: an unreachable server skips the test,
    or fails it under CI (``BEDSIDE_REQUIRE_POSTGRES=1``). ``before_drop`` runs first (a
    reliability campaign restarts the server and must see it up again before dropping)."""
    admin_url = normalise_url(PG_URL)
    admin = pg_admin()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        if before_drop is not None:
            before_drop()
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
