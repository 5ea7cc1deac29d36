"""The MLLP listener (HL7 v2 over TCP, minimal lower layer protocol) on python-hl7's asyncio
streams: each block <VT>message<FS><CR> is handed to ``handle`` (in a worker thread: it writes
to the database) and its answer is sent back in a block before the next message is read, as
HL7's original acknowledgement mode expects."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from hl7.mllp import InvalidBlockError, start_hl7_server

log = logging.getLogger("bedside.interface")

# Encoding of the feed: UTF-8 (ASCII is a subset); a byte that is not UTF-8 is replaced, so a
# name read wrongly fails the patient match instead of being stored.
ENCODING = "utf-8"


async def start_listener(
    handle: Callable[[str], str], host: str, port: int
) -> asyncio.AbstractServer:
    """Listen on ``host:port`` (port 0: a free one; see the server's sockets)."""

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                try:
                    block: bytes = await reader.readblock()  # type: ignore[attr-defined]
                except asyncio.IncompleteReadError:
                    break  # the sender closed the connection
                except (InvalidBlockError, ValueError) as exc:
                    log.warning("%s: not an MLLP block (%s): connection closed", peer, exc)
                    break
                text = block.decode(ENCODING, errors="replace")
                try:
                    answer = await asyncio.to_thread(handle, text)
                except Exception:
                    # No answer at all (the database is down, a fault of ours): the sender
                    # keeps the message and resends it, which an AE would tell it not to.
                    log.exception("%s: a message could not be handled: connection closed", peer)
                    break
                writer.writeblock(answer.encode(ENCODING))  # type: ignore[attr-defined]
                await writer.drain()
        finally:
            writer.close()

    server: asyncio.AbstractServer = await start_hl7_server(connected, host, port)
    return server


async def send_message(host: str, port: int, text: str, timeout: float = 30.0) -> str:
    """Send one message over MLLP and return the acknowledgement's text (for tests and
    ``bedside interface send``)."""
    from hl7.mllp import open_hl7_connection

    reader, writer = await open_hl7_connection(host, port)
    try:
        writer.writeblock(text.encode(ENCODING))
        await writer.drain()
        block: bytes = await asyncio.wait_for(reader.readblock(), timeout)
        return block.decode(ENCODING, errors="replace")
    finally:
        writer.close()
