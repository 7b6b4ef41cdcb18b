"""Progress bars for long work (rich), silent when disabled or when there is little to do.

They draw on stderr, so what a command prints on stdout (``evaluate --json``) stays clean."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True, min_total: int = 200) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows a rich progress bar when enabled and ``total >= min_total``."""
    if not enabled or total < min_total:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
