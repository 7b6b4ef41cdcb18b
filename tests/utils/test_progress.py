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


def tick_clock(monkeypatch, seconds: int) -> None:
    """Each reading of the progress clock ``seconds`` after the last, from 0."""
    from polymodal.utils import progress

    clock = iter(range(0, 100_000, seconds))
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(clock)))


def test_long_work_on_a_non_terminal_says_how_far_it_got_in_lines(capsys, monkeypatch):
    """A log or nohup output of minutes of encoding is not left silent: a first line FIRST_LOG
    seconds in, then one per LOG_EVERY, and the last at the end."""
    not_a_terminal(monkeypatch)
    tick_clock(monkeypatch, 10)
    run_bar(total=300)
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["encoding image: 1/300 (0%), 10 s", "encoding image: 4/300 (1%), 40 s"]
    assert len(lines) == 101  # advances 1, 4, ..., 298, and the closing line
    assert lines[-2] == "encoding image: 298/300 (99%), 2980 s"
    assert lines[-1] == "encoding image: 300/300 (100%), 3010 s"


def test_work_stopped_by_an_error_says_where_it_stopped(capsys, monkeypatch):
    not_a_terminal(monkeypatch)
    tick_clock(monkeypatch, 10)
    with pytest.raises(RuntimeError), progress_bar(300, "encoding image") as advance:
        for step in range(300):
            if step == 5:
                raise RuntimeError("a corrupt file")
            advance(1)
    assert capsys.readouterr().err.splitlines()[-1] == "encoding image: 5/300 (2%), 60 s"


def test_work_shorter_than_the_first_line_prints_nothing_in_a_log(capsys, monkeypatch):
    not_a_terminal(monkeypatch)
    tick_clock(monkeypatch, 1)
    run_bar(total=9, min_total=1)  # done 9 s in: before FIRST_LOG
    assert capsys.readouterr().err == ""


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


def test_a_few_slow_rows_in_a_log_say_how_far_they_got(capsys, monkeypatch):
    """Under min_total (no bar on a terminal for so few rows), yet 20 s a row: 92 clips through a
    frozen backbone were a silent minute in a log."""
    not_a_terminal(monkeypatch)
    tick_clock(monkeypatch, 20)
    run_bar(total=3)
    assert capsys.readouterr().err.splitlines() == ["encoding image: 1/3 (33%), 20 s", "encoding image: 3/3 (100%), 80 s"]


def test_a_bar_shows_its_description_as_text_not_markup(capsys, monkeypatch):
    """A manifest named x[/y].csv raised rich's MarkupError under 'predicting x[/y].csv'; one
    named x[bold].csv lost its brackets."""
    as_terminal(monkeypatch)
    for name in ("x[/y].csv", "x[bold].csv"):
        with progress_bar(300, f"predicting {name}") as advance:
            advance(300)
        assert f"predicting {name}" in capsys.readouterr().err
