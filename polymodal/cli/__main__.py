"""``python -m polymodal.cli``: the ``polymodal`` command (distributed launchers start it this way)."""

from polymodal.cli import main

main()
