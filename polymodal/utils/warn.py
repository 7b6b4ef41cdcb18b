"""Warnings attributed to the user's code: the line that called into polymodal, however deep
inside the package the warning is raised (so ``-W error`` and warning filters point there)."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from pathlib import Path

from polymodal.errors import PolymodalWarning

PACKAGE = str(Path(__file__).resolve().parent.parent) + os.sep  # a sibling such as polymodal_x/ is not inside
# frames between the user's line and the package that are not the user's either: context managers
# (``with pred.using_support(...)``), wrappers, and the training loop that calls polymodal back
PASSED_THROUGH = ("contextlib", "functools", "lightning", "torch", "optuna")


def _passed_through() -> tuple[str, ...]:
    """The folders (or files) of :data:`PASSED_THROUGH` modules that are loaded (none is imported here)."""
    found = [PACKAGE, str(Path(contextlib.__file__).resolve()), str(Path(functools.__file__).resolve())]
    for name in PASSED_THROUGH[2:]:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            found.append(str(Path(module.__file__).resolve().parent) + os.sep)
    return tuple(found)


def caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside the polymodal package (and the context
    managers and training loop it passes through), seen from the caller of :func:`warn_user`."""
    skipped = _passed_through()
    frame, level = sys._getframe(2), 2  # the frame that called warn_user
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(skipped):
        frame, level = frame.f_back, level + 1
    return level


def warn_user(message: str, category: type[Warning] = PolymodalWarning) -> None:
    """``warnings.warn`` at the user's line that led here, a :class:`PolymodalWarning` unless told."""
    warnings.warn(message, category, stacklevel=caller_stacklevel())
