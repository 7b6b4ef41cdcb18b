"""The one rule of what an explanation attributes (``polymodal.utils.scores``), shared by
``pred.explain``, the runtime and ``POST /explain``."""

from __future__ import annotations

import numpy as np
import pytest

from polymodal.errors import SchemaMismatchError
from polymodal.utils.scores import explained_outputs, explained_quantity, explained_score, output_index

SCORES = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.9]])


@pytest.mark.parametrize(("task", "default"), [("classification", [1, 2]), ("multilabel", [0, 0]),
                                               ("regression", [0, 0])])
def test_the_default_is_the_predicted_class_else_the_first_output(task, default):
    assert explained_outputs(task, SCORES).tolist() == default
    assert explained_score(SCORES, explained_outputs(task, SCORES)).tolist() == SCORES[[0, 1], default].tolist()
    assert explained_outputs(task, SCORES, 2).tolist() == [2, 2]
    assert explained_score(SCORES, np.array([2, 2])).tolist() == [0.1, 0.9]


def test_an_output_is_found_by_name_then_as_text_and_an_unknown_one_lists_the_choices():
    assert output_index(None, ["a", "b"], "multilabel") is None
    assert output_index("b", ["a", "b"], "multilabel") == 1
    assert output_index("3", [np.int64(1), np.int64(3)], "classification") == 1
    assert output_index(3, [1, 3], "classification") == 1
    with pytest.raises(SchemaMismatchError, match=r"output 'c' to explain is not one of this model's outputs "
                                                  r"\(targets\) \['a', 'b'\]"):
        output_index("c", ["a", "b"], "regression")
    with pytest.raises(SchemaMismatchError, match=r"\(classes\) \[1, 3\]"):
        output_index("2", [np.int64(1), np.int64(3)], "classification")


def test_the_explained_quantity_in_words():
    assert explained_quantity("classification") == "probability of the predicted class"
    assert explained_quantity("classification", "cat") == "probability of class 'cat'"
    assert explained_quantity("classification", "cat", predicted=True) == "probability of the predicted class 'cat'"
    assert explained_quantity("multilabel", "kw_leak") == "probability of label 'kw_leak'"
    assert explained_quantity("regression", "price") == "predicted value of target 'price'"
