"""``bedside demo``: walk complete doses with demo users and a demo patient, for real."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from workflow.core.errors import InputError

from ._app import hold_home, open_app
from ._progress import Progress


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="walk complete doses with demo users and a demo patient")
    p.add_argument(
        "--doses", default="1", help="how many doses (default 1, at most a course's doses)"
    )
    p.set_defaults(handler=run)


def _course_doses(args: argparse.Namespace) -> int:
    """The protocol's doses per course (an overlay may lower it), read before anything is
    written so a refused count leaves the home untouched."""
    from workflow.core.protocol.loader import load_protocol
    from workflow.core.protocol.overlay import load_overlay
    from workflow.resources import default_protocol_path

    protocol = load_protocol(args.protocol or default_protocol_path())
    overlay = getattr(args, "overlay", None) or os.environ.get("BEDSIDE_OVERLAY")
    if overlay:
        protocol = load_overlay(overlay, protocol)
    return int(protocol.schedule.max_doses_per_course.value)


def _doses(text: str, most: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise InputError("doses", f"'{text}' is not a whole number", f"1 to {most}") from None
    if not 1 <= n <= most:
        raise InputError("doses", f"{n} is out of range", f"1 to {most}")
    return n


def run(args: argparse.Namespace) -> int:
    doses = _doses(args.doses, _course_doses(args))
    from workflow.core.clock import FixedClock
    from workflow.dev.demo import DEMO_PASSWORD, DEMO_PEOPLE, run_persistent
    from workflow.records.pki import create_site_pki, pki_state, set_aside_incomplete

    home = hold_home(args)  # makes the home (0700) and holds it while the demo writes
    pki = home / "pki"
    if pki_state(pki) == "incomplete":  # an interrupted init or demo: start the set again
        print(f"set aside partial signing material in {set_aside_incomplete(pki)}")
    if pki_state(pki) == "absent":
        create_site_pki(pki, organisation="Bedside demo site")
    # The demo keeps its own clock so a course's q8h schedule and rest days can be walked in
    # seconds; it starts after anything already in this home.
    clock = FixedClock(datetime.now(UTC).replace(second=0, microsecond=0))
    app = open_app(args, clock=clock)
    latest = app.list_cases()
    if latest:
        last = max(r.updated_at for r in latest)
        clock.set(max(clock.now(), last + timedelta(minutes=1)))
    with Progress("demo", doses, unit="dose") as progress:
        walked = run_persistent(
            app,
            clock,
            doses,
            on_dose=lambda d: progress.advance(1, f"case {d.case_id} {d.state}"),
        )
    print(f"home: {home}")
    print(
        f"demo users (password '{DEMO_PASSWORD}'): "
        + ", ".join(f"{p.username} ({p.role})" for p in DEMO_PEOPLE)
    )
    for d in walked:
        print(
            f"dose {d.dose_in_course} (cycle {d.cycle}, dose {d.dose_in_cycle}) case "
            f"{d.case_id}: {d.state}"
        )
        for path in d.records:
            print(f"  record {home / path}")
    return 0
