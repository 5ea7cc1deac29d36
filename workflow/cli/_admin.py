"""``bedside init`` and ``bedside user ...``: the home, the first admin, signing material."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from workflow.core.errors import InputError, NotFound
from workflow.service.vocabulary import ROLES

from ._app import add_password_stdin, hold_home, home_of, open_app, read_password
from ._common import print_json


def register(sub: Any) -> None:
    for add in (_register_init, _register_user):
        add(sub)


def _register_init(sub: Any) -> None:
    p = sub.add_parser(
        "init", help="create a home, its database, the first admin and the signing certificate"
    )
    # Required except with --reissue-signing-cert (checked in ``init``, exit 2 naming them).
    p.add_argument("--admin", metavar="USERNAME", help="the first admin's username (required)")
    p.add_argument(
        "--name",
        metavar="PRINTED_NAME",
        help="the admin's printed name, shown on signatures (required)",
    )
    p.add_argument(
        "--organisation",
        default="Bedside site",
        help="name on the local CA and signing certificate",
    )
    p.add_argument(
        "--time-zone",
        metavar="ZONE",
        help="the site's IANA time zone (e.g. Europe/Oslo), written to <home>/bedside.yaml as "
        "site.time_zone; asked for on a terminal when left out (default UTC)",
    )
    p.add_argument(
        "--import-p12",
        metavar="FILE",
        help="use the institution's PKCS#12 instead of a local CA (its password is "
        "read after the admin password)",
    )
    p.add_argument(
        "--reissue-signing-cert",
        action="store_true",
        help="issue a new document-signing key and certificate from the local CA in pki/ "
        "(records signed before still verify: the CA stays the same); needs the home to "
        "itself (stop `bedside serve`)",
    )
    _confirm_flag(p)
    add_password_stdin(p)
    p.set_defaults(handler=init)


def _register_user(sub: Any) -> None:
    u = sub.add_parser("user", help="people and their roles")
    us = u.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    a = us.add_parser("add", help="add a user")
    a.add_argument("username")
    a.add_argument("--name", required=True, metavar="PRINTED_NAME")
    a.add_argument(
        "--role",
        action="append",
        required=True,
        choices=sorted(ROLES),
        help="repeat for several roles",
    )
    _confirm_flag(a)
    add_password_stdin(a)
    a.set_defaults(handler=user_add)
    ls = us.add_parser("list", help="list users")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=user_list)
    d = us.add_parser("deactivate", help="deactivate a user (their history stays theirs)")
    d.add_argument("username")
    d.set_defaults(handler=user_deactivate)
    pw = us.add_parser(
        "passwd",
        help="change your password (current, then new), or --reset "
        "to set a temporary one the user must change at first use",
    )
    pw.add_argument("username")
    pw.add_argument(
        "--reset",
        action="store_true",
        help="administrator reset: no current password, must change at first use",
    )
    add_password_stdin(pw)
    pw.set_defaults(handler=user_passwd)


CONFIRM_FLAG = "--confirm-mixed-script"


def _confirm_flag(parser: Any) -> None:
    parser.add_argument(
        CONFIRM_FLAG,
        action="store_true",
        help="register a printed name that mixes look-alike scripts exactly as typed "
        "(after checking it: without this it is refused with a warning)",
    )


def _check_name_first(args: argparse.Namespace) -> None:
    from workflow.core.names import MixedScriptName, check_script_mix
    from workflow.service.vocabulary import clean_printed_name

    # The same check add_user makes, before anyone types a password for nothing.
    try:
        check_script_mix(
            "printed_name", clean_printed_name(args.name), confirmed=args.confirm_mixed_script
        )
    except MixedScriptName as warning:
        raise warning.confirm_with(f"add {CONFIRM_FLAG}") from None


def _exists(app: Any, username: str) -> bool:
    try:
        app.get_user(username)
    except NotFound:  # only "no such user": a fault reading the store is not an absence
        return False
    return True


def init(args: argparse.Namespace) -> int:
    from workflow.archive import PKI_DIR
    from workflow.private_files import create_private_file, make_private_dir, tighten_dir
    from workflow.records.pki import create_site_pki, import_pkcs12, pki_state, set_aside_incomplete
    from workflow.settings import SETTINGS_FILE, settings_text

    home = home_of(args)
    if args.reissue_signing_cert:
        return _reissue(args, home)
    for field, value in (("admin", args.admin), ("name", args.name)):
        if not value or not value.strip():
            raise InputError(field, "is required to make a home", f"--{field} TEXT")
    zone = _time_zone(args, home)  # judged before anything is written
    make_private_dir(home)
    tighten_dir(home)  # the home holds the database and the keys: the service account's only
    pki = home / PKI_DIR
    # Opened without the archive: a partial signing set must not stop init from finishing it.
    app = open_app(args, archive=False)
    if not _exists(app, args.admin):
        _check_name_first(args)
    password = read_password(args, "Admin password: ", confirm=True)
    state = pki_state(pki)
    if state == "incomplete":
        aside = set_aside_incomplete(pki)
        print(f"set aside the partial signing material of an interrupted init in {aside}")
        state = "absent"
    if state == "complete":
        print(f"signing material already in {pki}; left as it is")
    elif args.import_p12:
        p12_password = read_password(args, "PKCS#12 password: ")
        import_pkcs12(Path(args.import_p12), p12_password.encode(), pki)
        print(f"imported {args.import_p12} into {pki}")
    else:
        create_site_pki(pki, organisation=args.organisation)
        print(f"created a local CA and document-signing certificate in {pki}")
    # The key that signs checkpoints of the event log (workflow/archive/checkpoints.py): made
    # now, so a copy of pki/ taken after init holds it; an existing one is kept.
    from workflow.archive.checkpoints import load_checkpoint_key

    load_checkpoint_key(pki)
    try:
        app.get_user(args.admin)
        print(f"user {args.admin} already exists; left as it is")
    except NotFound:
        app.add_user(
            args.admin,
            args.name,
            ["admin"],
            password,
            by="init",
            confirm_mixed_script=args.confirm_mixed_script,
        )
        print(f"created admin {args.admin}")
    if zone is not None:
        fd = create_private_file(home / SETTINGS_FILE)  # new, 0600; never over an existing one
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(settings_text(args.organisation, zone))
        print(f"wrote {home / SETTINGS_FILE} (site.time_zone: {zone})")
    print(f"home: {home}")
    return 0


def _time_zone(args: argparse.Namespace, home: Path) -> str | None:
    """The zone to write into a new bedside.yaml, or None when the home already has one (kept
    as it is: it may hold other settings; a different --time-zone is refused, not ignored)."""
    from workflow.settings import SETTINGS_FILE, check_time_zone, load_settings

    if (home / SETTINGS_FILE).exists():
        current = load_settings(home).time_zone
        if args.time_zone and check_time_zone(args.time_zone) != current:
            raise InputError(
                "time-zone",
                f"{home / SETTINGS_FILE} already sets site.time_zone: {current}; edit that file "
                "to change it (existing doses keep their times)",
            )
        return None
    if args.time_zone:
        return check_time_zone(args.time_zone)
    if sys.stdin.isatty() and not args.password_stdin:
        typed = input("Site time zone (IANA, e.g. Europe/Oslo) [UTC]: ").strip()
        return check_time_zone(typed or "UTC")
    return "UTC"


def _reissue(args: argparse.Namespace, home: Path) -> int:
    from workflow.archive import PKI_DIR
    from workflow.records.pki import RETIRED_DIR, pki_state, reissue_signing_cert

    hold_home(args, exclusive=True)  # no server may sign between the key's and cert's renames
    pki = home / PKI_DIR
    if pki_state(pki) == "absent":
        raise InputError("home", f"no signing material in {pki}; run `bedside init` first")
    cert = reissue_signing_cert(pki)
    print(
        f"issued a new document-signing certificate in {cert} (the old one is kept in "
        f"{pki / RETIRED_DIR}); records signed before still verify against {pki / 'ca.pem'}"
    )
    return 0


def user_add(args: argparse.Namespace) -> int:
    app = open_app(args)
    _check_name_first(args)
    password = read_password(args, f"Password for {args.username}: ", confirm=True)
    user = app.add_user(
        args.username,
        args.name,
        args.role,
        password,
        by="cli",
        confirm_mixed_script=args.confirm_mixed_script,
    )
    print(f"added {user.username} ({', '.join(sorted(user.roles))})")
    return 0


def user_list(args: argparse.Namespace) -> int:
    app = open_app(args)
    users = app.list_users()
    if args.json:
        print_json(
            [
                {
                    "username": u.username,
                    "id": u.id,
                    "name": u.printed_name,
                    "roles": sorted(u.roles),
                    "active": u.active,
                }
                for u in users
            ]
        )
        return 0
    for u in users:
        state = "active" if u.active else "deactivated"
        roles = ",".join(sorted(u.roles))
        print(f"{u.username:<20} {u.printed_name:<32} {roles:<28} {state:<12} {u.id}")
    return 0


def user_deactivate(args: argparse.Namespace) -> int:
    app = open_app(args)
    user = app.deactivate_user(args.username, by="cli")
    print(f"deactivated {user.username}")
    return 0


def user_passwd(args: argparse.Namespace) -> int:
    """With --password-stdin: one line (reset) or two lines, current then new (own change)."""
    app = open_app(args)
    if args.reset:
        password = read_password(args, f"Temporary password for {args.username}: ", confirm=True)
        app.reset_password(args.username, password, by="cli")
        print(f"temporary password set for {args.username}; it must be changed at first use")
        return 0
    current = read_password(args, "Current password: ")
    new = read_password(args, "New password: ", confirm=True)
    if not new:
        raise InputError("password", "is empty")
    app.change_password(args.username, current, new)
    print(f"password changed for {args.username}")
    return 0
