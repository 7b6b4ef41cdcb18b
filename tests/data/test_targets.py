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
