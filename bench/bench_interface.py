"""Orders from the hospital: round-trip time of one HL7 v2 message over a real MLLP socket
(listener and sender on this machine), from the block sent to its ACK read, for a new order
(patient matched, dose opened, order signed, interface log row: one transaction), a resent
duplicate, and a discontinue (the dose cancelled by the side exit).

    python bench/bench_interface.py [--orders N]

On a fresh SQLite file (synchronous=FULL). Prints median and p95 per kind and the rate of new
orders one connection sustains.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from workflow.core.protocol import load_protocol
from workflow.interop.mllp import start_listener
from workflow.resources import default_protocol_path
from workflow.service import Bedside
from workflow.store import open_store


def message(control_id: str, control: str, mrn: str, placer: str) -> str:
    now = datetime.now(UTC)
    start = f"{now + timedelta(hours=1):%Y%m%d%H%M}+0000"
    weighed = f"{now - timedelta(hours=1):%Y%m%d%H%M}+0000"
    return "\r".join(
        [
            f"MSH|^~\\&|EPIC|GENHOSP|BEDSIDE|ONC|{now:%Y%m%d%H%M}||RDE^O11^RDE_O11|{control_id}"
            "|P|2.5.1",
            f"PID|1||{mrn}^^^GENHOSP^MR||Bench^Pat||19700101|F",
            f"ORC|{control}|{placer}^EPIC|||||^^^{start}^^R|||||1234^Okafor^Amara||||Stopped",
            f"TQ1|1||Q8H||||{start}||R",
            f"RXE|^^^{start}^^R|AL600^Aldesleukin|600000||IU/kg|INJ|",
            f"OBX|1|NM|29463-7^Body weight^LN||72.5|kg|||||F|||{weighed}|||standing_scale",
        ]
    )


def send(sock: socket.socket, text: str) -> float:
    began = time.perf_counter()
    sock.sendall(b"\x0b" + text.encode() + b"\x1c\r")
    data = b""
    while not data.endswith(b"\x1c\r"):
        data += sock.recv(4096)
    elapsed = time.perf_counter() - began
    assert b"MSA|AA|" in data, data
    return elapsed


def figures(name: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(f"{name:12} n={len(ms):4}  median {statistics.median(ms):7.1f} ms  p95 {p95:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
        protocol = load_protocol(default_protocol_path())
        bedside = Bedside(store, protocol)
        for n in range(args.orders):
            patient = store.add_patient(
                mrn=f"B{n:05d}",
                family_name="Bench",
                given_name="Pat",
                date_of_birth="1970-01-01",
                created_by="bench",
            )
            store.start_course(
                patient.id,
                protocol_id=protocol.id,
                protocol_version=protocol.version,
                protocol_hash=protocol.content_hash,
            )
        loop = asyncio.new_event_loop()
        ports: list[int] = []
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            server = loop.run_until_complete(
                start_listener(lambda t: bedside.receive_hl7(t).ack, "127.0.0.1", 0)
            )
            ports.append(server.sockets[0].getsockname()[1])
            ready.set()
            loop.run_forever()
            server.close()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        ready.wait(10)
        sock = socket.create_connection(("127.0.0.1", ports[0]))
        new, dup, stop = [], [], []
        began = time.perf_counter()
        for n in range(args.orders):
            new.append(send(sock, message(f"N{n}", "NW", f"B{n:05d}", f"O{n}")))
        rate = args.orders / (time.perf_counter() - began)
        for n in range(args.orders):
            dup.append(send(sock, message(f"N{n}", "NW", f"B{n:05d}", f"O{n}")))
        for n in range(args.orders):
            stop.append(send(sock, message(f"D{n}", "DC", f"B{n:05d}", f"O{n}")))
        sock.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        figures("new (NW)", new)
        figures("duplicate", dup)
        figures("stop (DC)", stop)
        print(f"new orders on one connection: {rate:.1f} per second")
        store.close()


if __name__ == "__main__":
    main()
