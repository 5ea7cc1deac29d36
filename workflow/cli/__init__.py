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

from ..errors import BedsideError
from . import _admin, _audit, _checklist, _clinical, _demo, _dev, _dose, _interop, _serve
from ._app import release_home
from ._faults import report_fault


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: usage error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
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
    _dose.register(sub)
    _checklist.register(sub)
    _demo.register(sub)
    _admin.register(sub)
    _clinical.register(sub)
    _audit.register(sub)
    _serve.register(sub)
    _dev.register(sub)
    _interop.register(sub)  # after _clinical: adds `course report`
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
        return report_fault(exc, args.home, ["bedside", *argv] if argv is not None else None)
    finally:
        release_home()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
