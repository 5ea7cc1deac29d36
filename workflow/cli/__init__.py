"""The ``bedside`` command: parse, call the core, print. No clinical logic lives here.

Errors become messages in exactly one place (``main``): a BedsideError prints
``bedside: <message>`` on stderr and exits with its code (1 a check failed, 2 bad input); any
other exception is a fault of ours: its traceback goes to ``<home>/logs/bedside.log`` and the
person sees one line naming that file, exit 70 (``_faults``).

Start-up (issue 15): the command modules import only argparse, the error tree and light core
modules at their top; the store, the service, pyHanko, reportlab, FastAPI and the seeder load
inside the handler that needs them (tests/cli/test_startup.py holds that line).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from workflow.core.errors import BedsideError

from . import (
    _admin,
    _audit,
    _balance,
    _checklist,
    _clinical,
    _demo,
    _dev,
    _dose,
    _interface,
    _interop,
    _serve,
)
from ._app import release_home
from ._faults import report_fault


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: usage error: {message}\n")


# Which module registers which top-level commands, in registration order. A command's own
# parser is all `bedside dose` needs: argparse spends most of its start-up building the other
# forty sub-parsers (and looking up translations for each), so ``main`` builds only the one
# named, and the whole tree for --help or anything it cannot tell (test_cli_edge.py checks this
# table against what each module really registers).
_REGISTRARS: tuple[tuple[Any, tuple[str, ...]], ...] = (
    (_dose, ("dose",)),
    (_checklist, ("checklist",)),
    (_demo, ("demo",)),
    (_admin, ("init", "user")),
    (_clinical, ("patient", "course", "case", "run")),
    (_audit, ("audit", "verify", "archive", "backup", "restore")),
    (_serve, ("serve",)),
    (_dev, ("dev",)),
    (_interop, ("export", "scan", "report", "picture", "course")),  # `course report`
    (_balance, ("balance",)),
    (_interface, ("interface",)),
)
_VALUE_OPTIONS = ("--protocol", "--overlay", "--home", "--db")


def command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, when that is plain without parsing; else None."""
    words_left = iter(argv)
    for word in words_left:
        if word == "--" or word in ("-h", "--help"):
            return None
        if word.startswith("--") and "=" not in word:
            # argparse accepts any unique prefix (--hom DIR): its value is not the command.
            if len(word) > 2 and any(o.startswith(word) for o in _VALUE_OPTIONS):
                next(words_left, None)
            continue
        if word.startswith("-"):
            continue
        return word if any(word in names for _, names in _REGISTRARS) else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command tree, or with ``command`` only the parsers that command needs."""
    parser = _Parser(
        prog="bedside", description="Checked, signed high-alert IV doses (high-dose aldesleukin)."
    )
    parser.add_argument(
        "--protocol",
        metavar="FILE",
        help="protocol file (default: the shipped aldesleukin protocol)",
    )
    parser.add_argument(
        "--overlay",
        metavar="FILE",
        help="institution overlay beside the protocol (default: $BEDSIDE_OVERLAY, else none)",
    )
    parser.add_argument("--home", metavar="DIR", help="state folder (default: $BEDSIDE_HOME)")
    parser.add_argument(
        "--db",
        metavar="URL",
        help="database URL (default: $BEDSIDE_DATABASE_URL, else SQLite in home)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module, names in _REGISTRARS:
        if command is None or command in names:
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_named(words))
    args = parser.parse_args(words)
    try:
        code: int = args.handler(args)
    except BedsideError as exc:
        print(f"bedside: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bedside: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a fault, not a refusal: logged in full, one line here, exit 70
        return report_fault(exc, args.home, ["bedside", *words])
    finally:
        release_home()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
