"""``bedside dev seed``: fill a database with realistic made-up cases (for load and scale
tests; never on a production database: the cases, staff and patients are invented)."""

from __future__ import annotations

import argparse
from typing import Any

from workflow.core.errors import InputError

from ._app import open_app
from ._progress import Progress


def register(sub: Any) -> None:
    dev = sub.add_parser("dev", help="developer tools (seeding a test database)")
    dsub = dev.add_subparsers(dest="dev_command", metavar="ACTION", required=True)
    p = dsub.add_parser(
        "seed", help="add N made-up patients and M dose cases walked by the real case machine"
    )
    p.add_argument("--patients", required=True, help="how many patients (1 or more)")
    p.add_argument("--doses", required=True, help="how many dose cases in all (1 or more)")
    # Also accepted after the action; SUPPRESS keeps the global --db when this one is absent.
    p.add_argument("--db", metavar="URL", default=argparse.SUPPRESS, help="database URL")
    p.add_argument(
        "--signed-sample",
        default="20",
        help="ended cases that get real signed PDF records (default 20; the rest get "
        "placeholder index rows that archive verify counts apart)",
    )
    p.add_argument("--rng-seed", default="8", help="random seed (default 8)")
    p.set_defaults(handler=run)


def _count(name: str, text: str, low: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise InputError(name, f"'{text}' is not a whole number") from None
    if n < low:
        raise InputError(name, f"must be {low} or more")
    return n


def run(args: argparse.Namespace) -> int:
    patients = _count("patients", args.patients, 1)
    doses = _count("doses", args.doses, 1)
    sample = _count("signed-sample", args.signed_sample, 0)
    from workflow.dev.seed import SEED_PASSWORD, seed_installation

    app = open_app(args)
    with Progress("dev seed", doses, unit="case") as progress:
        report = seed_installation(
            app,
            patients=patients,
            doses=doses,
            rng_seed=_count("rng-seed", args.rng_seed, 0),
            signed_sample=sample,
            progress=lambda done, _total: progress.update_to(done),
        )
    print(
        f"seeded {report.patients} patients, {report.courses} courses, {report.cases} cases "
        f"({report.open_cases} in progress), {report.events} events"
    )
    print(
        f"archive: {report.records_signed} cases with real signed records, "
        f"{report.placeholders} placeholder index rows (no file)"
        + ("" if app.archiver else "; no signing material here (run `bedside init`)")
    )
    print(
        f"took {report.seconds_building:.1f} s walking cases, "
        f"{report.seconds_writing:.1f} s writing"
    )
    print(f"seed staff accounts w<ward>.<role><n> have the password '{SEED_PASSWORD}'")
    return 0
