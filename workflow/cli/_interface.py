"""``bedside interface hl7 --listen HOST:PORT`` (the MLLP listener for the hospital's pharmacy
order feed, long-running, one log line per message) and ``bedside interface log`` (the
interface log: every message received, applied, duplicate or refused)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from workflow.core.errors import InputError

from ._app import open_app
from ._common import print_json


def register(sub: Any) -> None:
    p = sub.add_parser("interface", help="orders from the hospital (HL7 v2 over MLLP)")
    ps = p.add_subparsers(dest="interface_command", metavar="COMMAND", required=True)
    h = ps.add_parser("hl7", help="listen for HL7 v2 pharmacy orders (RDE^O11, ORM^O01) over MLLP")
    h.add_argument(
        "--listen",
        required=True,
        metavar="HOST:PORT",
        help="address and port to listen on (port 0: any free port, printed at start)",
    )
    h.set_defaults(handler=listen)
    lg = ps.add_parser("log", help="list the interface log, newest first")
    lg.add_argument("--limit", type=int, default=50, help="how many entries (1 to 10000)")
    lg.add_argument("--order", metavar="PLACER", help="only the messages of this order")
    lg.add_argument("--json", action="store_true")
    lg.set_defaults(handler=show_log)


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InputError("listen", f"{text!r} is not HOST:PORT", "e.g. 0.0.0.0:2575, port 0-65535")
    return host.strip("[]"), int(port)


def listen(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from workflow.interop.mllp import start_listener

    host, port = host_port(args.listen)
    bedside = open_app(args)

    def handle(text: str) -> str:
        reply = bedside.receive_hl7(text)
        print(f"{bedside.clock.now():%Y-%m-%dT%H:%M:%SZ} {reply.log_line()}", flush=True)
        return reply.ack

    async def serve() -> None:
        server = await start_listener(handle, host, port)
        bound = server.sockets[0].getsockname()  # type: ignore[attr-defined]
        print(f"listening for HL7 v2 over MLLP on {bound[0]}:{bound[1]}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()
        print("stopped", flush=True)

    asyncio.run(serve())
    return 0


def show_log(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 10_000:
        raise InputError("limit", "must be between 1 and 10000")
    bedside = open_app(args, archive=False)
    entries = bedside.interface_log(limit=args.limit, placer_order=args.order)
    if args.json:
        print_json(
            [
                {
                    "id": e.id,
                    "received_at": e.received_at.isoformat(),
                    "channel": e.channel,
                    "control_id": e.control_id,
                    "kind": e.kind,
                    "placer_order": e.placer_order,
                    "status": e.status,
                    "ack_code": e.ack_code,
                    "detail": e.detail,
                    "effects": list(e.effects),
                }
                for e in entries
            ]
        )
        return 0
    if not entries:
        print("the interface log is empty")
        return 0
    tz = bedside.tz
    for e in entries:
        when = e.received_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")
        sys.stdout.write(
            f"{when}  {e.channel:4} {e.control_id or '-':20} {e.kind:24} {e.ack_code} "
            f"{e.status:9} {e.placer_order or '-'}: {e.detail}\n"
        )
    return 0
