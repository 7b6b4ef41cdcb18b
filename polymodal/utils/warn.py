"""Warnings attributed to the user's code: the line that called into polymodal, however deep
inside the package the warning is raised (so ``-W error`` and warning filters point there)."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

PACKAGE = str(Path(__file__).resolve().parent.parent) + os.sep  # a sibling such as polymodal_x/ is not inside


def caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside the polymodal package, seen from the caller
    of :func:`warn_user`."""
    frame, level = sys._getframe(2), 2  # the frame that called warn_user
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` at the user's line that led here."""
    warnings.warn(message, category, stacklevel=caller_stacklevel())
