"""Target encoding: class order, regression standardisation and its inverse, unseen labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polymodal.data.manifest import read_manifest
from polymodal.data.targets import TargetEncoder
from polymodal.errors import SchemaMismatchError


@pytest.mark.filterwarnings("ignore:target column .* mixes numbers")  # the mixed column is on purpose
def test_integer_classes_sort_by_value_and_before_strings():
    numbers = read_manifest(pd.DataFrame({"y": [10, 2, 1, 2]}))
    enc = TargetEncoder("classification", ["y"]).fit(numbers)
    assert enc.classes == [1, 2, 10]  # by value: 10 comes after 2
    assert enc.encode(numbers).tolist() == [2, 1, 0, 1]
    mixed = TargetEncoder("classification", ["y"]).fit(read_manifest(pd.DataFrame({"y": ["b", 3, "a"]})))
    assert mixed.classes == [3, "a", "b"]


def test_regression_targets_are_standardised_and_decoded_back():
    manifest = read_manifest(pd.DataFrame({"y": [1.0, 3.0, 5.0]}))
    enc = TargetEncoder("regression", ["y"]).fit(manifest)
    std = np.sqrt(((1 - 3) ** 2 + 0 + (5 - 3) ** 2) / 3)  # population std of 1, 3, 5
    np.testing.assert_allclose(enc.encode(manifest)[:, 0], [-2 / std, 0.0, 2 / std], rtol=1e-6)
    np.testing.assert_allclose(enc.decode_values(enc.encode(manifest)), [[1.0], [3.0], [5.0]], rtol=1e-6)


def test_an_unseen_label_is_named_with_its_row():
    enc = TargetEncoder("classification", ["y"]).fit(read_manifest(pd.DataFrame({"y": ["a", "b"]})))
    with pytest.raises(SchemaMismatchError, match=r"row 1.*label 'c'.*\['a', 'b'\]"):
        enc.encode(read_manifest(pd.DataFrame({"y": ["a", "c"]})))


def test_a_retrieval_target_accepts_labels_training_never_saw_and_matches_them_by_value():
    """Unseen-class retrieval (train on digits 0-4, retrieve 5-9): a retrieval label only decides
    which rows are label-level hits, so a label training never saw is coded too, the same in
    every row and every call (7, 7.0 and '7' alike), apart from every fitted class; a classifier
    still refuses it."""
    train = read_manifest(pd.DataFrame({"y": [0, 1, 2, 0]}))
    test = read_manifest(pd.DataFrame({"y": pd.Series([5, 1, "5", 6.0, 6, 0], dtype=object)}))
    enc = TargetEncoder("retrieval", ["y"]).fit(train)
    codes = enc.encode(test)
    assert codes[1] == 1 and codes[5] == 0  # fitted classes keep their indices
    assert codes[0] == codes[2] and codes[3] == codes[4] and codes[0] != codes[3]  # unseen labels match by value
    assert min(codes[0], codes[3]) >= len(enc.classes)
    assert enc.encode(test, np.array([3, 2])).tolist() == [codes[3], codes[2]]  # the same code in a call over some rows
    with pytest.raises(SchemaMismatchError, match=r"label 5 in column 'y' was not seen in training"):
        TargetEncoder("classification", ["y"]).fit(train).encode(test)


def test_regression_targets_far_from_zero_keep_their_spread():
    """A Unix time (1.7e9 +- 30 s): float32 steps there are 128 s wide, so targets read in float32
    collapsed onto 3 values and the metrics were computed on them. Standardised in float64, the
    targets and the decoded outputs keep every second, through a save and load of the state too."""
    rng = np.random.default_rng(0)
    seconds = 1.7e9 + rng.uniform(-30, 30, 200).round()
    manifest = read_manifest(pd.DataFrame({"t": seconds, "x": 0.0}))
    encoder = TargetEncoder("regression", ["t"]).fit(manifest)
    encoded = encoder.encode(manifest)
    assert encoded.dtype == np.float32 and len(np.unique(encoded)) == len(np.unique(seconds))
    np.testing.assert_allclose(encoder.decode_values(encoded)[:, 0], seconds, rtol=0, atol=1e-3)
    restored = TargetEncoder.from_state(encoder.get_state())
    np.testing.assert_allclose(restored.decode_values(encoded)[:, 0], seconds, rtol=0, atol=1e-3)
