"""Missing modalities end to end: modality dropout, evaluation on every subset, prediction from
whatever modalities a row holds."""

from __future__ import annotations

import numpy as np
import pytest

from polymodal import MultimodalPredictor
from polymodal.errors import SchemaMismatchError
from polymodal.evaluation.subsets import evaluate_subsets

from .helpers import tabular_config, two_tabular


def fit(dropout: float) -> MultimodalPredictor:
    """The default fusion (attention) on data where b alone is perfect and a alone about 87%
    right. Auxiliary unimodal losses are off: they also teach each modality to stand alone, and
    this test isolates what modality dropout does."""
    config = tabular_config(dropout=dropout, epochs=10, fusion="attention", report={"rows": 0},
                            loss={"unimodal_weight": 0.0})
    return MultimodalPredictor.from_config(config).fit(two_tabular(300, "redundant", 0), two_tabular(100, "redundant", 1))


@pytest.fixture(scope="module")
def test_rows():
    return two_tabular(300, "redundant", 2)


@pytest.fixture(scope="module")
def with_dropout():
    return fit(0.5)


@pytest.fixture(scope="module")
def without_dropout():
    return fit(0.0)


def accuracies(predictor, rows) -> dict[str, float]:
    table = evaluate_subsets(predictor, rows)
    return dict(zip(table["modalities"], table["accuracy"]))


def test_modality_dropout_keeps_accuracy_when_a_modality_is_removed(with_dropout, without_dropout, test_rows):
    trained = accuracies(with_dropout, test_rows)
    plain = accuracies(without_dropout, test_rows)
    assert trained["a+b"] > 0.95 and plain["a+b"] > 0.95
    assert trained["a"] > 0.8, f"with dropout, a alone should stay near its ~87% ceiling; got {trained}"
    assert trained["a"] > plain["a"] + 0.2, f"dropout {trained} vs none {plain}"


def test_subset_table_matches_evaluating_with_only_those_modalities(with_dropout, test_rows):
    table = evaluate_subsets(with_dropout, test_rows).set_index("modalities")
    assert list(table.index) == ["a+b", "a", "b"]
    assert list(table["n_modalities"]) == [2, 1, 1]
    for subset in (["a", "b"], ["a"], ["b"]):
        direct = with_dropout.evaluate(test_rows, modalities=subset)
        row = table.loc["+".join(subset)]
        for metric in ("accuracy", "macro_f1", "log_loss", "ece"):
            assert row[metric] == pytest.approx(direct[metric], abs=1e-6), (subset, metric)


def test_rows_with_any_counts_rows_that_hold_one_of_the_subset(with_dropout, test_rows):
    rows = test_rows.head(40).copy()
    rows.loc[rows.index[:10], ["b1", "b2"]] = np.nan
    table = evaluate_subsets(with_dropout, rows).set_index("modalities")
    assert table.loc["a+b", "rows_with_any"] == 40
    assert table.loc["b", "rows_with_any"] == 30
    assert table.loc["a", "rows_with_any"] == 40


def test_a_manifest_with_only_one_modality_predicts_like_that_subset(with_dropout, test_rows):
    only_a = test_rows[["a1", "a2"]].head(50)
    proba = with_dropout.predict_proba(only_a).to_numpy()
    subset = with_dropout.predict_proba(test_rows.head(50), modalities=["a"]).to_numpy()
    np.testing.assert_allclose(proba, subset, atol=1e-6)
    mixed = test_rows.head(50).copy()
    mixed.loc[mixed.index[::2], ["b1", "b2"]] = np.nan  # every other row lacks b
    mixed_proba = with_dropout.predict_proba(mixed).to_numpy()
    np.testing.assert_allclose(mixed_proba[::2], subset[::2], atol=1e-6)


def test_unknown_or_empty_subsets_are_refused(with_dropout, test_rows):
    with pytest.raises(SchemaMismatchError, match=r"unknown: \['c'\]"):
        evaluate_subsets(with_dropout, test_rows, [["a", "c"]])
    with pytest.raises(SchemaMismatchError, match="non-empty"):
        evaluate_subsets(with_dropout, test_rows, [[]])
