"""The server's scheduled session clean-up, run by the app's lifespan.

A session nobody comes back to is never seen by ``current_viewer`` again, so the request path
alone would leave its password verifier in the database for ever (issue 13.2). Every few
minutes, and once at start-up, each ``bedside serve`` process ends sessions idle past the web
timeout, drops verifiers whose 11.200 signing period lapsed, and deletes sessions that ended
longer ago than the retention (Bedside.sweep_web_sessions; one transaction, so several
processes doing it at once only repeat one another's work).
"""

from __future__ import annotations

import asyncio
import logging

from workflow.core.errors import BedsideError
from workflow.service import Bedside
from workflow.service.vocabulary import Swept

from .settings import WebSettings

log = logging.getLogger("bedside.web")


def sweep_sessions(bedside: Bedside, settings: WebSettings) -> Swept:
    return bedside.sweep_web_sessions(settings.idle_timeout, settings.session_retention)


async def sweep_once(bedside: Bedside, settings: WebSettings) -> None:
    """One sweep off the event loop. A database that stops answering skips a round (the next
    one tries again); a bug is logged, never allowed to end the schedule silently."""
    try:
        await asyncio.to_thread(sweep_sessions, bedside, settings)
    except BedsideError as exc:
        log.warning("session sweep skipped: %s", exc)
    except Exception:
        log.exception("session sweep failed")


async def run_sweeper(bedside: Bedside, settings: WebSettings) -> None:
    """Sweep every ``settings.session_sweep_every`` until cancelled (the lifespan sweeps once
    itself before serving)."""
    while True:
        await asyncio.sleep(settings.session_sweep_every.total_seconds())
        await sweep_once(bedside, settings)
