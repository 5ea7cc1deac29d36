"""An MLLP listener on a free port (asyncio, in a thread, as `bedside interface hl7` runs it)
and a blocking MLLP client, plus pharmacy order messages written the way a hospital's system
writes them (CR separators, escapes, repetitions, a Z-segment)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from workflow.interop.mllp import start_listener
from workflow.service import Bedside

SB, EB, CR = b"\x0b", b"\x1c", b"\r"


@contextmanager
def listener(app: Bedside) -> Iterator[int]:
    """Serve ``app.receive_hl7`` over MLLP on 127.0.0.1 and yield the port."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> asyncio.AbstractServer:
            return await start_listener(lambda text: app.receive_hl7(text).ack, "127.0.0.1", 0)

        server = loop.run_until_complete(start())
        port.append(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        ready.set()
        loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(loop)  # connections still open: end them
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "the listener did not start"
    try:
        yield port[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


class Sender:
    """One MLLP connection, as an interface engine keeps it open: send, wait for the ACK."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)

    def send(self, message: str) -> str:
        self.sock.sendall(SB + message.encode("utf-8") + EB + CR)
        data = b""
        while not data.endswith(EB + CR):
            chunk = self.sock.recv(4096)
            assert chunk, "the listener closed the connection without an answer"
            data += chunk
        assert data.startswith(SB)
        return data[1:-2].decode("utf-8")

    def close(self) -> None:
        self.sock.close()


def msa(ack: str) -> tuple[str, str, str]:
    """(MSA-1, MSA-2, MSA-3) of an acknowledgement."""
    for segment in ack.split("\r"):
        if segment.startswith("MSA|"):
            fields = [*segment.split("|"), "", "", ""]
            return fields[1], fields[2], fields[3]
    raise AssertionError(f"no MSA segment in {ack!r}")


def order(
    control_id: str,
    control: str = "NW",
    *,
    placer: str = "ORD1001",
    mrn: str = "MRN-1",
    family: str = "Quist",
    given: str = "Ada",
    dob: str = "19680502",
    drug: str = "AL600^Aldesleukin^LOCAL",
    dose: str = "600000",
    units: str = "IU/kg^international units per kilogram",
    weight: str = "72.5",
    weighed: str = "202611020500",
    method: str = "standing_scale",
    start: str = "202611020800",
    priority: str = "R",
    reason: str = "",
    kind: str = "RDE^O11^RDE_O11",
) -> str:
    """An RDE^O11 (or ORM^O01 with ``kind``) as the hospital's pharmacy feed sends it."""
    rx = (
        f"RXE|^^^{start}^^{priority}|{drug}|{dose}||{units}|INJ^Injection|"
        if kind.startswith("RDE")
        else f"RXO|{drug}|{dose}||{units}|INJ^Injection||"
    )
    segments = [
        f"MSH|^~\\&|EPIC|GENHOSP|BEDSIDE|ONC|202611020555||{kind}|{control_id}|P|2.5.1|||AL|NE",
        f"PID|1||555-44-3333^^^SSA^SS~{mrn}^^^GENHOSP^MR||{family}^{given}^^^^^L||{dob}|F",
        "PV1|1|I|4W^412^1^GENHOSP",
        f"ORC|{control}|{placer}^EPIC|||||^^^{start}^^{priority}|||||"
        f"1234^Okafor^Amara^^^Dr^^^NPI||||{reason}",
        f"TQ1|1||Q8H^Every 8 hours||||{start}||{priority}",
        rx,
        f"OBX|1|NM|29463-7^Body weight^LN||{weight}|kg^kilogram^UCUM|||||F|||{weighed}|||{method}",
        "ZRX|1|EPIC-INTERNAL^ignored\\F\\here|",
    ]
    return "\r".join(segments)
