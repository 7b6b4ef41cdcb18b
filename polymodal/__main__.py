"""``python -m polymodal``: the ``polymodal`` command, as ``python -m polymodal.cli`` starts it."""

from polymodal.cli import main

main()
