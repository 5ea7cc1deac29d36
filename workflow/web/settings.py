"""Settings of one ``bedside serve`` process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from workflow.resources import templates_dir

if TYPE_CHECKING:
    from workflow.settings import Settings

# Roles per audience: each page and API route names the set it serves.
CLINICAL = ("nurse", "pharmacist", "pharmacy_technician", "prescriber")
WARD = ("nurse", "prescriber", "pharmacist")
PHARMACY = ("pharmacy_technician", "pharmacist")
AUDIT = ("auditor",)
RECORD_READERS = (*CLINICAL, "auditor")
ADMIN = ("admin",)


def default_templates_dir() -> Path:
    return templates_dir() / "web"


@dataclass(frozen=True)
class WebSettings:
    """How one server process behaves.

    ``max_body_bytes`` bounds every request body (JSON, form or anything else): a larger one is
    refused with 413 ``too_large`` as it arrives, before it is parsed or held in memory. The
    default, 1 MiB, is far above any form or API call (the largest, a step with its values, is
    a few kilobytes) and far below what would let one client exhaust the server's memory.
    """

    idle_timeout: timedelta = timedelta(minutes=15)
    # "auto": Secure cookies when the request came over HTTPS (directly or via a proxy that
    # uvicorn trusts for X-Forwarded-Proto); True/False force it.
    secure_cookies: bool | None = None
    cookie_name: str = "bedside_session"
    templates_dir: Path | None = None
    # last_seen_at is written at most this often: a write per request would serialise every
    # read on SQLite for no gain in the idle timeout's precision.
    touch_every: timedelta = timedelta(seconds=20)
    worklist_limit: int = 100
    max_body_bytes: int = 1024 * 1024
    # A step's form with its photos (records/photos.py: up to 8 MB each, a step takes ~3).
    max_photo_body_bytes: int = 25 * 1024 * 1024
    # Ended sessions (their verifiers already wiped) are deleted this long after they ended
    # (``web.session_retention_days`` in bedside.yaml); the sweep that ends idle sessions and
    # drops lapsed verifiers runs this often (web/sweeper.py).
    session_retention: timedelta = timedelta(days=30)
    session_sweep_every: timedelta = timedelta(minutes=5)

    @classmethod
    def for_site(cls, site: Settings, *, idle_minutes: int | None = None) -> WebSettings:
        """A server's settings from the site's ``bedside.yaml`` (``web.idle_timeout_minutes``);
        ``idle_minutes`` is ``bedside serve --idle-minutes``, which overrides the file."""
        idle = timedelta(minutes=idle_minutes) if idle_minutes is not None else None
        return cls(
            idle_timeout=idle or site.web_idle_timeout,
            session_retention=site.web_session_retention,
        )
