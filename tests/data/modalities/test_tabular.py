"""Tabular preprocessing: numeric imputation/scaling/missing flags and categorical vocabularies."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal import MultimodalPredictor
from polymodal.config import load_config
from polymodal.config.preprocess import TabularPreprocess
from polymodal.data.modalities.tabular import TabularPreprocessor
from polymodal.errors import ConfigError, DecodeError, NotFittedError
from polymodal.models import build_model

from ..helpers import as_tensors, encode_values

NAN = float("nan")
ROWS = [(1.0, 10.0, "red"), (2.0, NAN, "blue"), (NAN, 30.0, "red"), (5.0, 20.0, None)]


def tabular(**options) -> TabularPreprocessor:
    return TabularPreprocessor("labs", TabularPreprocess(**options), ["age", "dose"], ["colour"])


def test_mean_imputation_standardisation_and_missing_flags():
    prep = tabular()
    prep.fit(ROWS)
    age = np.array([1.0, 2.0, 8 / 3, 5.0])  # the missing age becomes the mean of 1, 2, 5
    dose = np.array([10.0, 20.0, 30.0, 20.0])
    np.testing.assert_allclose(prep.fill, [8 / 3, 20.0], rtol=1e-6)
    np.testing.assert_allclose(prep.center, [age.mean(), dose.mean()], rtol=1e-6)
    np.testing.assert_allclose(prep.scale, [age.std(), dose.std()], rtol=1e-6)
    num, cat = prep.decode((NAN, 40.0, "blue"))
    expected = [(8 / 3 - age.mean()) / age.std(), (40.0 - dose.mean()) / dose.std(), 1.0, 0.0]
    np.testing.assert_allclose(num, expected, rtol=1e-5, atol=1e-6)
    assert num.dtype == np.float32
    assert prep.strong_options() == {"flags": 2}  # FixMatch's strong view keeps the last 2 as flags
    assert tabular(missing_indicator=False).strong_options() == {"flags": 0}


@pytest.mark.parametrize(("impute", "fill"), [("median", [2.0, 20.0]), ("zero", [0.0, 0.0])])
def test_other_imputations(impute, fill):
    prep = tabular(impute=impute, scale="none", missing_indicator=False)
    prep.fit(ROWS)
    num, _ = prep.decode((NAN, NAN, "red"))
    np.testing.assert_allclose(num, fill)
    assert prep.n_numeric_features == 2


def test_minmax_scaling():
    prep = tabular(scale="minmax", impute="zero", missing_indicator=False)
    prep.fit([(0.0, 10.0, "a"), (4.0, 30.0, "b")])
    num, _ = prep.decode((2.0, 40.0, "a"))
    np.testing.assert_allclose(num, [0.5, 1.5])


def test_constant_columns_are_not_divided_by_zero():
    prep = tabular()
    prep.fit([(3.0, 1.0, "a"), (3.0, 2.0, "a")])
    num, _ = prep.decode((3.0, 1.5, "a"))
    assert np.isfinite(num).all() and num[0] == 0.0


def test_categorical_vocabulary_with_unknown_bucket_zero():
    prep = tabular()
    prep.fit(ROWS)
    assert prep.categories == {"colour": ["blue", "red"]}
    codes = [prep.decode((1.0, 1.0, c))[1][0] for c in ("blue", "red", "green", None)]
    assert codes == [1, 2, 0, 0]
    assert prep.encoder_context() == {"n_numeric": 4, "cardinalities": [3]}


def test_rare_and_excess_categories_go_to_the_unknown_bucket():
    values = [(1.0, 1.0, c) for c in ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]]
    prep = tabular(min_category_count=2, max_categories=2)
    prep.fit(values)
    assert prep.categories == {"colour": ["a", "b"]}  # d is rare, c exceeds the two most frequent
    assert prep.decode((1.0, 1.0, "c"))[1][0] == 0


SPELT = [(1.0, 1.0, c) for c in ["M"] * 6 + ["m"] + ["F"] * 5 + ["current"] * 3 + ["Current "] + [" f"]]


def test_categories_that_differ_only_in_case_or_whitespace_are_warned_about_once_per_column(recwarn):
    prep = TabularPreprocessor("labs", TabularPreprocess(normalize_categories="none"), ["age", "dose"],
                               ["colour", "shade"])
    prep.fit([(a, d, c, "dark" if i % 2 else "Dark") for i, (a, d, c) in enumerate(SPELT)])
    said = [str(w.message) for w in recwarn.list]
    assert len(said) == 2  # one per column
    colour = next(m for m in said if "column 'colour'" in m)
    # the groups with their row counts, the commonest spelling first; both kinds of difference named
    assert "'M' (6 rows) / 'm' (1 row)" in colour and "'F' (5 rows) / ' f' (1 row)" in colour
    assert "'current' (3 rows) / 'Current ' (1 row)" in colour and "case and/or surrounding whitespace" in colour
    assert "modalities.labs.preprocess.normalize_categories: strip_lower" in colour
    assert "'Dark' (9 rows) / 'dark' (8 rows)" in next(m for m in said if "column 'shade'" in m)
    assert prep.categories["colour"] == [" f", "Current ", "F", "M", "current", "m"]  # as before the setting


def test_whitespace_variants_alone_suggest_strip():
    prep = tabular(normalize_categories="none")
    with pytest.warns(UserWarning, match=r"differ only in surrounding whitespace .*'red' \(2 rows\) / 'red ' \(1 row\)"
                      r".*normalize_categories: strip \("):
        prep.fit([(1.0, 1.0, "red"), (2.0, 1.0, "red"), (3.0, 1.0, "red "), (4.0, 1.0, "blue")])


@pytest.mark.parametrize(("normalize", "learned", "same"), [
    # the default: whitespace dropped ('Current ' is 'Current'), case kept (and still warned about)
    ("strip", ["Current", "F", "M", "current", "f", "m"], ["current", " current", "current\t"]),
    ("strip_lower", ["current", "f", "m"], ["current", " current", "Current ", "CURRENT"]),
])
def test_normalize_categories_merges_spelling_variants_in_fit_and_decode(recwarn, normalize, learned, same):
    prep = tabular() if normalize == "strip" else tabular(normalize_categories=normalize)
    assert prep.cfg.normalize_categories == normalize
    prep.fit(SPELT)
    assert prep.categories == {"colour": learned}
    left = [str(w.message) for w in recwarn.list]
    assert len(left) == (normalize == "strip")
    if left:
        assert "differ only in case are learned" in left[0] and "'Current' (1 row)" in left[0]
    codes = {int(prep.decode((1.0, 1.0, v))[1][0]) for v in same}
    assert len(codes) == 1 and codes != {0}
    assert not prep.unknown_categories("colour", same)
    assert prep.unknown_categories("colour", ["vaper ", " vaper"]) == {"vaper": 2}


def test_a_run_saved_before_normalize_categories_keeps_its_fingerprint():
    """``none`` (how runs saved before the setting key categories) is left out of the fingerprint:
    their weights record the fingerprint serving checks an export against, computed without it."""
    before, strip = tabular(normalize_categories="none"), tabular()
    before.fit(ROWS)
    strip.fit(ROWS)
    assert before.encoding_config() == TabularPreprocess().model_dump(mode="json",
                                                                      exclude={"normalize_categories", "unknown_rate"})
    assert strip.encoding_config()["normalize_categories"] == "strip"
    assert before.fingerprint() != strip.fingerprint()  # cached features of one are not the other's


def test_featurize_and_to_batch_shapes():
    prep = tabular()
    prep.fit(ROWS)
    arrays = encode_values(prep, ROWS)
    assert arrays["num"].shape == (4, 4) and arrays["cat"].shape == (4, 1)
    batch = prep.to_batch(as_tensors(arrays), train=False)
    assert batch["x"].dtype.is_floating_point and batch["cat"].tolist() == [[2], [1], [2], [0]]


def test_non_numeric_value_in_a_numeric_column_is_a_decode_error():
    prep = tabular()
    prep.fit(ROWS)
    with pytest.raises(DecodeError, match=r"column 'dose' must be numeric; got 'lots'"):
        prep.decode((1.0, "lots", "red"))
    with pytest.raises(DecodeError, match="infinite"):
        prep.decode((math.inf, 1.0, "red"))


def test_a_chunk_decodes_as_its_cells_do_one_by_one():
    """Cells decoded together (as encoding does) give each row what decoding it alone gives; a bad
    cell fails its row only, with the message decoding that row alone raises."""
    prep = tabular()
    prep.fit(ROWS)
    chunk = [(1.0, 2.0, "red"), (1.0, "lots", "red"), ("3", None, "green"), (math.inf, 1.0, None), (2, True, "blue")]
    good, samples, errors = prep.decode_chunk(chunk)
    assert good == [0, 2, 4] and [position for position, _ in errors] == [1, 3]
    for position, (num, cat) in zip(good, samples):
        alone = prep.decode(chunk[position])
        np.testing.assert_array_equal(num, alone[0])
        np.testing.assert_array_equal(cat, alone[1])
    for position, err in errors:
        with pytest.raises(DecodeError) as info:
            prep.decode(chunk[position])
        assert err.reason == info.value.reason
    assert "column 'dose' must be numeric; got 'lots'" in errors[0][1].reason


def test_numbers_written_as_strings_are_accepted():
    prep = tabular(scale="none")
    prep.fit([("1.5", "2", "a"), ("3", " ", "b")])
    num, _ = prep.decode(("2.5", "", "a"))
    np.testing.assert_allclose(num, [2.5, 2.0, 0.0, 1.0])


def test_decode_before_fit_is_refused():
    with pytest.raises(NotFittedError, match="labs"):
        tabular().decode(ROWS[0])


def test_integer_categories_survive_a_column_dtype_change():
    prep = TabularPreprocessor("labs", TabularPreprocess(), [], ["ward"])
    train = pd.DataFrame({"ward": [3, 4, None, 3]})  # the blank makes pandas store floats
    prep.fit([(v,) for v in train["ward"].tolist()])
    later = pd.DataFrame({"ward": [3, 4]})  # int64
    codes = [prep.decode((v,))[1][0] for v in later["ward"].tolist()]
    assert codes == [1, 2]


@pytest.mark.parametrize("impute", ["mean", "median"])
def test_a_column_missing_in_every_training_row_is_filled_with_zero(impute):
    prep = tabular(impute=impute, scale="none")
    prep.fit([(NAN, 1.0, "a"), (NAN, 3.0, "b"), (NAN, 2.0, "a")])
    np.testing.assert_array_equal(prep.fill, [0.0, 2.0])  # age has no value to average: 0; dose: mean = median = 2
    num, _ = prep.decode((NAN, NAN, "a"))
    np.testing.assert_array_equal(num, [0.0, 2.0, 1.0, 1.0])  # filled values, then both missing flags


def test_robust_scaling_uses_the_median_and_interquartile_range():
    prep = tabular(scale="robust", impute="zero", missing_indicator=False)
    ages = [1.0, 2.0, 3.0, 4.0, 1000.0]  # an outlier barely moves median and IQR
    prep.fit([(a, 10.0 * a, "a") for a in ages])
    np.testing.assert_allclose(prep.center, [3.0, 30.0])
    np.testing.assert_allclose(prep.scale, [2.0, 20.0])  # 4 - 2, 40 - 20
    num, _ = prep.decode((5.0, 10.0, "a"))
    np.testing.assert_allclose(num, [1.0, -1.0])


@pytest.mark.parametrize("scale", ["standard", "minmax", "robust"])
def test_large_magnitude_columns_scale_as_scikit_learn_does(scale):
    """Unix times (1.7e9) are 128 apart in float32: the fitted mean and minimum must be float64."""
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    rng = np.random.default_rng(0)
    times = 1.7e9 + 50 + rng.standard_normal(200) * 10
    rows = [(t, 1.0, "red") for t in times]
    prep = tabular(scale=scale, missing_indicator=False)
    prep.fit(rows)
    got = np.stack([prep.decode(r)[0] for r in rows])[:, 0]
    scaler = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}[scale]()
    reference = scaler.fit_transform(times[:, None])[:, 0]
    np.testing.assert_allclose(got, reference, atol=1e-5)
    again = tabular(scale=scale, missing_indicator=False)
    again.set_state(json.loads(json.dumps(prep.get_state())))  # the JSON state keeps float64
    np.testing.assert_array_equal(np.stack([again.decode(r)[0] for r in rows])[:, 0], got)


@pytest.mark.parametrize("infinity", [math.inf, -math.inf, "inf", "1e400"])
def test_an_infinite_training_value_is_kept_out_of_the_fitted_statistics(infinity):
    """An infinity (a float, or text that parses as one) counts as missing in fit, as a string does,
    and encoding refuses its row naming the column; the other rows encode to finite numbers."""
    prep = TabularPreprocessor("labs", TabularPreprocess(), ["x"], [])
    rows = [(1.0,), (2.0,), (infinity,), (3.0,)]
    prep.fit(rows)
    np.testing.assert_allclose(prep.fill, [2.0])  # the mean of 1, 2, 3
    np.testing.assert_allclose(prep.center, [2.0])
    np.testing.assert_allclose(prep.scale, [np.std([1.0, 2.0, 2.0, 3.0])])
    good, samples, errors = prep.decode_chunk(rows)
    assert good == [0, 1, 3] and [position for position, _ in errors] == [2]
    assert "column 'x' holds an infinite value" in errors[0][1].reason
    assert all(np.isfinite(num).all() for num, _ in samples)
    np.testing.assert_allclose(samples[0][0], [-1.0 / np.std([1.0, 2.0, 2.0, 3.0]), 0.0], rtol=1e-6)


@pytest.mark.parametrize("marker", ["NA", "null", "n/a", "NaN", " ", "<NA>"])
def test_text_pandas_reads_as_missing_is_a_missing_number(marker):
    prep = tabular()
    prep.fit(ROWS)
    np.testing.assert_array_equal(prep.decode((1.0, marker, "red"))[0], prep.decode((1.0, NAN, "red"))[0])


# -- unknown_rate: the unknown category's embedding trains --------------------------------------------
COLOURS, SIZES = ["red", "blue", "green"], ["S", "M", "L", "XL"]


def two_columns(**options) -> TabularPreprocessor:
    prep = TabularPreprocessor("labs", TabularPreprocess(**options), ["age"], ["colour", "size"])
    prep.fit([(float(i), COLOURS[i % 3], SIZES[i % 4]) for i in range(24)])  # no empty category cell
    return prep


def test_training_batches_read_a_share_of_each_categorical_column_as_unknown_evaluation_none():
    """Every training category is learned, so index 0 (unknown or missing) would never train; at
    ``unknown_rate`` a training batch reads that share of each column's cells as it, evaluation none."""
    prep = two_columns(unknown_rate=0.3)
    arrays = as_tensors(encode_values(prep, [(float(i), COLOURS[i % 3], SIZES[i % 4]) for i in range(3000)]))
    torch.manual_seed(0)
    batch = prep.to_batch(arrays, train=True)
    clean = prep.to_batch(arrays, train=False)
    assert (clean["cat"] > 0).all(), "evaluation reads every learned category as it is"
    hidden = batch["cat"] != clean["cat"]
    assert (batch["cat"][hidden] == 0).all()
    assert hidden.float().mean(dim=0).tolist() == pytest.approx([0.3, 0.3], abs=0.03)  # each column
    assert torch.equal(batch["x"], clean["x"]), "the numbers are left as they are"
    torch.manual_seed(0)
    assert torch.equal(prep.to_batch(arrays, train=True)["cat"], batch["cat"]), "seeded like other augmentation"
    off = two_columns(unknown_rate=0.0)
    assert torch.equal(off.to_batch(arrays, train=True)["cat"], clean["cat"]), "0: as before the setting"


