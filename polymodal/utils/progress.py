"""Progress bars for long work (rich), silent when disabled or when there is little to do.

They draw on stderr, so what a command prints on stdout (``evaluate --json``) stays clean, and
only where someone watches it: on a terminal or in a notebook. Elsewhere (a pipe, a file, a CI
log, ``nohup``) work that runs long says how far it got in a plain line every ``LOG_EVERY``
seconds, and short work prints nothing, not even the empty line a finished transient rich bar
leaves."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

LOG_EVERY = 30.0  # seconds between the progress lines of a long piece of work where no bar is drawn


def _ignore(n: int) -> None:
    """``advance`` where no bar is shown."""


class _ProgressLines:
    """``advance`` where no bar is drawn: a line on stderr (``encoding image: 1,200/3,000 (40%),
    31 s``) once ``LOG_EVERY`` seconds have passed since the work began or the last line."""

    def __init__(self, total: int, description: str):
        self.total, self.description = total, description
        self.done = 0
        self.started = self.said = time.monotonic()

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.said >= LOG_EVERY:
            self.said = now
            print(f"{self.description}: {self.done:,}/{self.total:,} ({100 * self.done / self.total:.0f}%), "
                  f"{now - self.started:.0f} s", file=sys.stderr, flush=True)


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True, min_total: int = 200) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows a rich progress bar on stderr when enabled, ``total >= min_total``
    and stderr is an interactive terminal or a notebook, and elsewhere a line every ``LOG_EVERY``
    seconds while the work lasts."""
    if not enabled or total < min_total:
        yield _ignore
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not watched(console):
        yield _ProgressLines(total, description)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
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
