"""polymodal.multitask: one layout of prediction columns for the main task and every further one; each
further task scored on the rows holding its labels; a fit on partly labelled further tasks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers_models import classification_config, make_dataset, write_splits

from polymodal import MultimodalPredictor
from polymodal.data.multitarget import MultiTargetEncoder
from polymodal.data.targets import TargetEncoder
from polymodal.multitask import further_task_rows, multitask_metrics, task_frame


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


def test_each_further_task_is_scored_on_the_rows_holding_its_labels():
    main = TargetEncoder("classification", ["y"])
    main.classes = ["a", "b"]
    size = TargetEncoder("regression", ["size"])
    size.mean, size.std = np.zeros(1, np.float32), np.ones(1, np.float32)
    targets = MultiTargetEncoder(main, {"size": size})
    outputs = np.array([[2.0, 0.0, 1.0], [0.0, 2.0, 5.0], [2.0, 0.0, 3.0], [0.0, 2.0, 0.0]], np.float32)
    target = np.array([[0, 1.0], [1, np.nan], [0, 3.0], [1, np.nan]], np.float32)  # rows 1 and 3: no size
    scores = multitask_metrics(targets, outputs, target)
    assert scores["accuracy"] == 1.0 and scores["size/mae"] == pytest.approx(0.0)  # not 5 and 0 against NaN
    assert further_task_rows(targets, target) == {"size/rows": 2}
    unlabelled = target.copy()
    unlabelled[:, 1] = np.nan
    scores = multitask_metrics(targets, outputs, unlabelled)
    assert "accuracy" in scores and not any(k.startswith("size/") for k in scores)
    assert further_task_rows(targets, unlabelled) == {}


def test_a_fit_learns_the_further_tasks_from_the_rows_that_have_their_labels(tmp_path, capsys):
    """Every third training row lacks the regression task's label, every fifth the class task's:
    the fit trains on every row; an evaluation scores each further task on its labelled rows."""
    frame = make_dataset(tmp_path, n=45)
    paths = write_splits(tmp_path, frame)
    train, test = pd.read_csv(paths["train"]), pd.read_csv(paths["test"])
    train.loc[::3, "y"] = np.nan
    train.loc[1::5, "tag_bright"] = np.nan
    test.loc[::2, "y"] = np.nan
    train.to_csv(paths["train"], index=False)
    valid = pd.read_csv(paths["valid"])
    valid.loc[::4, "y"] = np.nan  # validation rows may lack it too
    valid.to_csv(paths["valid"], index=False)
    test.to_csv(paths["test"], index=False)
    cfg = classification_config(epochs=1, progress=True)
    cfg["tasks"] = {"bright": {"task": "classification", "target": "tag_bright", "weight": 0.5},
                    "level": {"task": "regression", "target": "y"}}
    pred = MultimodalPredictor.from_config(cfg).fit(paths["train"], paths["valid"])
    assert pred.info["train_rows"] == len(train)  # every row trains, those without a further task's label too
    history = pred.history
    for column in ("train_loss", "train_task_loss", "train_main/loss", "train_bright/loss", "train_level/loss",
                   "val_loss", "val_level/loss"):
        assert np.isfinite(history[column]).all(), column
    # the epoch line shows the main task's training loss beside val_loss (the main task's), the total after
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("epoch 1/1 "))
    shown = float(line.split("  loss ")[1].split()[0])
    assert shown == pytest.approx(history["train_main/loss"].iloc[-1], abs=1e-4)
    assert shown != pytest.approx(history["train_task_loss"].iloc[-1], abs=1e-4)
    assert f"(total {history['train_loss'].iloc[-1]:.4f} with further tasks, unimodal)" in line
    scores = pred.evaluate(paths["test"])
    labelled = test["y"].notna()
    assert scores["rows"] == len(test) and scores["level/rows"] == labelled.sum() and scores["bright/rows"] == len(test)
    test[labelled].to_csv(tmp_path / "labelled.csv", index=False)
    alone = pred.evaluate(tmp_path / "labelled.csv")
    assert scores["level/rmse"] == pytest.approx(alone["level/rmse"])  # the same rows scored
