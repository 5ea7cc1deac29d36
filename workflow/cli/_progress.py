"""Progress of the slow commands (seconds to minutes): a bar on a terminal, plain lines elsewhere.

On a terminal (standard output and standard error both, and no ``--json``) a tqdm bar on
standard error shows the count, the rate and the time left. Otherwise (a pipe, a log file, a
cron job, ``--json``) each step is one plain line on standard error, ``LABEL: DONE/TOTAL ITEM``,
which a log keeps and a script can follow; standard output stays the command's result alone.

Two ways in, both usable from any command (``archive verify``/``export``/``catch-up`` later):

* ``track(items, "archive verify", total=n, unit="record", name=str)``: wrap an iterable; each
  item taken counts one, named in the plain line by ``name(item)``.
* ``with Progress("dev seed", total=n, unit="case") as p: ... p.advance(k)`` or
  ``p.update_to(done)``: a counter for work reported in batches or through a callback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sized
from types import TracebackType
from typing import Any, TextIO, TypeVar

T = TypeVar("T")


def on_terminal(json_output: bool = False) -> bool:
    """Whether a live bar suits this run: both streams on a terminal and no machine output."""
    return not json_output and sys.stdout.isatty() and sys.stderr.isatty()


def _size(stream: TextIO) -> tuple[int, int] | None:
    """None when the terminal reports its size (tqdm then follows it), else 80 x 24.

    A pseudo-terminal nobody sized (``script``, some CI runners, an SSH session without a
    window) reports 0 x 0; tqdm would draw an empty bar and hide it as below the last row.
    """
    import os

    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (a test's StringIO)
        return 80, 24
    return None if size.columns > 0 and size.lines > 0 else (80, 24)


class Progress:
    """Counts done items toward ``total``; a bar or plain lines (see the module)."""

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        unit: str = "item",
        json_output: bool = False,
        bar: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        if on_terminal(json_output) if bar is None else bar:
            from tqdm import tqdm  # loaded only when a bar is drawn (start-up)

            size = _size(self._stream)
            self._bar = tqdm(
                total=total,
                desc=label,
                unit=unit,
                file=self._stream,
                dynamic_ncols=size is None,  # follow the window as it is resized
                ncols=size[0] if size else None,
                nrows=size[1] if size else None,
                leave=True,
            )

    def advance(self, n: int = 1, item: str | None = None) -> None:
        """``n`` more done; ``item`` names the last one in the plain line."""
        self.update_to(self.done + n, item)

    def update_to(self, done: int, item: str | None = None) -> None:
        """The count is now ``done`` (for work reported by a callback with running totals)."""
        step = done - self.done
        self.done = done
        if self._bar is not None:
            self._bar.update(step)
            return
        of = f"/{self.total}" if self.total is not None else ""
        what = f" {item}" if item else f" {self.unit}s"
        self._stream.write(f"{self.label}: {done}{of}{what}\n")
        self._stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def track(
    items: Iterable[T],
    label: str,
    *,
    total: int | None = None,
    unit: str = "item",
    json_output: bool = False,
    name: Callable[[T], str] | None = None,
    bar: bool | None = None,
    stream: TextIO | None = None,
) -> Iterator[T]:
    """Yield ``items`` unchanged, counting each one as done when the next is asked for."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    with Progress(
        label, total, unit=unit, json_output=json_output, bar=bar, stream=stream
    ) as progress:
        for item in items:
            yield item
            progress.advance(1, name(item) if name is not None else None)
