"""Validation hold-outs: stratified when every class can be represented, random otherwise, by
groups when told (train.val_group); sizes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from polymodal.data.manifest import read_manifest
from polymodal.data.split import group_holdout, random_holdout, stratified_holdout
from polymodal.errors import ManifestError


def manifest(labels: list[str]):
    return read_manifest(pd.DataFrame({"x": np.arange(len(labels)), "label": labels}))


def assert_partition(train, valid, n: int) -> None:
    a, b = train.frame["x"].tolist(), valid.frame["x"].tolist()
    assert a == sorted(a) and b == sorted(b)  # each side keeps the manifest's order
    assert sorted(a + b) == list(range(n))


def test_stratified_holdout_gives_every_class_a_validation_row():
    labels = ["a", "b", "c"] * 4
    train, valid = stratified_holdout(manifest(labels), 0.25, seed=0, label_column="label")
    assert_partition(train, valid, 12)
    assert sorted(valid.frame["label"]) == ["a", "b", "c"]


def test_too_few_validation_rows_for_one_per_class_fall_back_to_a_random_split():
    labels = ["a", "b", "c"] * 2  # every class has two rows, but 20% of 6 rows cannot hold three classes
    train, valid = stratified_holdout(manifest(labels), 0.2, seed=0, label_column="label")
    assert_partition(train, valid, 6)
    assert len(valid) == math.ceil(6 * 0.2)  # scikit-learn rounds the test share up


@pytest.mark.parametrize("seed", range(12))
def test_a_class_of_one_row_stays_in_training_and_the_others_stay_stratified(seed):
    labels = ["a", "b"] * 10 + ["rare"]
    train, valid = stratified_holdout(manifest(labels), 0.2, seed=seed, label_column="label")
    assert_partition(train, valid, 21)
    assert "rare" in train.frame["label"].tolist()  # held out, it would be a label training never saw
    assert sorted(set(valid.frame["label"])) == ["a", "b"] and len(valid) == math.ceil(21 * 0.2)


@pytest.mark.parametrize(("n", "fraction", "expected"), [(9, 0.3, 3), (10, 0.01, 1)])
def test_random_holdout_rounds_the_fraction_and_keeps_at_least_one_row(n, fraction, expected):
    train, valid = random_holdout(manifest(["a"] * n), fraction, seed=0)
    assert_partition(train, valid, n)
    assert len(valid) == expected  # round(2.7) = 3; round(0.1) = 0 -> at least 1
    again = random_holdout(manifest(["a"] * n), fraction, seed=0)[1]
    assert again.frame["x"].tolist() == valid.frame["x"].tolist()


def test_a_classification_target_of_distinct_decimals_is_warned_about():
    """Such a column is most likely a regression target: held out, its rows would be labels
    training never saw. A warning, as codes such as ``1.1, 1.2`` may be classes on purpose."""
    from polymodal.data.targets import warn_if_continuous

    values = np.round(np.random.default_rng(0).normal(size=40), 4)
    assert len(set(values)) == 40
    with pytest.warns(UserWarning) as caught:
        warn_if_continuous(manifest(values.tolist()), "label")
    shown = ", ".join(str(v) for v in values[:3])
    assert str(caught[0].message).startswith(
        f"target column 'label' of DataFrame holds 40 distinct values in 40 rows (40 of them the only row of their "
        f"class, e.g. {shown}): is it a regression target (task: regression)?")


@pytest.mark.parametrize("labels", [
    list(range(12)),  # integer classes, one row each: codes, never judged continuous
    [f"id{i}" for i in range(12)],  # text classes
    [6 + 0.5 * (i % 13) for i in range(26)],  # decimal classes (shoe sizes) that repeat
    [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5],  # fewer than 10 rows
    [0.5] * 5 + [1.5, 2.5, 3.5, 4.5, 5.5],  # half the rows single: not more
], ids=["integers", "text", "repeated-decimals", "few-rows", "half-single"])
def test_legitimate_classification_targets_are_not_judged_continuous(labels):
    import warnings

    from polymodal.data.targets import warn_if_continuous

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_continuous(manifest(labels), "label")  # no warning


@pytest.mark.parametrize("seed", range(4))
def test_a_groups_rows_stay_on_one_side(seed):
    """Overlapping windows of one recording on both sides made validation score near-copies of
    training rows."""
    recordings = np.repeat(["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9"], 6)
    frame = pd.DataFrame({"x": np.arange(60), "recording": recordings})
    train, valid = group_holdout(read_manifest(frame), 0.2, seed, "recording")
    assert_partition(train, valid, 60)
    held = set(valid.frame["recording"])
    assert len(held) == 2 and not held & set(train.frame["recording"])  # 20% of the 10 recordings, whole
    assert group_holdout(read_manifest(frame), 0.2, seed, "recording")[1].frame["x"].tolist() == valid.frame["x"].tolist()


def test_a_group_column_that_cannot_split_is_named_with_its_rows():
    frame = pd.DataFrame({"x": range(4), "patient": ["p1", "", "p2", "p2"], "site": ["a"] * 4})
    with pytest.raises(ManifestError, match=r"train.val_group: DataFrame has no column 'patients' \(did you mean "
                                            r"'patient'\?\)"):
        group_holdout(read_manifest(frame), 0.25, 0, "patients")
    with pytest.raises(ManifestError, match=r"train.val_group: column 'patient' of DataFrame is empty at row 1"):
        group_holdout(read_manifest(frame), 0.25, 0, "patient")
    with pytest.raises(ManifestError, match="holds one value \\('a'\\): a validation group and a training one"):
        group_holdout(read_manifest(frame), 0.25, 0, "site")
