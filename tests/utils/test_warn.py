"""Warnings raised deep inside polymodal point at the user's line that called into it (the
pipeline's: tests/data/test_pipeline.py)."""

from __future__ import annotations

import warnings

from polymodal.utils.warn import warn_user


def test_warn_user_from_this_file_points_here():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_user("hello"); line = __import__("inspect").currentframe().f_lineno  # noqa: E702
    assert caught[0].filename == __file__ and caught[0].lineno == line
