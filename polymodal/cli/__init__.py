"""The ``polymodal`` command line: one module per group of commands, each a thin layer over the
Python API.

- :mod:`~polymodal.cli.model`: ``train``, ``evaluate``, ``explain``, ``predict``, ``threshold``, ``demo``, ``tune``,
  ``compare``
- :mod:`~polymodal.cli.retrieval`: ``embed``, ``index build``, ``retrieve``, ``zero-shot``
- :mod:`~polymodal.cli.deploy`: ``export``, ``serve``
- :mod:`~polymodal.cli.config`: ``config schema``, ``config check``
- :mod:`~polymodal.cli.data`: ``datasets list / prepare``, ``manifest convert``
- :mod:`~polymodal.cli.common`: the consoles, ``user_errors`` (one message and status 2 for a user's
  mistake), the shared arguments and printers

Nothing below this package imports it: the library never prints through the command line.
"""

from __future__ import annotations

from typing import Annotated

import typer

from polymodal import __version__
from polymodal.cli import config, data, deploy, model, retrieval
from polymodal.cli.common import user_errors

app = typer.Typer(help="Multimodal deep learning: train, evaluate, predict and inspect models over images, "
                       "text, audio, signals and tables.", no_args_is_help=True, add_completion=False,
                  rich_markup_mode="markdown")  # help paragraphs rewrapped to the terminal
for _group in (model, retrieval, deploy, config, data):  # the order of --help
    _group.register(app)


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"polymodal {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                   help="Print polymodal's version and exit.")] = False) -> None:
    """The options before any command: ``--version``."""

__all__ = ["app", "main", "user_errors"]


def main() -> None:  # pragma: no cover - console-script entry
    app()
