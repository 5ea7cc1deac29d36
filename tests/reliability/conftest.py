"""Reliability campaigns: sizes for `make test` (small, fast) and `make soak` (full).

``BEDSIDE_SOAK=1`` selects the full sizes that docs/RELIABILITY.md reports; ``BEDSIDE_SEED``
replays a campaign's schedule exactly (the default seed is fixed, so every run is the same
schedule unless asked otherwise).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from databases import new_pg_database

SOAK = os.environ.get("BEDSIDE_SOAK") == "1"
SEED = int(os.environ.get("BEDSIDE_SEED", "20261122"))


@dataclass(frozen=True)
class Scale:
    full: bool
    seed: int
    cli_kills: int  # SIGKILLs of `bedside run` / `bedside demo` on SQLite
    pg_kills: int  # the same on PostgreSQL
    budget_s: float  # wall-clock bound on one campaign; it stops early and says so
    web_kills: int = 4  # SIGKILLs of `bedside serve` on SQLite
    web_pg_kills: int = 2  # the same on PostgreSQL
    soak_clients: int = 20  # concurrent API client threads against one `bedside serve`
    soak_cases: int = 11  # cases of one client only, dealt to the least busy clients
    soak_shared: int = 3  # cases shared by several clients (real 409s)
    soak_whole_doses: bool = False  # walk every dose from its order (else from a drawn step)
    soak_postgres: bool = False  # the soak on PostgreSQL as well as SQLite


@pytest.fixture(scope="session")
def scale() -> Scale:
    if SOAK:
        return Scale(full=True, seed=SEED, cli_kills=60, pg_kills=50, budget_s=1800,
                     web_kills=30, web_pg_kills=25, soak_clients=20, soak_cases=130,
                     soak_shared=10, soak_whole_doses=True, soak_postgres=True)  # fmt: skip
    return Scale(full=False, seed=SEED, cli_kills=5, pg_kills=3, budget_s=120,
                 web_kills=4, web_pg_kills=2, soak_clients=20, soak_cases=11, soak_shared=3,
                 soak_whole_doses=False, soak_postgres=False)  # fmt: skip


def report(line: str) -> None:
    """Figures go to the terminal (pytest -s, as `make soak` runs) and to the log file the
    docs quote, if BEDSIDE_FIGURES names one."""
    print(line)
    target = os.environ.get("BEDSIDE_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(line + "\n")


@pytest.fixture
def rel_database() -> Iterator[str]:
    """A PostgreSQL database of its own (``bedside_rel_<random>``), dropped afterwards by a
    fresh connection once the cluster is up again: the campaign may have restarted the server
    under the old ones."""
    from .harness import pg_cluster_running

    with new_pg_database("bedside_rel", before_drop=pg_cluster_running) as url:
        yield url
