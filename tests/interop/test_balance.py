"""The laboratory balance over a real serial line (issue 16.3): a pseudo-terminal, with a small
fake balance on the other end answering MT-SICS the way a balance does. pyserial opens the pty's
device path exactly as it would open /dev/ttyUSB0."""

from __future__ import annotations

import os
import select
import threading
import tty
from collections.abc import Iterator
from decimal import Decimal

import pytest

from workflow.cli import main
from workflow.core.errors import StepRefused
from workflow.interop.balance import parse_reply, read_stable


class FakeBalance:
    """Answers each ``SI`` with the next scripted reply (the last one repeats), and ``I4``
    with its serial number (``ES``, as a balance without one, when ``serial`` is empty)."""

    def __init__(self, replies: list[str], serial: str = "B842315077") -> None:
        self.replies = replies
        self.serial = serial
        self.commands: list[str] = []
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave  # kept open so the line stays up between the client's opens
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                pending += os.read(self.master, 256)
            except OSError:
                return
            while b"\r\n" in pending:
                line, pending = pending.split(b"\r\n", 1)
                self.commands.append(line.decode())
                if line == b"I4":
                    reply = f'I4 A "{self.serial}"' if self.serial else "ES"
                    os.write(self.master, reply.encode() + b"\r\n")
                    continue
                reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
                os.write(self.master, reply.encode() + b"\r\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture
def balance() -> Iterator[list[FakeBalance]]:
    made: list[FakeBalance] = []
    yield made
    for b in made:
        b.close()


def fake(made: list[FakeBalance], *replies: str) -> FakeBalance:
    b = FakeBalance(list(replies))
    made.append(b)
    return b


def test_a_stable_weight_is_read(balance: list[FakeBalance]) -> None:
    b = fake(balance, "S S      12.345 g")
    weight = read_stable(b.port, timeout_s=3, poll_s=0.01)
    assert weight.grams == Decimal("12.345") and weight.reply == "S S      12.345 g"
    assert weight.serial == "B842315077"  # asked first with I4 (orders16.5)
    assert b.commands == ["I4", "SI"]


def test_a_balance_without_a_serial_number_is_still_read(balance: list[FakeBalance]) -> None:
    b = FakeBalance(["S S      12.345 g"], serial="")
    balance.append(b)
    weight = read_stable(b.port, timeout_s=3, poll_s=0.01)
    assert (weight.grams, weight.serial) == (Decimal("12.345"), "")


def test_a_moving_weight_is_waited_out(balance: list[FakeBalance]) -> None:
    b = fake(balance, "S D      12.101 g", "S I", "S D      12.340 g", "S S      12.344 g")
    weight = read_stable(b.port, timeout_s=3, poll_s=0.01)
    assert weight.grams == Decimal("12.344")
    assert b.commands == ["I4"] + ["SI"] * 4  # asked again until the balance called it stable


def test_never_stable_is_refused_after_the_timeout(balance: list[FakeBalance]) -> None:
    b = fake(balance, "S D      12.101 g")
    with pytest.raises(StepRefused) as refused:
        read_stable(b.port, timeout_s=0.3, poll_s=0.01)
    assert "no stable weight within 0.3 s" in refused.value.message
    assert "S D      12.101 g" in refused.value.message


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        ("S +", "overload"),
        ("S -", "underload"),
        ("ES", "syntax error"),
        ("ET", "transmission error"),
        ("EL", "logical error"),
        ("S S      12.345 kg", "set the balance to grams"),
        ("hello", "not an MT-SICS weight reply"),
    ],
)
def test_errors_and_overload_are_refused(
    balance: list[FakeBalance], reply: str, words: str
) -> None:
    b = fake(balance, reply)
    with pytest.raises(StepRefused) as refused:
        read_stable(b.port, timeout_s=2, poll_s=0.01)
    assert refused.value.reason == "balance_error" and words in refused.value.message


def test_parse_reply_reads_negative_and_unstable() -> None:
    assert parse_reply("S S     -0.012 g") is not None
    assert parse_reply("S D      1.000 g") is None
    assert parse_reply("S I") is None


def test_cli_prints_one_stable_weight(
    balance: list[FakeBalance], capsys: pytest.CaptureFixture[str]
) -> None:
    b = fake(balance, "S D       9.998 g", "S S      10.002 g")
    assert main(["balance", "read", "--port", b.port, "--timeout", "3"]) == 0
    assert capsys.readouterr().out.strip() == "10.002 g"
    b = fake(balance, "S +")
    code = main(["balance", "read", "--port", b.port, "--timeout", "3"])
    assert code != 0 and "overload" in capsys.readouterr().err
    code = main(["balance", "read", "--port", "/dev/no-such-balance", "--timeout", "1"])
    assert code == 2 and "cannot open the balance on /dev/no-such-balance" in (
        capsys.readouterr().err
    )
