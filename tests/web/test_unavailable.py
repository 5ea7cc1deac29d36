"""A database that stops answering is 503 "retry shortly" in the error shape, never a 400 that
tells a scripted client its request was wrong, and never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from databases import new_pg_database, pg_admin
from sqlalchemy import text
from sqlalchemy.engine import make_url

from workflow.core.protocol import Protocol

from .conftest import login, make_site


@pytest.mark.postgres
def test_lost_database_is_503_with_retry_after(home: Path, protocol: Protocol) -> None:
    # A database of its own: refusing connections to it must not touch any other test's.
    with new_pg_database("bedside_down") as url:
        _refused_then_back(url, home, protocol)


def _refused_then_back(url: str, home: Path, protocol: Protocol) -> None:
    name = make_url(url).database
    admin = pg_admin()
    site, store = make_site(url, home, protocol)
    try:
        client = site.client("n.alvarez")
        assert client.get("/api/ward").status_code == 200
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                {"d": name},
            )
        down = client.get("/api/ward")
        assert down.status_code == 503, down.text
        assert down.headers["retry-after"] == "5"
        body = down.json()
        assert body["code"] == "unavailable"
        assert "try again" in body["message"]
        assert set(body) <= {"code", "message", "field", "details", "fields"}
        page = client.get("/ward", headers={"accept": "text/html"})
        assert page.status_code == 503
        assert "try again" in page.text and "Traceback" not in page.text
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        # The pool finds its feet by itself: the same session works again.
        assert client.get("/api/ward").status_code == 200
        login(client, "n.chen")
    finally:
        store.close()
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
