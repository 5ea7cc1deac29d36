"""``bedside init`` and ``bedside user ...``: the home, the first admin, signing material."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..archive import PKI_DIR
from ..checkpoints import load_checkpoint_key
from ..errors import InputError
from ..identity import ROLES
from ..records.pki import PkiPaths, create_site_pki, import_pkcs12
from ._app import add_password_stdin, home_of, open_app, read_password
from ._common import print_json


def register(sub: Any) -> None:
    p = sub.add_parser(
        "init", help="create a home, its database, the first admin and the signing certificate"
    )
    p.add_argument("--admin", required=True, metavar="USERNAME")
    p.add_argument(
        "--name",
        required=True,
        metavar="PRINTED_NAME",
        help="the admin's printed name (shown on signatures)",
    )
    p.add_argument(
        "--organisation",
        default="Bedside site",
        help="name on the local CA and signing certificate",
    )
    p.add_argument(
        "--import-p12",
        metavar="FILE",
        help="use the institution's PKCS#12 instead of a local CA (its password is "
        "read after the admin password)",
    )
    add_password_stdin(p)
    p.set_defaults(handler=init)

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


def init(args: argparse.Namespace) -> int:
    home = home_of(args)
    home.mkdir(parents=True, exist_ok=True)
    app = open_app(args)
    password = read_password(args, "Admin password: ", confirm=True)
    pki = home / PKI_DIR
    if PkiPaths(pki).signing_key.exists():
        print(f"signing material already in {pki}; left as it is")
    elif args.import_p12:
        p12_password = read_password(args, "PKCS#12 password: ")
        import_pkcs12(Path(args.import_p12), p12_password.encode(), pki)
        print(f"imported {args.import_p12} into {pki}")
    else:
        create_site_pki(pki, organisation=args.organisation)
        print(f"created a local CA and document-signing certificate in {pki}")
    # The key that signs checkpoints of the event log (workflow/checkpoints.py): made now, so
    # a copy of pki/ taken after init holds it; an existing one is kept.
    load_checkpoint_key(pki)
    try:
        app.identity.get_user(args.admin)
        print(f"user {args.admin} already exists; left as it is")
    except Exception:
        app.identity.add_user(args.admin, args.name, ["admin"], password, by="init")
        print(f"created admin {args.admin}")
    print(f"home: {home}")
    return 0


def user_add(args: argparse.Namespace) -> int:
    app = open_app(args)
    password = read_password(args, f"Password for {args.username}: ", confirm=True)
    user = app.identity.add_user(args.username, args.name, args.role, password, by="cli")
    print(f"added {user.username} ({', '.join(sorted(user.roles))})")
    return 0


def user_list(args: argparse.Namespace) -> int:
    app = open_app(args)
    users = app.identity.list_users()
    if args.json:
        print_json(
            [
                {
                    "username": u.username,
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
        print(f"{u.username:<20} {u.printed_name:<32} {','.join(sorted(u.roles)):<28} {state}")
    return 0


def user_deactivate(args: argparse.Namespace) -> int:
    app = open_app(args)
    user = app.identity.deactivate(args.username, by="cli")
    print(f"deactivated {user.username}")
    return 0


def user_passwd(args: argparse.Namespace) -> int:
    """With --password-stdin: one line (reset) or two lines, current then new (own change)."""
    app = open_app(args)
    if args.reset:
        password = read_password(args, f"Temporary password for {args.username}: ", confirm=True)
        app.identity.reset_password(args.username, password, by="cli")
        print(f"temporary password set for {args.username}; it must be changed at first use")
        return 0
    current = read_password(args, "Current password: ")
    new = read_password(args, "New password: ", confirm=True)
    if not new:
        raise InputError("password", "is empty")
    app.identity.change_password(args.username, current, new)
    print(f"password changed for {args.username}")
    return 0
