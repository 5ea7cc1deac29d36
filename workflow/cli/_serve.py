"""``bedside serve``: the tablet, pharmacy and archive web UI with its JSON API."""

from __future__ import annotations

import argparse
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._app import home_of, open_app

if TYPE_CHECKING:  # pyHanko, SQLAlchemy and the web load when the server starts (start-up)
    from workflow.archive import Archive
    from workflow.records.signing_pool import SigningPool
    from workflow.service import Bedside, RecordsWriter


# There is no --workers: uvicorn's worker processes import the app by name, so every option
# and the start-up work here (the catch-up, the session key, one signing pool per process)
# would have to be redone from the environment in each. Scale out instead with several
# `bedside serve --port P` processes behind the proxy (README, "A centre"), which share
# everything through the database and are tested that way (tests/scale/test_two_servers.py).
def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="start the web UI and JSON API (default 127.0.0.1:8000)")
    add_address(p)
    p.add_argument(
        "--idle-minutes",
        type=int,
        default=None,
        metavar="N",
        help="sign out after N idle minutes (1 to 1440); overrides web.idle_timeout_minutes "
        "in <home>/bedside.yaml (default: that setting, else 15)",
    )
    p.add_argument(
        "--proxy", action="store_true", help="trust X-Forwarded-Proto/For from a local proxy"
    )
    p.set_defaults(handler=run)


def add_address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")


def exposure_warnings(home: Path) -> list[str]:
    """What a serving host should not have: the CA key (it can mint signing certificates the
    site's records would be trusted under), a home others can read."""
    from workflow.records.pki import CA_KEY

    out = []
    if (home / "pki" / CA_KEY).exists():
        out.append(
            f"{home / 'pki' / CA_KEY} (the site CA's private key) is on this serving host; "
            'keep it offline (README, "Offline CA") and leave only the signing key here'
        )
    mode = stat.S_IMODE(home.stat().st_mode)
    if mode & 0o077:
        out.append(f"{home} is mode {mode:o}; others may list it: chmod 700 {home}")
    return out


def run(args: argparse.Namespace, banner: Sequence[str] = ()) -> int:
    """Serve the home; ``banner`` lines are printed once the address is known (the demo's
    people and passwords)."""
    import uvicorn

    from workflow.web import WebSettings, create_app

    _check_options(args)
    # Held (shared) for the server's whole life: `bedside restore --replace` is refused while
    # it runs, instead of swapping the database out from under it (issue 13.3).
    bedside = open_app(args)
    archive, pool, writer = _start_signing(args, bedside)
    app = create_app(
        bedside,
        WebSettings.for_site(bedside.settings, idle_minutes=args.idle_minutes),
        archive=archive,
        # The records writer drains its queue first, while the signing pool still signs.
        on_shutdown=(writer.close, pool.close),
    )
    print(f"bedside: serving on http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    for line in banner:
        print(line, flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        proxy_headers=args.proxy,
        # Longer than a reverse proxy keeps idle upstream connections (nginx: 60 s), so the
        # server never closes a connection the proxy is about to reuse (a reset POST).
        timeout_keep_alive=75,
        forwarded_allow_ips="127.0.0.1" if args.proxy else None,
    )
    return 0


def _check_options(args: argparse.Namespace) -> None:
    from workflow.core.errors import InputError
    from workflow.settings import IDLE_MINUTES

    low, high = IDLE_MINUTES  # the same range as the setting it overrides
    if args.idle_minutes is not None and not low <= args.idle_minutes <= high:
        raise InputError("idle-minutes", f"must be between {low} and {high}")
    if not 0 < args.port < 65536:
        raise InputError("port", "must be between 1 and 65535")


def _start_signing(
    args: argparse.Namespace, bedside: Bedside
) -> tuple[Archive, SigningPool, RecordsWriter]:
    """The archive with its signing worker started, the session key loaded, the records of
    cases a killed server left unarchived made, and the records writer that makes every later
    case's records just after its closing step; refuses a home without signing material."""
    from workflow.core.errors import InputError
    from workflow.records.pki import check_private_keys
    from workflow.records.signing_pool import SigningPool

    from ._audit import catch_up

    home = home_of(args)
    pool = SigningPool(home / "pki")
    archive = bedside.open_archive(home, signing=pool)
    if not archive.ready:
        # A server that completes doses and signs nothing is worse than no server (issue 13.6).
        raise InputError("home", f"no signing material in {home / 'pki'}; run `bedside init` first")
    check_private_keys(home / "pki")
    for warning in exposure_warnings(home):
        print(f"bedside: warning: {warning}", file=sys.stderr, flush=True)
    # Signatures inside a continuous session re-check the password by a keyed verifier instead
    # of a second argon2id run (workflow/identity/session_proof.py); the key stays in the home.
    bedside.use_site_key(home)
    # Records render and sign in a worker process, so a sign-off does not stall every other
    # tablet's request behind the GIL (workflow/records/signing_pool.py).
    pool.start()
    bedside.archiver = archive.archive_case
    # A server killed between a case's closing step and its archive write left that case with
    # no records; archive them before serving, as `bedside run` and `bedside demo` do (found by
    # the web crash campaign).
    # A case whose events disagree with a record already signed for it is refused loudly and
    # left for a person; the ward is still served.
    caught_up, refused = catch_up(bedside, archive)
    if caught_up:
        print(f"bedside: archived the records of {len(caught_up)} ended case(s)", flush=True)
    # From now on a closing step answers at once and its records are made just after it, off
    # the request (sign-offs no longer queue for the signing worker inside their requests).
    # A kill leaves what was queued "ended without records": the catch-up above makes them.
    writer = bedside.write_records_later()
    writer.note_failures({c: "refused when the server started (see its log)" for c in refused})
    return archive, pool, writer
