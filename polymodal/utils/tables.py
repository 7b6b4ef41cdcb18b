"""Tables: plain Markdown (no extra dependency), and rich tables printed whole where output is
not a terminal."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def format_value(value: Any, digits: int = 4, *, group_ints: bool = True) -> str:
    """A table cell's text, one rule for the command line, Markdown and HTML tables: floats from a
    thousand up with thousands separators and one decimal, smaller floats with ``digits``
    decimals, integers with separators (``group_ints``; the command line prints them as they are:
    a year, an id), missing and non-finite values as ``-``."""
    if isinstance(value, np.number | np.bool_):  # a numpy scalar (not an array, nor a date)
        value = value.item()
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}" if group_ints else str(value)
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table of ``rows``."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(format_value(r.get(c), digits) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_table(console: Any, table: Any) -> None:
    """Print a rich ``table``; where output is not a terminal (a pipe, a file, a CI log: 80 columns
    by default) at its natural width, so that no number or name is broken across lines."""
    if console.is_terminal:
        console.print(table)
        return
    width = console.measure(table, options=console.options.update(max_width=10_000)).maximum
    narrow = console.width
    console.width = max(width, narrow)  # print(width=...) would be capped at the console's width
    try:
        console.print(table)
    finally:
        console.width = narrow
