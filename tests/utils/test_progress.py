"""``polymodal.utils.progress``: a bar where someone watches stderr; elsewhere a line now and
then for long work, nothing for short work."""

from __future__ import annotations

import pytest
from helpers_cli import as_terminal, not_a_terminal

from polymodal.utils.progress import progress_bar


def run_bar(total: int = 300, **kwargs) -> None:
    with progress_bar(total, "encoding image", **kwargs) as advance:
        for _ in range(total):
            advance(1)


def test_a_bar_on_a_non_terminal_prints_nothing(capsys, monkeypatch):
    """stderr captured (not a tty), as under ``polymodal evaluate ... --json 2> log``: a finished
    transient rich bar used to leave an empty line there, one per bar."""
    not_a_terminal(monkeypatch)
    run_bar()
    run_bar()
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_long_work_on_a_non_terminal_says_how_far_it_got_in_lines(capsys, monkeypatch):
    """A log or nohup output of minutes of encoding is not left silent: a plain line per LOG_EVERY."""
    from polymodal.utils import progress

    not_a_terminal(monkeypatch)
    clock = iter(range(0, 10_000, 10))  # each reading of the clock 10 s after the last
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(clock)))
    run_bar(total=300)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 100  # every third advance is 30 s after the last line
    assert lines[0] == "encoding image: 3/300 (1%), 30 s" and lines[-1] == "encoding image: 300/300 (100%), 3000 s"


def test_a_bar_on_a_terminal_draws_on_stderr(capsys, monkeypatch):
    as_terminal(monkeypatch)
    run_bar()
    captured = capsys.readouterr()
    assert "encoding image" in captured.err and captured.out == ""


@pytest.mark.parametrize(("total", "kwargs"), [(300, {"enabled": False}), (10, {})])
def test_a_disabled_or_short_bar_prints_nothing_even_on_a_terminal(capsys, monkeypatch, total, kwargs):
    as_terminal(monkeypatch)
    run_bar(total, **kwargs)
    assert capsys.readouterr().err == ""


def test_a_log_line_goes_where_no_bar_is_drawn(capsys, monkeypatch):
    from polymodal.utils.progress import log_line

    not_a_terminal(monkeypatch)
    log_line("report: on 120 rows")
    log_line("silent", enabled=False)
    assert capsys.readouterr().err == "report: on 120 rows\n"
    as_terminal(monkeypatch)  # the bar says it there
    log_line("report: on 120 rows")
    assert capsys.readouterr().err == ""
