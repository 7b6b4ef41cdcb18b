"""A training manifest too small to hold out a validation set is refused with its size and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polymodal.data.manifest import read_manifest
from polymodal.data.split import random_holdout, stratified_holdout
from polymodal.errors import ManifestError


def manifest(labels: list):
    return read_manifest(pd.DataFrame({"x": np.arange(len(labels)), "label": labels}))


@pytest.mark.parametrize(("labels", "fraction"), [(["a"], 0.1), (["a", "b"], 0.9)])
@pytest.mark.parametrize("column", ["label", None])
def test_too_few_rows_for_a_validation_set(labels, fraction, column):
    with pytest.raises(ManifestError) as info:
        stratified_holdout(manifest(labels), fraction, seed=0, label_column=column)
    assert info.value.problems == [
        f"DataFrame has {len(labels)} row(s): too few to hold out a validation share of train.val_fraction={fraction} "
        "and keep at least one row on each side; pass a validation manifest or change train.val_fraction"]


def test_random_holdout_of_one_row_is_refused():
    with pytest.raises(ManifestError, match=r"DataFrame has 1 row\(s\).*change train.val_fraction"):
        random_holdout(manifest(["a"]), 0.1, seed=0)


def test_two_rows_split_one_and_one():
    train, valid = stratified_holdout(manifest(["a", "b"]), 0.1, seed=0, label_column="label")
    assert sorted(train.frame["x"].tolist() + valid.frame["x"].tolist()) == [0, 1] and len(valid) == 1


def test_a_training_side_too_small_for_every_class_falls_back_to_a_random_split():
    """scikit-learn needs a row of each class on both sides to stratify; 4 rows with 60% held out
    leave one training row for two classes."""
    train, valid = stratified_holdout(manifest(["a", "a", "b", "b"]), 0.6, seed=0, label_column="label")
    assert len(train) == 1 and len(valid) == 3

