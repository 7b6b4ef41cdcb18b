"""Running the ``polymodal`` command in-process (typer's CliRunner), checking a user error, and
making stderr look like a terminal (where progress bars draw) or a log."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from polymodal.cli import app


def invoke(*args: Any):
    """``polymodal ARGS...`` (each argument as text); the result holds exit_code, output and stderr."""
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_user_error(result, *fragments: str) -> None:
    """Exit status 2, a readable message on stderr holding every fragment, and no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), f"the command crashed: {result.exception!r}"
    assert "Traceback" not in result.output
    assert "error:" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def as_terminal(monkeypatch) -> None:
    """Make rich take the captured stderr for an interactive terminal (where progress bars draw)."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    monkeypatch.setenv("TERM", "xterm-256color")


def not_a_terminal(monkeypatch) -> None:
    """Undo rich's overrides of ``isatty()``: the captured stderr is a pipe, as in a log."""
    for name in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
