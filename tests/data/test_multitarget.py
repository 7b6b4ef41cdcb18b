"""Further tasks' targets (polymodal.data.multitarget): a row without a further task's label
trains the other tasks; an evaluation scores each further task on the rows holding a label it can
use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polymodal.data.checks import check_manifests
from polymodal.data.manifest import read_manifest
from polymodal.data.multitarget import FEW_LABELLED_ROWS, build_targets
from polymodal.errors import ManifestError, SchemaMismatchError

from .helpers import make_config

TASKS = {"kind": {"task": "classification", "target": "kind"},
         "tags": {"task": "multilabel", "target": ["t1", "t2"]},
         "size": {"task": "regression", "target": "size"}}
NAN = np.nan


def config(**sections):
    return make_config({"tab": {"kind": "tabular", "columns": ["x"]}}, task="classification", tasks=TASKS, **sections)


def frame(n: int = 12) -> pd.DataFrame:
    """``n`` rows, every label given."""
    i = np.arange(n)
    return pd.DataFrame({"x": i * 0.5, "y": np.where(i % 2, "b", "a"), "kind": np.where(i % 3, "p", "q"),
                         "t1": i % 2, "t2": (i // 2) % 2, "size": 10.0 + i})


def test_empty_cells_of_a_further_task_are_rows_without_its_label():
    data = frame(16)
    data.loc[[0, 4], "kind"] = None
    data.loc[1, "t1"] = NAN  # one label of two: the other still trains
    data["size"] = data["size"].astype(object)
    data.loc[[2, 5, 7], "size"] = [NAN, "", " "]
    targets = build_targets(config()).fit(read_manifest(data))
    encoded = targets.encode(read_manifest(data))
    # columns: the main task, then the further ones in name order (kind, size, tags: t1, t2)
    assert encoded.shape == (16, 5) and not np.isnan(encoded[:, 0]).any()  # the main task, every row
    assert np.flatnonzero(np.isnan(encoded[:, 1])).tolist() == [0, 4]
    assert np.flatnonzero(np.isnan(encoded[:, 2])).tolist() == [2, 5, 7]
    assert np.argwhere(np.isnan(encoded[:, 3:5])).tolist() == [[1, 0]]
    sizes = pd.to_numeric(data["size"], errors="coerce").dropna().to_numpy()  # standardised by the labelled rows
    size = targets.extras["size"]
    assert size.mean[0] == pytest.approx(sizes.mean()) and size.std[0] == pytest.approx(sizes.std())
    np.testing.assert_allclose(encoded[[0, 1], 2], (np.array([10.0, 11.0]) - sizes.mean()) / sizes.std(), rtol=1e-5)


def test_config_check_takes_partly_labelled_further_tasks_but_not_an_empty_main_target(tmp_path):
    data = frame()
    data.loc[[0, 3], "size"] = NAN
    data.loc[5, "t2"] = NAN
    data.to_csv(tmp_path / "train.csv", index=False)
    (check,) = check_manifests(config(), tmp_path / "train.csv")
    assert check.ok, check.error
    data.loc[2, "y"] = NAN  # the main task: every row still needs its label
    data.to_csv(tmp_path / "train.csv", index=False)
    (check,) = check_manifests(config(), tmp_path / "train.csv")
    assert isinstance(check.error, ManifestError)
    assert check.error.problems == ["target column 'y' is empty in row 2 (line 4) (every row needs one here: drop the "
                                    "others, e.g. df.dropna(subset=['y']); a semi-supervised fit learns from them as "
                                    "transfer.unlabeled rows)"]


def test_a_further_task_column_empty_in_every_training_row_is_refused():
    data = frame()
    data["size"] = NAN
    with pytest.raises(ManifestError) as info:
        build_targets(config()).fit(read_manifest(data))
    assert info.value.problems == [
        "target column 'size' of tasks.size is empty in every row of DataFrame: a further task learns from the rows "
        "that hold its label (the others train the other tasks), and none does; fill it where known, or leave the "
        "column out of tasks.size"]
    data = frame().astype({"size": object})
    data.loc[3, "size"] = "big"  # a value that is no number: refused as before
    with pytest.raises(ManifestError, match=r"target column 'size' of tasks.size must be numeric for task "
                                            r"'regression'; row 3 holds 'big'"):
        build_targets(config()).fit(read_manifest(data))


def test_a_further_task_labelled_in_few_training_rows_is_warned_about(recwarn):
    data = frame(2 * FEW_LABELLED_ROWS)
    data.loc[FEW_LABELLED_ROWS - 1:, "kind"] = None  # labelled in FEW_LABELLED_ROWS - 1 rows
    with pytest.warns(UserWarning, match=rf"^tasks.kind has a label in only {FEW_LABELLED_ROWS - 1} of the "
                                         rf"{2 * FEW_LABELLED_ROWS} training rows of DataFrame \(column 'kind'\): its "
                                         "head learns from those rows alone"):
        build_targets(config()).fit(read_manifest(data))
    recwarn.clear()
    build_targets(config()).fit(read_manifest(frame(6)))  # few rows, every one labelled: nothing to say
    assert not [w for w in recwarn if "has a label in only" in str(w.message)]


def test_an_evaluation_leaves_out_the_rows_a_further_task_cannot_score():
    train = frame()
    targets = build_targets(config()).fit(read_manifest(train))
    test = frame(6).astype({"size": object})
    test.loc[2, "kind"] = "Q"  # a class training never saw
    test.loc[4, "kind"] = None  # no label
    test.loc[1, "size"] = "big"
    test.loc[3, "t2"] = NAN  # one label of two
    with pytest.warns(UserWarning) as caught:
        encoded = targets.encode_scorable(read_manifest(test))
    said = [str(w.message) for w in caught]
    assert said == [
        "tasks.kind: DataFrame row 2: label 'Q' in column 'kind' was not seen in training (did you mean 'q'?); known "
        "labels: ['p', 'q']; that row is left out of its metrics (the other rows and tasks are scored)",
        "tasks.size: target column 'size' must be numeric for task 'regression'; row 1 holds 'big'; that row is left "
        "out of its metrics (the other rows and tasks are scored)",
        "tasks.tags: DataFrame row 3 holds some of its labels (t1, t2) but not all: left out of its metrics, which score a row "
        "on all of them (its training learns from every label given)"]
    assert np.flatnonzero(np.isnan(encoded[:, 1])).tolist() == [2, 4]
    assert np.flatnonzero(np.isnan(encoded[:, 2])).tolist() == [1]
    assert np.argwhere(np.isnan(encoded[:, 3:5])).tolist() == [[3, 1]]
    assert not np.isnan(encoded[:, 0]).any()
    test.loc[0, "y"] = "new"  # the main task's unseen class: still an error
    with pytest.raises(SchemaMismatchError, match="label 'new' in column 'y' was not seen in training"):
        targets.encode_scorable(read_manifest(test))


def test_an_evaluation_without_any_label_of_a_further_task_leaves_that_task_out():
    targets = build_targets(config()).fit(read_manifest(frame()))
    test = frame(4).assign(size=NAN)
    with pytest.warns(UserWarning, match=r"^tasks.size is not scored on DataFrame \(the other tasks are\): no row "
                                         r"holds a label of it that it can score \(its target column: size\)"):
        encoded = targets.encode_scorable(read_manifest(test))
    assert np.isnan(encoded[:, 2]).all() and not np.isnan(encoded[:, [0, 1, 3, 4]]).any()
