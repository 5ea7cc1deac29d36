"""SIGKILL campaigns against `bedside serve`, on SQLite and PostgreSQL (issue "Prove it").

Doses are walked through the JSON API by a real HTTP client; the server is killed at a seeded
point (after the k-th HTTP 200 plus a few ms, or some ms after a request was sent, so it dies
inside password checking, the append or the archive). After every kill the store must hold
every acknowledged step at its seq, every chain must verify, every case must replay, and no
archive file may be partial; the next server must report each open case where it stopped and
walk it on. A request the kill cut off is resent: 200 if it had not landed, 409 if it had.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conftest import Scale, report
from .harness import make_home
from .web_harness import WebCampaign


def run_web_campaign(
    name: str, home: Path, db: str | None, scale: Scale, kills: int
) -> WebCampaign:
    campaign = WebCampaign(home, db, scale.seed)
    make_home(home, db)
    started = time.monotonic()
    max_rounds = kills * 3  # a round whose walk ended before its kill point kills nothing
    try:
        while campaign.web.kills < kills and campaign.web.servers < max_rounds:
            if time.monotonic() - started > scale.budget_s:
                campaign.web.notes.append("stopped at the time budget")
                break
            campaign.web_round()
            campaign.check_web()
        campaign.web_finish()
    finally:
        campaign.close()
    campaign.web.seconds = time.monotonic() - started
    report(campaign.web.line(name, scale.seed))
    assert campaign.web.kills >= min(kills, 1)
    assert campaign.web.acked_steps > 0
    return campaign


def test_sigkill_serve_campaign_sqlite(tmp_path: Path, scale: Scale) -> None:
    campaign = run_web_campaign("web crash campaign (SQLite)", tmp_path / "home", None, scale,
                                scale.web_kills)  # fmt: skip
    if scale.full:
        assert campaign.web.kills >= 25


@pytest.mark.postgres
def test_sigkill_serve_campaign_postgresql(rel_database: str, tmp_path: Path, scale: Scale) -> None:
    campaign = run_web_campaign("web crash campaign (PostgreSQL)", tmp_path / "home",
                                rel_database, scale, scale.web_pg_kills)  # fmt: skip
    if scale.full:
        assert campaign.web.kills >= 25
