"""Progress bars for long work (rich), silent when disabled or when there is little to do.

They draw on stderr, so what a command prints on stdout (``evaluate --json``) stays clean, and
only where someone watches it: on a terminal or in a notebook. Elsewhere (a pipe, a file, a CI
log, ``nohup``) work that runs long says how far it got in a plain line ``FIRST_LOG`` seconds
in, then every ``LOG_EVERY`` seconds, and a last line when it ends; short work prints nothing,
not even the empty line a finished transient rich bar leaves."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

FIRST_LOG = 10.0  # seconds into a piece of work before its first progress line where no bar is drawn
LOG_EVERY = 30.0  # seconds between its later lines


def _ignore(n: int) -> None:
    """``advance`` where no bar is shown."""


class _ProgressLines:
    """``advance`` where no bar is drawn: a line on stderr (``encoding image: 1,200/3,000 (40%),
    31 s``) once ``FIRST_LOG`` seconds have passed since the work began, then ``LOG_EVERY``
    seconds after the last line; :meth:`close` says where it ended, when a line was printed."""

    def __init__(self, total: int, description: str):
        self.total, self.description = total, description
        self.done = 0
        self.started = time.monotonic()
        self.said: float | None = None  # when the last line was printed

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        due = self.started + FIRST_LOG if self.said is None else self.said + LOG_EVERY
        if now >= due and self.done < self.total:
            self._line(now)

    def close(self) -> None:
        """The closing line of work that printed one: how much was done (all of it, or where an
        error stopped it) and in how long."""
        if self.said is not None:
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        self.said = now
        print(f"{self.description}: {self.done:,}/{self.total:,} ({100 * self.done / self.total:.0f}%), "
              f"{now - self.started:.0f} s", file=sys.stderr, flush=True)


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True, min_total: int = 200) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows a rich progress bar on stderr when enabled, ``total >= min_total``
    and stderr is an interactive terminal or a notebook, and elsewhere (enabled, whatever the total:
    a few rows can take minutes) a line ``FIRST_LOG`` seconds in, then every ``LOG_EVERY`` seconds
    while the work lasts, and one at its end."""
    if not enabled or total <= 0:
        yield _ignore
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if total < min_total and watched(console):
        yield _ignore
        return
    if not watched(console):
        lines = _ProgressLines(total, description)
        try:
            yield lines
        finally:
            lines.close()
        return
    with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True, console=console) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def watched(console: Any = None) -> bool:
    """Whether someone watches stderr: an interactive terminal or a notebook (not a pipe, a file or
    a CI log, where a bar would print its last state as a line of text)."""
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    return bool(console.is_interactive or console.is_jupyter)


def log_line(message: str, enabled: bool = True) -> None:
    """Print ``message`` on stderr where no bar is drawn (a log, a pipe, CI) and ``enabled``: the
    one line that says what long work is under way there."""
    if enabled and not watched():
        print(message, file=sys.stderr, flush=True)
