"""``bedside balance read``: one stable weight from the laboratory balance (MT-SICS)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import print_json


def register(sub: Any) -> None:
    b = sub.add_parser("balance", help="the pharmacy bench's laboratory balance (MT-SICS)")
    bs = b.add_subparsers(dest="balance_command", metavar="ACTION", required=True)
    r = bs.add_parser("read", help="print one stable weight in grams")
    r.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    r.add_argument("--baud", type=int, default=9600, help="serial rate (default 9600)")
    r.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for a stable weight"
    )
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=read)


def read(args: argparse.Namespace) -> int:
    from workflow.interop.balance import read_stable

    weight = read_stable(args.port, baud=args.baud, timeout_s=args.timeout)
    if args.json:
        print_json({"grams": float(weight.grams), "reply": weight.reply, "serial": weight.serial})
    else:
        print(f"{weight.grams} g")
    return 0
