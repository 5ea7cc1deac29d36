"""A laboratory balance on a serial port, spoken to in MT-SICS (issue 16.3).

MT-SICS level 0 is what nearly every laboratory balance understands: the host sends ``SI``
(the weight now) and the balance answers one line, ``S S      12.345 g`` when the weight is
stable, ``S D      12.341 g`` while it still moves, ``S I`` when it cannot answer now, ``S +``
or ``S -`` above or below its range; ``ES``, ``ET`` and ``EL`` are syntax, transmission and
logical errors. ``I4`` asks for the balance's serial number (``I4 A "0123456789"``, also level
0); a balance that does not give one is still read, its serial left empty. :func:`read_stable`
asks until the weight is stable (a moving weight is never
recorded) or the time is up, and refuses anything else with a message that says why.

pyserial opens the port, so a real ``/dev/ttyUSB0``, a USB adapter or a pseudo-terminal
(the tests' fake balance) are all the same to it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from decimal import Decimal

import serial

from workflow.core.errors import InputError, StepRefused

_WEIGHT = re.compile(r"^S ([SD])\s+(-?[0-9]+(?:\.[0-9]+)?)\s+(\S+)$")
_ERRORS = {
    "ES": "syntax error: the balance did not understand the command (ES)",
    "ET": "transmission error: the balance received a garbled command (ET)",
    "EL": "logical error: the balance cannot run the command now (EL)",
    "S +": "overload: the weight is above the balance's range (S +)",
    "S -": "underload: the weight is below the balance's range (S -)",
}


_SERIAL = re.compile(r'^I4 A "([^"]{1,64})"$')


@dataclass(frozen=True)
class Weight:
    grams: Decimal
    reply: str  # the balance's own line, kept for the record
    serial: str = ""  # the balance's serial number (MT-SICS I4), "" when it gave none


def parse_serial(line: str) -> str:
    """The serial number of an ``I4`` reply, or "" for anything else (ES, I4 I, noise)."""
    found = _SERIAL.match(line.strip())
    return found.group(1).strip() if found else ""


def parse_reply(line: str) -> Weight | None:
    """A stable weight, None while it moves or the balance is busy (``S D``, ``S I``);
    StepRefused("balance_error") for an error, an overload or a reply that is not MT-SICS."""
    text = line.strip()
    if text in _ERRORS:
        raise StepRefused("balance_error", f"Balance: {_ERRORS[text]}", field="balance")
    if text == "S I":
        return None
    found = _WEIGHT.match(text)
    if found is None:
        raise StepRefused(
            "balance_error", f"Balance: '{text}' is not an MT-SICS weight reply", field="balance"
        )
    if found.group(1) == "D":
        return None
    if found.group(3) != "g":
        raise StepRefused(
            "balance_error",
            f"Balance: weight in '{found.group(3)}'; set the balance to grams (g)",
            field="balance",
        )
    return Weight(Decimal(found.group(2)), text)


def read_stable(
    port: str, *, baud: int = 9600, timeout_s: float = 10.0, poll_s: float = 0.2
) -> Weight:
    """One stable weight from the balance on ``port``: ``SI`` until the reply is stable,
    for at most ``timeout_s`` seconds; StepRefused("balance_error") otherwise."""
    try:
        link = serial.Serial(port, baudrate=baud, timeout=min(2.0, timeout_s))
    except (serial.SerialException, OSError) as exc:
        raise InputError("--port", f"cannot open the balance on {port}: {exc}") from None
    deadline = time.monotonic() + timeout_s
    last = "no reply"
    with link:
        link.reset_input_buffer()
        # Which balance: its serial number goes with the weight into the record.
        link.write(b"I4\r\n")
        number = parse_serial(link.readline().decode("ascii", "replace"))
        while time.monotonic() < deadline:
            link.write(b"SI\r\n")
            raw = link.readline()
            if not raw:
                last = "no reply"
                continue
            last = raw.decode("ascii", "replace").strip()
            weight = parse_reply(last)
            if weight is not None:
                return Weight(weight.grams, weight.reply, number)
            time.sleep(poll_s)
    raise StepRefused(
        "balance_error",
        f"Balance on {port}: no stable weight within {timeout_s:g} s (last reply: {last})",
        field="balance",
    )
