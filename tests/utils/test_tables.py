"""Tables printed where output is not a terminal keep every value on one line."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from polymodal.utils.tables import markdown_table, print_table

VALUES = ["linear_cca", "audio->image", "0.7700", "0.9170", "13.5000", "complete", "attention"]


def wide_table() -> Table:
    table = Table(title="retrieval")
    for i in range(len(VALUES)):
        table.add_column(f"column_{i}", overflow="fold")
    table.add_row(*VALUES)
    return table


def test_a_table_sent_to_a_pipe_is_printed_at_its_natural_width():
    out = io.StringIO()
    console = Console(file=out, width=40, force_terminal=False)
    print_table(console, wide_table())
    row = next(line for line in out.getvalue().splitlines() if "linear_cca" in line)
    assert [cell.strip() for cell in row.strip("│").split("│")] == VALUES  # no value folded onto a second line
    assert console.width == 40  # the console's own width is kept for what follows


def test_a_terminal_keeps_its_width():
    out = io.StringIO()
    console = Console(file=out, width=40, force_terminal=True, color_system=None)
    print_table(console, wide_table())
    assert max(len(line) for line in out.getvalue().splitlines()) <= 40


def test_markdown_table_formats_numbers_and_missing_values():
    text = markdown_table([{"a": 0.5, "b": None, "c": 1234}])
    assert text.splitlines() == ["| a | b | c |", "|---|---|---|", "| 0.5000 | - | 1,234 |"]


def test_format_value_writes_every_number_one_way():
    import numpy as np

    from polymodal.utils.tables import format_value

    assert format_value(1303195.249) == "1,303,195.2" and format_value(-0.12345) == "-0.1235"
    assert format_value(np.float32(2.5)) == "2.5000" and format_value(np.int64(12345)) == "12,345"
    assert format_value(2024, group_ints=False) == "2024" and format_value(True) == "True"
    assert format_value(float("nan")) == "-" and format_value(None) == "-" and format_value(float("inf")) == "-"
    assert format_value(np.array([1, 2])) == "[1 2]"  # an array is text, not a number
    assert format_value("12345") == "12345"
