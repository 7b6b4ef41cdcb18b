"""multitask.task_frame: one layout of prediction columns for the main task and every further one."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from polymodal.multitask import task_frame


def test_every_task_kind_gets_its_columns_under_the_prefix():
    index = pd.Index([10, 11])
    labels = SimpleNamespace(task="multilabel", columns=["leak", "heat"], classes=None, threshold=None)
    frame = task_frame(labels, np.array([[2.0, -2.0], [-3.0, 1.0]]), index, "tags_")
    assert list(frame.columns) == ["tags_pred_leak", "tags_pred_heat", "tags_proba_leak", "tags_proba_heat"]
    assert frame["tags_pred_leak"].tolist() == [1, 0] and list(frame.index) == [10, 11]
    np.testing.assert_allclose(frame["tags_proba_heat"], 1 / (1 + np.exp([2.0, -1.0])))
    classes = SimpleNamespace(task="classification", columns=["kind"], classes=["a", "b", "c"], threshold=None)
    frame = task_frame(classes, np.array([[0.0, 3.0, 1.0], [5.0, 0.0, 0.0]]), index)
    assert list(frame.columns) == ["prediction", "proba_a", "proba_b", "proba_c"]
    assert frame["prediction"].tolist() == ["b", "a"]
    np.testing.assert_allclose(frame[["proba_a", "proba_b", "proba_c"]].sum(axis=1), 1.0)
    values = SimpleNamespace(task="regression", columns=["wear"], classes=None, decode_values=lambda out: out * 10)
    frame = task_frame(values, np.array([[0.5], [0.25]]), index, "life_")
    assert list(frame.columns) == ["life_pred_wear"] and frame["life_pred_wear"].tolist() == [5.0, 2.5]


def test_a_prediction_column_keeps_the_classes_type():
    """Whole-number classes are int64 in ``predict_frame`` as in ``predict`` (they were object:
    ``frame["prediction"] == predict(...)`` held, a ``merge`` on them did not)."""
    outputs = np.array([[0.1, 2.0, 0.3], [3.0, 0.0, 0.1]], np.float32)
    for classes, dtype in (([0, 5, 9], np.int64), (["a", "b", "c"], None)):
        encoder = SimpleNamespace(task="classification", classes=classes, threshold=None)
        frame = task_frame(encoder, outputs, pd.RangeIndex(2))
        assert list(frame["prediction"]) == [classes[1], classes[0]]
        if dtype is not None:
            assert frame["prediction"].dtype == dtype
        else:
            assert pd.api.types.is_string_dtype(frame["prediction"])