def test_unknown_rate_changes_no_cached_feature_stored_embedding_or_export():
    """Applied to training batches only: the cached features, a frozen encoder's stored outputs
    (computed in evaluation) and the runtime's settings are those of a run saved before it."""
    on, off = two_columns(unknown_rate=0.25), two_columns(unknown_rate=0.0)
    assert on.fingerprint() == off.fingerprint()
    assert "unknown_rate" not in on.encoding_config()
    assert on.settings_digest_config() == off.settings_digest_config()
    assert "unknown_rate" not in on.settings_digest_config()
    assert on.runtime_settings() == off.runtime_settings()
    assert "unknown_rate" not in on.runtime_settings()[0]


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_an_unknown_rate_outside_zero_to_one_is_a_config_error_naming_the_key(rate):
    modality = {"kind": "tabular", "columns": ["age"], "categorical": ["colour"], "preprocess": {"unknown_rate": rate}}
    with pytest.raises(ConfigError) as info:
        load_config({"target": "y", "modalities": {"labs": modality}})
    [problem] = info.value.problems
    assert problem.startswith("modalities.labs.preprocess.unknown_rate: ") and f"(got {rate})" in problem


def _unknown_rows(rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Row 0 (the unknown category) of the colour embedding before and after a short fit on rows
    without an empty colour cell (no weight decay: a row no batch reads keeps its value)."""
    rng = np.random.default_rng(0)
    colour = rng.choice(COLOURS, 96)
    frame = pd.DataFrame({"age": rng.normal(size=96), "colour": colour, "y": np.where(colour == "red", "a", "b")})
    config = {"target": "y", "task": "classification",
              "modalities": {"labs": {"kind": "tabular", "columns": ["age"], "categorical": ["colour"],
                                      "preprocess": {"unknown_rate": rate}}},
              "train": {"epochs": 3, "batch_size": 16, "weight_decay": 0.0, "progress": False}}
    predictor = MultimodalPredictor.from_config(config).fit(frame.iloc[:72], frame.iloc[72:])
    pipeline = predictor.pipeline
    torch.manual_seed(predictor.config.train.seed)  # the fit seeds, then builds: the same initial weights
    initial = build_model(predictor.config, pipeline.contexts(), pipeline.targets.n_outputs,
                          pipeline.targets.task_outputs)
    return (initial.encoders["labs"].embeddings[0].weight.detach(),
            predictor.net.encoders["labs"].embeddings[0].weight.detach())


def test_a_fit_trains_the_unknown_category_embedding_at_unknown_rate_and_not_at_zero():
    before, after = _unknown_rows(0.2)
    assert not torch.equal(before[1:], after[1:]), "the learned categories trained"
    assert not torch.allclose(before[0], after[0]), "the unknown category trained too"
    before, after = _unknown_rows(0.0)
    assert not torch.equal(before[1:], after[1:])
    assert torch.equal(before[0], after[0]), "0: as before the setting, the unknown category never trains"
