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


def test_polymodals_warnings_have_their_own_category_to_filter_by(tmp_path):
    import pandas as pd

    import polymodal
    from polymodal import check_manifests, load_config

    assert issubclass(polymodal.PolymodalWarning, UserWarning)  # pytest.warns(UserWarning) still sees them
    pd.DataFrame({"x": range(12), "y": [1.5] * 12}).to_csv(tmp_path / "train.csv", index=False)
    config = load_config({"modalities": {"tab": {"kind": "tabular", "columns": ["x"]}}, "target": "y",
                          "task": "regression"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_manifests(config, [tmp_path / "train.csv"])  # a constant target: warned about
    assert caught and all(w.category is polymodal.PolymodalWarning for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=polymodal.PolymodalWarning)  # as docs/python.md shows
        check_manifests(config, [tmp_path / "train.csv"])
