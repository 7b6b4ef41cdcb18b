"""Running the ``polymodal`` command in-process (typer's CliRunner), checking a user error, and
making stderr look like a terminal (where progress bars draw) or a log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from polymodal.cli import app


def invoke(*args: Any):
    """``polymodal ARGS...`` (each argument as text); the result holds exit_code, output and stderr."""
    return CliRunner().invoke(app, [str(a) for a in args])


def classification_files(root: Path, **train: Any) -> dict[str, Path]:
    """The tiny image + tabular dataset split into manifests under ``root``, with its config
    (``train``: the config's training settings) as ``config.yaml``."""
    import yaml
    from helpers_models import classification_config, make_dataset, write_splits

    paths = write_splits(root, make_dataset(root))
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(classification_config(**train)), encoding="utf-8")
    return {"root": root, "config": config, **paths}


def train_run(data: dict[str, Path], out: Path):
    """``polymodal train`` of :func:`classification_files`' config into ``out``; the CLI result."""
    result = invoke("train", data["config"], "--train", data["train"], "--valid", data["valid"], "--out", out)
    assert result.exit_code == 0, result.output
    return result


def fitted_run(tmp_path_factory, config: dict[str, Any], n: int, name: str) -> tuple[Path, dict[str, Path]]:
    """A run of ``config`` (its report diagnostics off) fitted in Python on ``n`` rows of the tiny
    dataset; ``(run folder, manifests by split)``."""
    from helpers_models import make_dataset, write_splits

    from polymodal import MultimodalPredictor

    root = tmp_path_factory.mktemp("data")
    paths = write_splits(root, make_dataset(root, n=n))
    folder = tmp_path_factory.mktemp("runs") / name
    MultimodalPredictor.from_config({**config, "report": {"rows": 0}}).fit(paths["train"], paths["valid"], out=folder)
    return folder, paths


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
