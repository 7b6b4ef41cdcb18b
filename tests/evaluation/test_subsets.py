"""Missing modalities end to end: modality dropout, evaluation on every subset, prediction from
whatever modalities a row holds."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from polymodal import MultimodalPredictor
from polymodal.data.dataset import collate
from polymodal.errors import OptionError, SchemaMismatchError
from polymodal.evaluation.subsets import evaluate_subsets
from polymodal.models.objectives import TaskLoss
from polymodal.training.terms import StepContext, SubsetTerm

from .helpers import tabular_config, two_tabular


def fit(dropout: float, subset_weight: float = 0.0) -> MultimodalPredictor:
    """The default fusion (attention) on data where b alone is perfect and a alone about 87%
    right. Auxiliary unimodal losses are off: they also teach each modality to stand alone, and
    these tests isolate what modality dropout and the subset loss do."""
    config = tabular_config(dropout=dropout, epochs=10, fusion="attention", report={"rows": 0},
                            loss={"unimodal_weight": 0.0, "subset_weight": subset_weight})
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


@pytest.fixture(scope="module")
def with_subset_loss():
    return fit(0.0, subset_weight=1.0)


def accuracies(predictor, rows) -> dict[str, float]:
    table = evaluate_subsets(predictor, rows)
    return dict(zip(table["modalities"], table["accuracy"]))


def test_modality_dropout_keeps_accuracy_when_a_modality_is_removed(with_dropout, without_dropout, test_rows):
    trained = accuracies(with_dropout, test_rows)
    plain = accuracies(without_dropout, test_rows)
    assert trained["a+b"] > 0.95 and plain["a+b"] > 0.95
    assert trained["a"] > 0.8, f"with dropout, a alone should stay near its ~87% ceiling; got {trained}"
    assert trained["a"] > plain["a"] + 0.2, f"dropout {trained} vs none {plain}"


def test_subset_loss_keeps_accuracy_when_a_modality_is_removed(with_subset_loss, without_dropout, test_rows):
    trained = accuracies(with_subset_loss, test_rows)
    plain = accuracies(without_dropout, test_rows)
    assert trained["a+b"] > 0.95
    assert trained["a"] > 0.8, f"with the subset loss, a alone should stay near its ~87% ceiling; got {trained}"
    assert trained["a"] > plain["a"] + 0.2, f"subset loss {trained} vs none {plain}"


def test_a_subset_loss_run_is_selected_on_whole_rows_and_each_modality_alone(with_subset_loss):
    history = with_subset_loss.history
    expected = (history["val_full_loss"] + 1.0 * history["val_subset_loss"]) / 2.0
    np.testing.assert_allclose(history["val_loss"], expected, rtol=1e-5)
    assert history["val_subset_loss"].iloc[-1] > history["val_full_loss"].iloc[-1]  # a alone is the weaker path


def test_subset_term_is_the_mean_task_loss_of_each_modality_alone(with_subset_loss, test_rows):
    """The term re-fuses the step's features with the other modalities hidden: the same as
    predicting from that modality alone, on the rows that hold it."""
    pred = with_subset_loss
    rows = test_rows.head(24).copy()
    rows.loc[rows.index[:6], ["a1", "a2"]] = np.nan  # six rows lack a
    manifest = pred.pipeline.read(rows, require_target=True)
    encoded = pred.pipeline.encode(manifest)
    dataset = pred.pipeline.dataset(encoded, pred.pipeline.encode_targets(manifest, encoded))
    batch = collate([dataset[i] for i in range(len(rows))])
    net, loss = pred.net.eval(), TaskLoss("classification")
    with torch.no_grad():
        out = net.forward_train(batch["inputs"], batch["present"])
        ctx = StepContext(SimpleNamespace(net=net), batch, batch["present"], out, None, 1.0)
        value = SubsetTerm(loss, 1.0)(ctx)
        expected = []
        for name in ("a", "b"):
            keep = batch["present"][name]
            alone = net(batch["inputs"], {n: keep if n == name else torch.zeros_like(keep) for n in ("a", "b")})
            expected.append(loss(alone[keep], batch["target"][keep]).loss)
    assert int((~batch["present"]["a"]).sum()) == 6
    assert float(value.loss) == pytest.approx(float(torch.stack(expected).mean()), abs=1e-5)
    assert set(value.logs) == {"a", "b"}


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
    rows.loc[:, ["b1", "b2"]] = np.nan  # no row holds b: its metrics would score predictions made from nothing
    with pytest.warns(UserWarning, match="no row holds any of b: their metrics are left empty"):
        table = evaluate_subsets(with_dropout, rows).set_index("modalities")
    assert table.loc["b", "rows_with_any"] == 0 and np.isnan(float(table.loc["b", "accuracy"]))
    assert table.loc["a", "accuracy"] > 0.5


def test_a_manifest_with_only_one_modality_predicts_like_that_subset(with_dropout, test_rows):
    only_a = test_rows[["a1", "a2"]].head(50)
    with pytest.warns(UserWarning, match=r"no columns \['b1', 'b2'\] \(modality b\): predicting without it") as caught:
        proba = with_dropout.predict_proba(only_a).to_numpy()
    assert caught[0].filename == __file__  # attributed to the caller, not to polymodal's internals
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


def test_a_bare_modality_name_is_that_modality_alone_not_its_letters(with_dropout, test_rows):
    table = evaluate_subsets(with_dropout, test_rows, ["b", ["a", "b"]])
    assert list(table["modalities"]) == ["b", "a+b"]
    with pytest.raises(SchemaMismatchError, match=r"unknown: \['ab'\]"):  # not the letters 'a' and 'b'
        evaluate_subsets(with_dropout, test_rows, ["ab"])


def test_a_single_name_is_that_one_subset_not_one_per_letter(with_dropout, test_rows):
    """``evaluate_subsets(p, df, "b")`` once read the string as the subsets 'b'... letter by letter."""
    assert list(evaluate_subsets(with_dropout, test_rows, "b")["modalities"]) == ["b"]
    with pytest.raises(SchemaMismatchError, match=r"unknown: \['ab'\]"):
        evaluate_subsets(with_dropout, test_rows, "ab")


@pytest.mark.parametrize("max_rows", [0, -1, 1.5])
def test_a_row_sample_without_a_row_is_refused(with_dropout, test_rows, max_rows):
    """``max_rows=0`` once reached scikit-learn's 'Found empty input array'."""
    with pytest.raises(OptionError, match=rf"^max_rows: the number of rows to sample must be an integer of at least "
                                          rf"1 \(None: every row\); got {max_rows}$"):
        evaluate_subsets(with_dropout, test_rows, max_rows=max_rows)
    assert len(evaluate_subsets(with_dropout, test_rows, max_rows=1)) == 3  # one row is a sample
