"""``MultimodalPredictor``: fit / evaluate / predict / save / load on tiny generated data.

The data (see helpers_models.py) has three classes that every modality reveals, so a few epochs
are enough for a model to do clearly better than chance. Fitted runs are shared per module; tests
only read them.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers_cli import invoke
from helpers_models import (
    CLASSES,
    classification_config,
    make_dataset,
    multilabel_config,
    regression_config,
    save_tiny_bert,
    unit_targets,
    unit_targets_config,
    write_splits,
)

from polymodal import MultimodalPredictor
from polymodal.config import load_config
from polymodal.data.manifest import read_manifest
from polymodal.errors import (
    ConfigError,
    ManifestError,
    NotFittedError,
    PolymodalError,
    RunFolderError,
    SchemaMismatchError,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("data")
    frame = make_dataset(root)
    return {"root": root, "frame": frame, **write_splits(root, frame)}


@pytest.fixture(scope="module")
def clf(data, tmp_path_factory) -> tuple[MultimodalPredictor, Path]:
    run = tmp_path_factory.mktemp("runs") / "clf"
    predictor = MultimodalPredictor.from_config(classification_config()).fit(data["train"], data["valid"], out=run)
    return predictor, run


def absolute_paths(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    """A DataFrame's relative paths resolve against the working directory: make them absolute."""
    columns = ("image", "signal")
    return frame.assign(**{c: [str(root / p) if isinstance(p, str) else p for p in frame[c]] for c in columns})


def test_fit_learns_the_task(clf, data):
    predictor, _ = clf
    assert predictor.metrics["valid"]["accuracy"] >= 0.8
    test_scores = predictor.evaluate(data["test"])
    assert test_scores["accuracy"] >= 0.8
    assert len(predictor.history) == 3 and list(predictor.history["epoch"]) == [1, 2, 3]
    assert predictor.info["train_rows"] == len(pd.read_csv(data["train"]))
    assert predictor.info["valid_rows"] == len(pd.read_csv(data["valid"]))
    assert predictor.info["parameters"] == sum(p.numel() for p in predictor.net.parameters())


def test_the_kept_epoch_is_the_validation_loss_minimum_by_default(clf):
    """Validation accuracy on a few rows plateaus while the loss still falls: the
    default monitor is the loss, so the kept weights are those of its lowest epoch."""
    predictor, _ = clf
    history = predictor.history.set_index("epoch")
    assert "best_val_loss" in predictor.info
    assert predictor.info["best_epoch"] == history["val_loss"].idxmin()
    assert predictor.info["best_val_loss"] == pytest.approx(history["val_loss"].min())


def test_evaluate_agrees_with_predict(clf, data):
    predictor, _ = clf
    scores = predictor.evaluate(data["test"])
    for key in ("accuracy", "macro_f1", "auroc", "ece", "log_loss", "confusion_matrix", "rows"):
        assert key in scores
    truth = pd.read_csv(data["test"])["label"].to_numpy()
    assert scores["rows"] == len(truth)
    assert scores["accuracy"] == pytest.approx(float((predictor.predict(data["test"]) == truth).mean()))
    matrix = np.asarray(scores["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == len(truth)
    assert list(matrix.sum(axis=1)) == [int((truth == c).sum()) for c in CLASSES]
    assert scores["classes"] == list(CLASSES)  # the labels of the matrix's rows and columns
    predicted = predictor.predict(data["test"])
    assert [int(matrix[:, k].sum()) for k in range(3)] == [int((predicted == c).sum()) for c in scores["classes"]]


def test_evaluate_by_a_column_scores_each_of_its_values_rows_as_evaluating_them_alone(clf, data, tmp_path):
    predictor, _ = clf
    test = absolute_paths(pd.read_csv(data["test"]), data["test"].parent)
    test["site"] = [["10", "9", ""][i % 3] for i in range(len(test))]  # numbers in numeric order, then blanks
    test.to_csv(tmp_path / "test.csv", index=False)
    scores = predictor.evaluate(tmp_path / "test.csv", by="site")
    groups = scores["by"]["site"]
    assert list(groups) == ["9", "10", "(empty)"]
    assert sum(g["rows"] for g in groups.values()) == scores["rows"] == len(test)
    for value, cell in (("9", "9"), ("10", "10"), ("(empty)", "")):
        alone = predictor.evaluate(test[test["site"] == cell])
        assert groups[value]["accuracy"] == pytest.approx(alone["accuracy"])
        assert groups[value]["confusion_matrix"] == alone["confusion_matrix"]
    with pytest.raises(ManifestError, match=r"column 'Site' \(to split the metrics by\) is not in test.csv \(did you "
                                            r"mean 'site'\?\)"):
        predictor.evaluate(tmp_path / "test.csv", by="Site")


def test_evaluate_by_a_category_of_the_model_groups_its_values_as_the_model_keys_them(clf, data, tmp_path):
    """The tabular modality reads 'color' with normalize_categories: strip (the default): 'red '
    is the model's 'red', so it is one group, scored as those rows alone are."""
    predictor, _ = clf
    test = absolute_paths(pd.read_csv(data["test"]), data["test"].parent)
    test["color"] = [c + " " if i % 2 else c for i, c in enumerate(test["color"])]
    test.to_csv(tmp_path / "test.csv", index=False)
    groups = predictor.evaluate(tmp_path / "test.csv", by="color")["by"]["color"]
    keyed = test["color"].str.strip()
    assert set(groups) == set(keyed)
    for value, scores in groups.items():
        alone = predictor.evaluate(test[keyed == value])
        assert scores["rows"] == alone["rows"] and scores["accuracy"] == pytest.approx(alone["accuracy"])


def test_predict_proba_and_predict(clf, data):
    predictor, _ = clf
    frame = pd.read_csv(data["test"])
    proba = predictor.predict_proba(data["test"])
    assert list(proba.columns) == CLASSES
    assert list(proba.index) == list(range(len(frame))) and proba.index.name == "row"
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5) and ((proba >= 0) & (proba <= 1)).all().all()
    labels = predictor.predict(data["test"])
    assert labels.shape == (len(frame),) and set(labels) <= set(CLASSES)
    assert list(labels) == list(proba.idxmax(axis=1))


def test_rows_missing_a_modality_are_still_predicted(clf, data):
    predictor, _ = clf
    frame = pd.read_csv(data["test"])
    assert frame["image"].isna().any(), "the test data should have rows without an image"
    proba = predictor.predict_proba(absolute_paths(frame, data["root"]))
    assert len(proba) == len(frame) and np.isfinite(proba.to_numpy()).all()
    absent = predictor.predict_frame(absolute_paths(frame, data["root"]))["absent"]  # what each was made without
    expected = [", ".join(m for m, empty in (("img", pd.isna(row["image"])),
                                             ("tab", row[["x1", "x2", "color"]].isna().all())) if empty)
                for _, row in frame.iterrows()]
    assert absent.tolist() == expected and "img" in expected


def _emptied(frame: pd.DataFrame, row: int, columns: list[str]) -> pd.DataFrame:
    """``frame`` (paths made absolute, its own index 100..) with every input of its ``row``-th row empty."""
    frame = frame.set_axis(range(100, 100 + len(frame)))
    frame.loc[100 + row, columns] = None
    return frame


def test_a_row_with_no_input_keeps_its_place_in_every_prediction_under_on_error_missing(clf, data, tmp_path):
    """``df["pred"] = pred.predict(df)`` lines up: a row left with nothing to predict from holds NaN
    in predict, predict_proba and predict_frame (indexed as the DataFrame), as it does in the file
    'polymodal predict' writes, and the warning names it."""
    predictor, run = clf
    frame = _emptied(absolute_paths(pd.read_csv(data["test"]), data["root"]), 2, ["image", "x1", "x2", "color"])
    with pytest.raises(ManifestError, match=r"no modality present in row 2 \(index 102\)"):
        predictor.predict(frame)  # data.on_error: raise
    before = predictor.config.data.on_error
    predictor.config.data.on_error = "missing"
    try:
        with pytest.warns(UserWarning, match=r"1 row\(s\) with no modality present kept, with NaN predictions "
                                             r"\(data.on_error: missing\):\n  DataFrame row 2 \(index 102\): no "
                                             "modality present"):
            labels = predictor.predict(frame)
        proba, table = predictor.predict_proba(frame), predictor.predict_frame(frame)
        kept = predictor.predict(frame.drop(index=102))
    finally:
        predictor.config.data.on_error = before
    assert len(labels) == len(frame) and labels.dtype == object and pd.isna(labels[2])
    assert list(np.delete(labels, 2)) == list(kept)  # the other rows' predictions, in their places
    frame["pred"] = labels
    assert proba.index.tolist() == table.index.tolist() == frame.index.tolist()
    assert proba.loc[102].isna().all() and proba.drop(index=102).notna().all().all()
    assert pd.isna(table.loc[102, "prediction"]) and table.loc[102, ["proba_a", "proba_b", "proba_c"]].isna().all()
    assert table.loc[102, "absent"] == "img, tab" and table.drop(index=102)["prediction"].tolist() == list(kept)
    frame.drop(columns="pred").to_csv(tmp_path / "query.csv", index=False)
    written = invoke("predict", run, "--data", tmp_path / "query.csv", "--out", tmp_path / "p.csv",
                     "--on-error", "missing")
    assert written.exit_code == 0, written.output
    on_file = pd.read_csv(tmp_path / "p.csv")
    assert on_file["row"].tolist() == list(range(len(frame))) and on_file["prediction"].isna().tolist() == [
        row == 2 for row in range(len(frame))]
    assert on_file.loc[2, "absent"] == "img, tab" and on_file["prediction"].drop(index=2).tolist() == list(kept)


def test_a_regression_row_with_no_input_is_nan_under_on_error_missing(reg, data):
    frame = _emptied(absolute_paths(pd.read_csv(data["test"]), data["root"]), 0, ["signal", "x1", "x2", "color"])
    before, reg.config.data.on_error = reg.config.data.on_error, "missing"
    try:
        with pytest.warns(UserWarning, match="kept, with NaN predictions"):
            values = reg.predict(frame)
        table = reg.predict_frame(frame)
    finally:
        reg.config.data.on_error = before
    assert values.shape == (len(frame),) and np.isnan(values[0]) and np.isfinite(values[1:]).all()
    assert values.dtype == reg.predict(frame.drop(index=100)).dtype == np.float64  # as without an empty row
    assert np.isnan(table.loc[100, "pred_y"]) and table.loc[100, "absent"] == "sig, tab"
    np.testing.assert_allclose(table["pred_y"].to_numpy()[1:], values[1:], rtol=1e-6)


def test_rows_to_evaluate_without_a_label_are_named_with_evaluation_advice(clf, data):
    predictor, _ = clf
    frame = absolute_paths(pd.read_csv(data["test"]), data["root"])
    frame.loc[[1, 4], "label"] = None
    with pytest.raises(ManifestError) as info:
        predictor.evaluate(frame)
    assert info.value.problems == ["target column 'label' is empty in rows 1, 4 (evaluating scores each row's "
                                   "prediction against its label, so every row needs one: remove those rows (e.g. "
                                   "df.dropna(subset=['label'])), or predict unlabelled rows with 'polymodal predict' "
                                   "(predict_frame in Python))"]


def test_predict_from_a_dataframe_without_the_target(clf, data):
    predictor, _ = clf
    frame = absolute_paths(pd.read_csv(data["test"]).drop(columns=["label"]), data["root"])
    pd.testing.assert_frame_equal(predictor.predict_proba(frame), predictor.predict_proba(data["test"]))


# -- run folder, save / load -----------------------------------------------------------------
def _is_pickle(path: Path) -> bool:
    """A raw pickle stream (PROTO opcode first, STOP last), or a zip (torch.save) holding one."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(".pkl") for name in archive.namelist())
    raw = path.read_bytes()
    return len(raw) >= 3 and raw[0] == 0x80 and 2 <= raw[1] <= 5 and raw.endswith(b".")


def test_run_folder_layout(clf):
    predictor, run = clf
    for name in ("config.yaml", "model.safetensors", "metrics.json", "history.csv", "report.html",
                 "checkpoints/last.ckpt", "preprocessors/targets.json"):
        assert (run / name).is_file(), name
    assert {p.stem for p in (run / "preprocessors").glob("*.json")} == {"img", "tab", "targets"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["valid"]["accuracy"] == pytest.approx(predictor.metrics["valid"]["accuracy"])
    assert metrics["training"]["epochs_run"] == 3
    assert len(pd.read_csv(run / "history.csv")) == 3
    assert "<html" in (run / "report.html").read_text(encoding="utf-8").lower()
    assert load_config(run / "config.yaml") == predictor.config
    pickles = [p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file() and _is_pickle(p)]
    assert pickles, "the Lightning checkpoints are pickles: the detector must find them"
    assert all(p.startswith("checkpoints/") and p.endswith(".ckpt") for p in pickles), pickles


def test_save_load_round_trip_is_exact(clf, data, tmp_path):
    predictor, run = clf
    expected = predictor.predict_proba(data["test"])
    loaded = MultimodalPredictor.load(run)
    pd.testing.assert_frame_equal(loaded.predict_proba(data["test"]), expected, check_exact=True)
    assert loaded.metrics["valid"] == json.loads(json.dumps(predictor.metrics["valid"]))
    assert len(loaded.history) == 3
    again = MultimodalPredictor.load(loaded.save(tmp_path / "copy"))
    pd.testing.assert_frame_equal(again.predict_proba(data["test"]), expected, check_exact=True)


def test_load_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        MultimodalPredictor.load(tmp_path)


@pytest.mark.parametrize("call", [lambda p, df: p.predict(df), lambda p, df: p.explain(df),
                                  lambda p, df: p.evaluate(df), lambda p, df: p.predict_frame(df)],
                         ids=["predict", "explain", "evaluate", "predict_frame"])
def test_predicting_before_fit(call):
    with pytest.raises(NotFittedError):
        call(MultimodalPredictor.from_config(classification_config()), pd.DataFrame({"x1": [1.0]}))


# -- schema checks on new data ---------------------------------------------------------------
def test_unseen_label_is_named(clf, data):
    predictor, _ = clf
    frame = pd.read_csv(data["test"])
    frame.loc[3, "label"] = "zebra"
    with pytest.raises(SchemaMismatchError, match="'zebra'"):
        predictor.evaluate(absolute_paths(frame, data["root"]))


def test_data_without_any_modality_column(clf):
    predictor, _ = clf
    with pytest.raises(SchemaMismatchError, match="none of this model's modality columns"):
        predictor.predict(pd.DataFrame({"something": [1, 2], "else": ["a", "b"]}))


def test_restricting_to_one_modality(clf, data):
    predictor, _ = clf
    frame = pd.read_csv(data["test"])
    only_tab = predictor.predict_proba(data["test"], modalities=["tab"])
    with pytest.warns(UserWarning, match="no column 'image'"):
        no_image_column = predictor.predict_proba(frame.drop(columns=["image"]))
    pd.testing.assert_frame_equal(only_tab, no_image_column)
    full = predictor.predict_proba(data["test"])
    has_image = frame["image"].notna().to_numpy()
    assert not np.allclose(only_tab.to_numpy()[has_image], full.to_numpy()[has_image]), "the image must matter"
    np.testing.assert_array_equal(only_tab.to_numpy()[~has_image], full.to_numpy()[~has_image])
    scores = predictor.evaluate(data["test"], modalities=["tab"])
    assert scores["rows"] == len(frame) and 0.0 <= scores["accuracy"] <= 1.0


def test_the_files_of_a_modality_left_out_are_not_read(clf, data, tmp_path):
    """A broken sensor: its files are corrupt, and predicting without it must not decode them."""
    predictor, _ = clf
    frame = absolute_paths(pd.read_csv(data["test"]), data["root"])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    broken = frame.assign(image=[str(tmp_path / "broken.png") if isinstance(p, str) else p for p in frame["image"]])
    pd.testing.assert_frame_equal(predictor.predict_proba(broken, modalities=["tab"]),
                                  predictor.predict_proba(frame, modalities=["tab"]))


def test_a_misnamed_modality_column_is_named_in_a_warning(clf, data):
    predictor, _ = clf
    frame = absolute_paths(pd.read_csv(data["test"]), data["root"]).rename(columns={"image": "img_path"})
    with pytest.warns(UserWarning, match=r"DataFrame has no column 'image' \(modality img\): predicting without it"
                      ) as caught:
        renamed = predictor.predict_proba(frame)
    assert "unrecognised columns: ['img_path', 'signal', 'y', 'tag_bright', 'tag_top']" in str(caught[0].message)
    pd.testing.assert_frame_equal(renamed, predictor.predict_proba(data["test"], modalities=["tab"]))  # still predicts
    recased = frame.rename(columns={"img_path": "Image"})
    with pytest.warns(UserWarning, match=r"no column 'image' \(modality img\) \(did you mean 'Image'\?\): predicting "
                                         "without it"):
        predictor.predict_proba(recased)



def test_a_modality_column_empty_in_every_row_is_named_in_a_warning(clf, data):
    predictor, _ = clf
    frame = absolute_paths(pd.read_csv(data["test"]), data["root"]).assign(image=" ")
    with pytest.warns(UserWarning, match=r"DataFrame: modality img \(column 'image'\) has no value in any row: "
                                         "predicting without it"):
        blank = predictor.predict_proba(frame)
    pd.testing.assert_frame_equal(blank, predictor.predict_proba(data["test"], modalities=["tab"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor.predict_proba(frame, modalities=["tab"])  # left out on purpose: no warning
    assert [str(w.message) for w in caught if "has no value in any row" in str(w.message)] == []


def test_a_table_without_some_of_its_columns_predicts_with_them_missing(clf, data):
    predictor, _ = clf
    frame = absolute_paths(pd.read_csv(data["test"]), data["root"])
    with pytest.warns(UserWarning, match=r"DataFrame has no column 'x2' of modality tab: it is missing in every "
                                         r"row \(imputed as any missing value\)"):
        without = predictor.predict_proba(frame.drop(columns=["x2"]))
    pd.testing.assert_frame_equal(without, predictor.predict_proba(frame.assign(x2=float("nan"))))


def test_image_bytes_in_a_path_column_are_named_not_decoded_as_text(clf, data):
    from polymodal.errors import ManifestError

    predictor, _ = clf
    frame = absolute_paths(pd.read_csv(data["test"]), data["root"]).assign(image=b"\x89PNG\r\n")
    with pytest.raises(ManifestError, match="column 'image': expected a file path \\(string\\), got bytes"):
        predictor.predict_proba(frame)

def test_no_warning_when_a_modality_is_left_out_on_purpose(clf, data):
    predictor, _ = clf
    frame = pd.read_csv(data["test"]).drop(columns=["image"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor.predict_proba(frame, modalities=["tab"])
        predictor.evaluate(data["test"], modalities=["tab"])
        predictor.evaluate(data["test"])  # every column there
    assert [str(w.message) for w in caught if "has no column" in str(w.message)] == []


def test_unknown_modality_name(clf, data):
    predictor, _ = clf
    with pytest.raises(SchemaMismatchError, match=r"^modalities: unknown modality 'sound'; this model has \['img', "
                                                  r"'tab'\]$"):
        predictor.predict(data["test"], modalities=["sound"])
    with pytest.raises(SchemaMismatchError, match=r"^modalities: unknown modalities 'imag' \(did you mean 'img'\?\), "
                                                  r"'Tab' \(did you mean 'tab'\?\); this model has"):
        predictor.evaluate(data["test"], modalities=["imag", "Tab"])  # a misspelling: the name meant


def test_one_modality_by_name_and_an_empty_choice(clf, data):
    predictor, _ = clf
    pd.testing.assert_frame_equal(predictor.predict_proba(data["test"], modalities="tab"),
                                  predictor.predict_proba(data["test"], modalities=["tab"]))
    with pytest.raises(SchemaMismatchError, match=r"no modality chosen \(modalities=\[\]\)"):
        predictor.predict(data["test"], modalities=[])


@pytest.mark.parametrize("data_arg", [[{"image": "a.png"}], {"image": ["a.png"]}, None, 3],
                         ids=["list", "dict", "none", "int"])
def test_data_that_is_not_a_manifest_is_named_by_type(clf, data_arg):
    predictor, _ = clf
    with pytest.raises(ManifestError, match=f"got {type(data_arg).__name__}"):
        predictor.predict(data_arg)


def test_bad_manifest_is_reported_before_training(data, tmp_path):
    frame = pd.read_csv(data["train"])
    frame.loc[2, "image"] = "no_such_file.png"
    frame.to_csv(data["root"] / "broken.csv", index=False)
    with pytest.raises(ManifestError, match="no_such_file.png"):
        MultimodalPredictor.from_config(classification_config()).fit(data["root"] / "broken.csv", out=tmp_path / "run")
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_class_weights_must_match_the_classes(data):
    config = classification_config(epochs=1)
    config["loss"] = {"class_weights": [1.0, 2.0]}
    with pytest.raises(SchemaMismatchError, match="2 values but the training data has 3 classes"):
        MultimodalPredictor.from_config(config).fit(data["train"], data["valid"])


# -- config sources and determinism ----------------------------------------------------------
def test_yaml_config_gives_the_same_model_as_the_dict(clf, data, tmp_path):
    predictor, _ = clf
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(classification_config()), encoding="utf-8")
    from_yaml = MultimodalPredictor.from_config(path).fit(data["train"], data["valid"])
    assert from_yaml.config == predictor.config
    pd.testing.assert_frame_equal(from_yaml.predict_proba(data["test"]), predictor.predict_proba(data["test"]),
                                  check_exact=True)


def test_another_seed_gives_another_model(clf, data):
    predictor, _ = clf
    other = MultimodalPredictor.from_config(classification_config(seed=1)).fit(data["train"], data["valid"])
    ours, theirs = predictor.predict_proba(data["test"]), other.predict_proba(data["test"])
    assert not np.allclose(theirs.to_numpy(), ours.to_numpy())


def test_bad_config_is_a_config_error():
    config = classification_config()
    config["modalities"]["img"]["encoder"]["dim"] = -4
    with pytest.raises(ConfigError) as info:
        MultimodalPredictor.from_config(config)
    assert any(p.startswith("modalities.img.encoder.dim") for p in info.value.problems)


def test_validation_split_is_held_out_when_no_validation_data(data):
    predictor = MultimodalPredictor.from_config(classification_config(epochs=1, val_fraction=0.25)).fit(data["train"])
    n = len(pd.read_csv(data["train"]))
    held_out = math.ceil(n * 0.25)  # scikit-learn's train_test_split rounds the test share up
    assert predictor.info["valid_rows"] == held_out and predictor.info["train_rows"] == n - held_out
    assert predictor.metrics["valid"]["rows"] == predictor.info["valid_rows"]
    per_class = np.asarray(predictor.metrics["valid"]["confusion_matrix"]).sum(axis=1)
    assert list(per_class) == [held_out // 3] * 3, "the held-out rows are stratified by class"


# -- other tasks -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reg(data) -> MultimodalPredictor:
    return MultimodalPredictor.from_config(regression_config()).fit(data["train"], data["valid"])


def test_regression(reg, data):
    scores = reg.evaluate(data["test"])
    assert set(scores) >= {"mae", "rmse", "r2", "rows"}
    truth = pd.read_csv(data["test"])["y"].to_numpy()
    pred = reg.predict(data["test"])
    assert pred.shape == (len(truth),), "one target column named as a string: one value per row"
    assert scores["mae"] == pytest.approx(float(np.abs(pred - truth).mean()), rel=1e-5)
    assert scores["rmse"] == pytest.approx(float(np.sqrt(((pred - truth) ** 2).mean())), rel=1e-5)
    assert scores["r2"] > 0.5, "predictions are on the target's scale and follow it"
    assert abs(pred.mean() - truth.mean()) < truth.std()
    with pytest.raises(SchemaMismatchError, match="regression"):
        reg.predict_proba(data["test"])
    for method in (reg.predict, reg.predict_frame, reg.evaluate):
        with pytest.raises(SchemaMismatchError, match="a support set needs a model trained with transfer"):
            method(data["test"], support=data["train"])


def test_regression_history_is_in_the_targets_units(reg):
    best = reg.history.loc[reg.history["epoch"] == reg.info["best_epoch"]].iloc[0]
    assert best["val_mae"] == pytest.approx(reg.metrics["valid"]["mae"], rel=1e-3)
    assert best["val_rmse"] == pytest.approx(reg.metrics["valid"]["rmse"], rel=1e-3)


def test_regression_r2_of_rows_whose_target_is_constant_is_undefined_not_zero(reg, data):
    """Rows of one target value (``evaluate --by`` the regressed column) leave R2 with no spread to
    explain: None and a note, where scikit-learn's default reports 0.0."""
    test = pd.read_csv(data["test"])
    test["y"] = 100.0 + 10.0 * test["label"].map({c: k for k, c in enumerate(CLASSES)})  # one value per label
    test.to_csv(data["root"] / "test_y_by_label.csv", index=False)
    scores = reg.evaluate(data["root"] / "test_y_by_label.csv", by="label")
    assert scores["r2"] is not None and scores["r2"] > 0.5  # over every row, y varies
    for label, group in scores["by"]["label"].items():
        assert group["r2"] is None, label
        assert "r2 is undefined for 'y'" in group["note"] and "constant on these rows" in group["note"]
        assert group["mae"] > 0  # the other metrics still score the rows


def test_a_monitored_r2_is_refused_when_the_validation_target_is_constant(data, tmp_path):
    valid = pd.read_csv(data["valid"]).assign(y=105.0)
    valid.to_csv(data["root"] / "valid_constant_y.csv", index=False)
    config = regression_config(early_stopping={"monitor": "r2", "patience": 2})
    with pytest.raises(ConfigError, match="'r2' is undefined on the .* a target that varies"):
        MultimodalPredictor.from_config(config).fit(data["train"], data["root"] / "valid_constant_y.csv",
                                                    out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("monitor", "best"), [("rmse_per_target.load", "idxmin"), ("r2_per_target.load", "idxmax")])
def test_early_stopping_on_one_target_of_several_keeps_that_targets_best_epoch(monitor, best):
    """load (about 1 hp) beside rpm (about 1750): the mean rmse follows rpm and is lowest at another
    epoch than load's own rmse, which chooses the kept weights when monitored (r2: the highest)."""
    config = unit_targets_config(epochs=8, lr=0.03, early_stopping={"monitor": monitor, "patience": 20})
    predictor = MultimodalPredictor.from_config(config).fit(unit_targets(120, 0), unit_targets(40, 1))
    history = predictor.history.set_index("epoch")
    column = history[f"val_{monitor}"]  # logged each epoch under its flat name, as every target's figures
    assert {"val_rmse_per_target.rpm", "val_r2_per_target.load", "val_mae_per_target.load"} <= set(history.columns)
    kept = predictor.info["best_epoch"]
    assert kept == getattr(column, best)() and predictor.info[f"best_val_{monitor}"] == pytest.approx(column[kept])
    assert history["val_rmse"].idxmin() != kept, "these data must tell the two choices apart"
    assert predictor.metrics["valid"]["rmse_per_target"]["load"] == pytest.approx(
        history.loc[kept, "val_rmse_per_target.load"], rel=1e-4)  # the kept epoch's weights are the model's


def test_multilabel(data):
    predictor = MultimodalPredictor.from_config(multilabel_config()).fit(data["train"], data["valid"])
    scores = predictor.evaluate(data["test"])
    assert set(scores) >= {"micro_f1", "macro_f1", "subset_accuracy", "rows"}
    assert scores["micro_f1"] >= 0.6
    assert set(scores["f1_per_label"]) == set(scores["auroc_per_label"]) == {"tag_bright", "tag_top"}
    assert scores["macro_f1"] == pytest.approx(np.mean(list(scores["f1_per_label"].values())))
    proba = predictor.predict_proba(data["test"])
    assert list(proba.columns) == ["tag_bright", "tag_top"]
    assert ((proba >= 0) & (proba <= 1)).all().all()
    labels = predictor.predict(data["test"])
    assert labels.shape == (len(proba), 2) and set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, (proba.to_numpy() >= 0.5).astype(int))
    predictor.config.data.on_error = "missing"  # a row with nothing to predict from: NaN labels, in its place
    emptied = _emptied(absolute_paths(pd.read_csv(data["test"]), data["root"]), 1, ["image", "signal"])
    with pytest.warns(UserWarning, match="kept, with NaN predictions"):
        gapped = predictor.predict(emptied)
    assert gapped.shape == labels.shape and np.isnan(gapped[1]).all()
    np.testing.assert_array_equal(np.delete(gapped, 1, axis=0), np.delete(labels, 1, axis=0))


def test_multilabel_balanced_class_weights_are_each_labels_negatives_over_positives(data, monkeypatch):
    import polymodal.predictor as module

    built = []

    def recording(task, class_weights=None, *args, **kwargs):
        built.append((task, class_weights, args))
        return module_task_loss(task, class_weights, *args, **kwargs)

    module_task_loss = module.TaskLoss
    monkeypatch.setattr(module, "TaskLoss", recording)
    config = multilabel_config(epochs=1)
    config["loss"] = {"class_weights": "balanced", "label_smoothing": 0.1}
    MultimodalPredictor.from_config(config).fit(data["train"], data["valid"])
    train = pd.read_csv(data["train"])
    positives = train[["tag_bright", "tag_top"]].sum().to_numpy()
    task, weights, (smoothing, *_) = built[0]
    assert task == "multilabel" and smoothing == 0.1
    np.testing.assert_allclose(weights.numpy(), (len(train) - positives) / positives, rtol=1e-6)
    assert weights[1] > 1 > weights[0]  # tag_top is rare (a third of rows), tag_bright common (two thirds)


def test_text_modality_with_a_local_pretrained_model(data, tmp_path):
    bert = save_tiny_bert(tmp_path / "bert")
    frame = data["frame"].assign(caption=[["quite dark", "mid image", "very bright"][CLASSES.index(c)]
                                          for c in data["frame"]["label"]])
    config = classification_config(epochs=2)
    config["modalities"] = {"cap": {"kind": "text", "column": "caption", "preprocess": {"max_tokens": 8},
                                    "encoder": {"name": "hf", "path": str(bert)}},
                            "tab": config["modalities"]["tab"]}
    predictor = MultimodalPredictor.from_config(config).fit(frame.iloc[:60], frame.iloc[60:80], out=tmp_path / "run")
    loaded = MultimodalPredictor.load(tmp_path / "run")
    proba = loaded.predict_proba(frame.iloc[80:])
    pd.testing.assert_frame_equal(proba, predictor.predict_proba(frame.iloc[80:]), check_exact=True)
    assert not np.allclose(loaded.predict_proba(frame.iloc[80:], modalities=["cap"]).to_numpy(), proba.to_numpy())


# -- resuming --------------------------------------------------------------------------------
def test_resume_continues_an_interrupted_run(data, tmp_path):
    run = tmp_path / "run"
    MultimodalPredictor.from_config(classification_config(epochs=2)).fit(data["train"], data["valid"], out=run)
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == [1, 2]
    resumed = MultimodalPredictor.from_config(classification_config(epochs=4)).fit(
        data["train"], data["valid"], out=run, resume=True)
    assert list(resumed.history["epoch"]) == [1, 2, 3, 4]
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == [1, 2, 3, 4]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 4
    for valid in (None, data["test"]):  # a validation share of rows it trained on, or other rows
        with pytest.raises(RunFolderError, match=r"trained with valid= .*valid\.csv; resume it with the same valid="):
            MultimodalPredictor.from_config(classification_config(epochs=5)).fit(data["train"], valid, out=run,
                                                                                 resume=True)


def test_resume_refuses_a_manifest_whose_content_changed_and_says_where_it_starts(data, tmp_path, capsys):
    """The same --train path with other rows resumed silently (only the path was compared): the
    preprocessing fitted on the old rows would not match. A resume says where it starts again."""
    run = tmp_path / "run"
    train = data["root"] / "train_resumed.csv"  # beside the images its paths name
    shutil.copyfile(data["train"], train)
    MultimodalPredictor.from_config(classification_config(epochs=1)).fit(train, data["valid"], out=run)
    frame = pd.read_csv(train)
    frame.iloc[:-1].to_csv(train, index=False)  # one row fewer, at the same path
    with pytest.raises(RunFolderError) as refused:
        MultimodalPredictor.from_config(classification_config(epochs=2)).fit(train, data["valid"], out=run,
                                                                             resume=True)
    said = str(refused.value)
    assert f"resume=True: {run} trained with train {train.resolve()}, whose content changed since" in said
    assert "preprocessing fitted on it" in said and "another out=" in said and "overwrite=True" in said
    frame.to_csv(train, index=False)  # its rows again: resumed, and it says so
    capsys.readouterr()
    resumed = MultimodalPredictor.from_config(classification_config(epochs=3, progress=True)).fit(
        train, data["valid"], out=run, resume=True)
    assert list(resumed.history["epoch"]) == [1, 2, 3]
    lines = capsys.readouterr().err.splitlines()
    assert lines.count(f"resuming {run} at epoch 2 of 3") == 1
    assert lines.index(f"resuming {run} at epoch 2 of 3") < min(i for i, line in enumerate(lines)
                                                                 if line.startswith("epoch 2/3"))


def test_an_interrupted_run_checks_its_manifests_against_those_its_training_started_on(data, tmp_path):
    """A run stopped before it saved has no metrics.json: the manifests it started on are recorded
    as its training starts (checkpoints/data.json), so its resume is checked all the same."""
    run = tmp_path / "run"
    train = data["root"] / "train_interrupted.csv"
    shutil.copyfile(data["train"], train)
    MultimodalPredictor.from_config(classification_config(epochs=1)).fit(train, data["valid"], out=run)
    started = json.loads((run / "checkpoints" / "data.json").read_text())
    assert started["train_manifest"] == str(train.resolve()) and started["valid_manifest"] == str(data["valid"].resolve())
    for name in ("metrics.json", "model.safetensors"):  # what an interrupted run lacks: only its checkpoint is there
        (run / name).unlink()
    with pytest.raises(RunFolderError, match=r"trained with valid= .*valid\.csv; resume it with the same valid="):
        MultimodalPredictor.from_config(classification_config(epochs=2)).fit(train, data["test"], out=run, resume=True)
    pd.read_csv(train).iloc[:-1].to_csv(train, index=False)
    with pytest.raises(RunFolderError, match=r"trained with train .*train_interrupted\.csv, whose content changed"):
        MultimodalPredictor.from_config(classification_config(epochs=2)).fit(train, data["valid"], out=run, resume=True)


@pytest.mark.slow  # 6 s; training/test_trainer.py tests the sessions' time
def test_a_resumed_runs_training_time_is_the_whole_fits(data, tmp_path):
    """train_seconds (metrics.json, compare, the report) covers every session, not the last."""
    import lightning as L

    class SlowEpochs(L.Callback):  # a second more every epoch of the first session (in history.csv's seconds)
        def on_train_epoch_start(self, trainer, module):
            time.sleep(1.0)

    run = tmp_path / "run"
    MultimodalPredictor.from_config(classification_config(epochs=2)).fit(data["train"], data["valid"], out=run,
                                                                          callbacks=[SlowEpochs()])
    resumed = MultimodalPredictor.from_config(classification_config(epochs=3)).fit(
        data["train"], data["valid"], out=run, resume=True)
    saved = json.loads((run / "metrics.json").read_text())["training"]["train_seconds"]
    assert saved == pytest.approx(resumed.info["train_seconds"])
    assert saved >= pd.read_csv(run / "history.csv")["seconds"].sum() >= 2.0  # the first session's slow epochs too


def test_resume_without_a_checkpoint(data, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        MultimodalPredictor.from_config(classification_config(epochs=1)).fit(
            data["train"], data["valid"], out=tmp_path / "fresh", resume=True)


def test_a_run_saved_before_a_key_existed_loads_with_the_behaviour_it_was_trained_with(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(800) / 8000
    rows = []
    for i in range(24):
        np.save(tmp_path / f"a{i}.npy", (np.sin(2 * np.pi * (300 + 900 * (i % 2)) * t) + rng.normal(0, 0.1, t.size))
                .astype(np.float32))
        rows.append({"audio": f"a{i}.npy", "label": f"c{i % 2}"})
    pd.DataFrame(rows).to_csv(tmp_path / "data.csv", index=False)
    config = {"task": "classification", "target": "label",
              "modalities": {"audio": {"kind": "audio", "column": "audio",
                                       "preprocess": {"sample_rate": 8000, "max_seconds": 0.1, "n_mels": 16},
                                       "encoder": {"name": "mel_cnn", "dim": 8, "channels": [4], "frequency": "mean"}}},
              "train": {"epochs": 1, "batch_size": 8, "progress": False, "num_workers": 0}, "report": {"rows": 0}}
    run = tmp_path / "run"
    predictor = MultimodalPredictor.from_config(config).fit(tmp_path / "data.csv", tmp_path / "data.csv", out=run)
    expected = predictor.predict_proba(tmp_path / "data.csv")
    saved = (run / "config.yaml").read_text(encoding="utf-8")
    assert "frequency: mean" in saved
    (run / "config.yaml").write_text(saved.replace("      frequency: mean\n", ""), encoding="utf-8")  # as written before the key
    old = MultimodalPredictor.load(run)
    assert old.config.modalities["audio"].encoder.frequency == "mean"
    pd.testing.assert_frame_equal(old.predict_proba(tmp_path / "data.csv"), expected)
    assert MultimodalPredictor.from_config(config | {"modalities": {"audio": {
        **config["modalities"]["audio"], "encoder": {"name": "mel_cnn"}}}}).config.modalities["audio"].encoder.frequency \
        == "flatten"  # a new config gets today's default


def test_using_a_model_does_not_import_the_training_engine():
    """Lightning takes seconds to import; load / predict / evaluate never need it (only fit does)."""
    code = ("import sys, polymodal.predictor, polymodal.cli, polymodal.deploy.batch, polymodal.anomaly.detector; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'torchmetrics')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_monitored_metric_the_validation_rows_leave_undefined_is_refused_before_training(data, tmp_path):
    valid = pd.read_csv(data["valid"])
    valid = valid[valid["label"] != valid["label"].iloc[0]]  # one class missing: no AUROC
    (data["root"] / "valid_two_classes.csv").write_text(valid.to_csv(index=False), encoding="utf-8")
    config = classification_config(early_stopping={"monitor": "auroc", "patience": 2})
    with pytest.raises(ConfigError, match="train.early_stopping.monitor: 'auroc' is undefined on the"):
        MultimodalPredictor.from_config(config).fit(data["train"], data["root"] / "valid_two_classes.csv",
                                                    out=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before the run folder was written
    config["train"]["early_stopping"]["monitor"] = "macro_f1"  # defined on any rows
    predictor = MultimodalPredictor.from_config({**config, "train": {**config["train"], "epochs": 1}})
    predictor.fit(data["train"], data["root"] / "valid_two_classes.csv")


def test_a_diverged_epochs_metrics_are_nan_in_the_history_not_the_last_epochs(data):
    import lightning as L
    import torch

    class Diverge(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            if trainer.current_epoch >= 0:  # after epoch 0 was validated (validation runs first)
                with torch.no_grad():
                    for parameter in module.parameters():
                        parameter.fill_(float("nan"))

    predictor = MultimodalPredictor.from_config(regression_config(epochs=3))
    predictor.fit(data["train"], data["valid"], callbacks=[Diverge()])
    history = predictor.history
    assert np.isfinite(history["val_rmse"].iloc[0])
    assert history["val_rmse"].iloc[1:].isna().all() and history["val_r2"].iloc[1:].isna().all()
    assert predictor.info["best_epoch"] == 1, "the first epoch, counted from 1"


def test_a_dataframes_own_index_labels_the_predictions_and_the_messages(clf, data):
    predictor, _ = clf
    frame = absolute_paths(pd.read_csv(data["test"]), data["root"])
    shuffled = frame.sample(frac=1, random_state=0).set_axis(np.arange(1000, 1000 + len(frame)))
    proba = predictor.predict_proba(shuffled)
    assert proba.index.tolist() == shuffled.index.tolist()  # joins back onto the caller's rows
    assert shuffled.join(proba)[list(proba.columns)].notna().all().all()
    positional = predictor.predict_proba(shuffled.reset_index(drop=True))
    assert positional.index.tolist() == list(range(len(frame)))  # a default index: row numbers, as before
    np.testing.assert_allclose(proba.to_numpy(), positional.to_numpy(), atol=1e-6)
    assert predictor.predict_frame(shuffled).index.tolist() == shuffled.index.tolist()
    broken = shuffled.copy()
    broken.loc[1003, "image"] = str(data["root"] / "missing.png")
    with pytest.raises(ManifestError, match=r"DataFrame row 3 \(index 1003\), column 'image': file not found"):
        predictor.predict_proba(broken)


def test_training_on_the_validation_rows_is_warned_about(data):
    with pytest.warns(UserWarning, match="the validation manifest is the training manifest"):
        MultimodalPredictor.from_config(classification_config(epochs=1)).fit(data["train"], str(data["train"]))
    copy = Path(data["train"]).with_name("train_copy.csv")
    copy.write_bytes(Path(data["train"]).read_bytes())  # beside it: its paths name the same files
    with pytest.warns(UserWarning, match=f"the validation manifest {copy} is a copy of the training manifest"):
        MultimodalPredictor.from_config(classification_config(epochs=1)).fit(data["train"], copy)
    frame = pd.read_csv(data["train"])
    frame["image"] = [str(data["root"] / p) if isinstance(p, str) else p for p in frame["image"]]
    with pytest.warns(UserWarning, match="the validation DataFrame holds the training rows") as caught:
        MultimodalPredictor.from_config(classification_config(epochs=1)).fit(frame, frame.copy())
    warned = next(w for w in caught if "holds the training rows" in str(w.message))
    assert warned.filename == __file__  # the user's line, not a context manager's inside the fit


def test_training_on_the_validation_rows_of_a_manifest_object_is_warned_about(data):
    manifest = read_manifest(data["train"])
    with pytest.warns(UserWarning, match=r"the validation Manifest \(train.csv\) holds the training rows"):
        MultimodalPredictor.from_config(classification_config(epochs=1)).fit(manifest, manifest)
    with pytest.warns(UserWarning, match=r"the validation Manifest \(train.csv\) holds the training rows"):
        MultimodalPredictor.from_config(classification_config(epochs=1)).fit(  # read twice, as docs/python.md does
            read_manifest(data["train"], root=data["root"]), read_manifest(data["train"], root=data["root"]))


def test_categories_the_model_did_not_learn_are_warned_about(clf, data, tmp_path):
    predictor, _ = clf
    frame = pd.read_csv(data["test"])
    frame["color"] = ["Red", "purple", "red", None] * (len(frame) // 4) + ["red"] * (len(frame) % 4)
    unknown = (len(frame) // 4) * 2
    with pytest.warns(UserWarning, match=rf"column 'color' of modality tab: {unknown} row\(s\) hold categories the "
                                         r"model did not learn \('Red', 'purple'\)"):
        predictor.predict(read_manifest(frame, root=data["root"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # learned categories and blanks: no word
        predictor.predict(read_manifest(frame.assign(color="red"), root=data["root"]))
    from polymodal.deploy.batch import predict_to_file

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a manifest predicted in chunks is read, and warned about, once
        predict_to_file(predictor, read_manifest(frame, root=data["root"]), tmp_path / "p.csv", chunk_rows=3,
                        progress=False)
    assert sum("did not learn" in str(w.message) for w in caught) == 1


def test_categories_the_fit_did_not_learn_in_its_validation_and_test_rows_are_warned_about_once(data, tmp_path):
    test = pd.read_csv(data["test"]).assign(color="purple")
    test.to_csv(data["root"] / "test_purple.csv", index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MultimodalPredictor.from_config(classification_config(epochs=1)).fit(
            data["train"], data["valid"], test=data["root"] / "test_purple.csv")
    warned = [str(w.message) for w in caught if "did not learn" in str(w.message)]
    assert warned == [f"test_purple.csv: column 'color' of modality tab: {len(test)} row(s) hold categories the model "
                      "did not learn ('purple'): they read as the unknown category"]  # once: not again at evaluation


def test_python_api_mistakes_are_named_in_pythons_terms(clf, tmp_path):
    predictor, _ = clf
    with pytest.raises(TypeError, match="a config is a YAML or JSON file's path, a dict or a Config; got int 42"):
        MultimodalPredictor.from_config(42)
    (tmp_path / "afile.yaml").write_text("x", encoding="utf-8")
    with pytest.raises(PolymodalError, match="the run folder: .*afile.yaml is a file, not a folder"):
        predictor.save(tmp_path / "afile.yaml")
    with pytest.raises(PolymodalError, match="the run folder: .*afile.yaml is a file, not a folder"):
        predictor.save(tmp_path / "afile.yaml" / "run")


def test_on_error_skip_lists_a_missing_training_file_in_the_run_and_trains_without_it(data, tmp_path):
    frame = absolute_paths(pd.read_csv(data["train"]), data["root"])
    frame.loc[4, "image"] = str(tmp_path / "gone.png")
    frame.to_csv(tmp_path / "train.csv", index=False)
    config = {**classification_config(epochs=1), "data": {"on_error": "skip"}}
    predictor = MultimodalPredictor.from_config(config).fit(tmp_path / "train.csv", data["valid"], out=tmp_path / "run")
    listed = pd.read_csv(tmp_path / "run" / "skipped.csv")
    assert listed[["split", "modality", "row", "where", "path", "reason"]].values.tolist() == [
        ["train", "img", 4, "train.csv row 4 (line 6)", str(tmp_path / "gone.png"), "file not found"]]
    assert predictor.info["train_rows"] == len(frame) - 1


def test_a_validation_manifest_left_without_rows_by_skipping_is_refused_before_training(data, tmp_path):
    frame = absolute_paths(pd.read_csv(data["valid"]), data["root"])
    for row in range(len(frame)):
        (tmp_path / f"bad{row}.png").write_bytes(b"not a png")
        frame.loc[row, "image"] = str(tmp_path / f"bad{row}.png")
    frame.to_csv(tmp_path / "valid.csv", index=False)
    config = {**classification_config(epochs=1), "data": {"on_error": "skip"}}
    with pytest.raises(ManifestError, match=rf"^Invalid manifest valid.csv \(1 problem\(s\)\):\n  - valid.csv: no row is "
                                            rf"left to validate on: each of its {len(frame)} validation row\(s\) had an "
                                            rf"unreadable file, skipped \({len(frame)} file\(s\); data.on_error: skip\)"):
        MultimodalPredictor.from_config(config).fit(data["train"], tmp_path / "valid.csv", out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_config_changed_after_fit_is_refused_by_key_until_put_back(data, tmp_path):
    from polymodal.errors import ConfigError

    pred = MultimodalPredictor.from_config(classification_config(epochs=1)).fit(data["train"], data["valid"])
    size = pred.config.modalities["img"].preprocess.size
    pred.config.modalities["img"].preprocess.size = 12
    pred.config.target = "y"
    for call in (lambda: pred.predict(data["test"]), lambda: pred.save(tmp_path / "run")):
        with pytest.raises(ConfigError) as info:
            call()
        assert info.value.problems[:2] == ["target: 'label' when fitted, now 'y'",
                                           f"modalities.img.preprocess.size: {size!r} when fitted, now 12"]
        assert "put the value(s) back, or fit again" in info.value.problems[2]
    assert not (tmp_path / "run").exists()  # nothing saved that would not load
    pred.config.target = "label"
    pred.config.modalities["img"].preprocess.size = size
    pred.config.data.on_error = "skip"  # a setting of how data is read: free to change
    pred.config.train.batch_size = 7
    assert len(pred.predict(data["test"])) == len(pd.read_csv(data["test"]))
    parameters = pred.info["parameters"]
    pred.config.head.hidden = [8]  # changed before a fit again: that fit follows it
    pred.fit(data["train"], data["valid"])
    assert pred.info["parameters"] < parameters and len(pred.predict(data["test"])) == len(pd.read_csv(data["test"]))


def test_a_loaded_model_refuses_a_changed_config_and_estimators_do_not_share_one(clf, data):
    from polymodal.config import load_config
    from polymodal.errors import ConfigError

    _, run = clf
    loaded = MultimodalPredictor.load(run)
    loaded.config.modalities["tab"].columns = ["x1"]
    with pytest.raises(ConfigError, match=r"modalities.tab.columns: \['x1', 'x2'\] when fitted, now \['x1'\]"):
        loaded.evaluate(data["test"])
    shared = load_config(classification_config())
    first, second = MultimodalPredictor(shared), MultimodalPredictor(shared)
    second.config.head.hidden = [4]
    assert first.config.head.hidden == [16] and shared.head.hidden == [16]  # each has its own copy


def test_a_fit_without_validation_rows_holds_out_whole_groups_when_told(tmp_path):
    """train.val_group: the held-out rows are those of whole groups (as group_holdout draws them),
    and the model validates on exactly them."""
    from polymodal.data.split import group_holdout

    frame = make_dataset(tmp_path, n=60).assign(recording=lambda f: [f"r{i // 6}" for i in range(len(f))])
    frame.to_csv(tmp_path / "all.csv", index=False)
    config = classification_config(epochs=1, val_fraction=0.25, val_group="recording")
    predictor = MultimodalPredictor(config).fit(tmp_path / "all.csv")
    _, valid = group_holdout(read_manifest(tmp_path / "all.csv"), 0.25, 0, "recording")
    # 2 of the 10 recordings, whole (one row at a time, 25% of the 60 rows would be 15)
    assert predictor.metrics["valid"]["rows"] == len(valid) == 12
    config["train"]["val_group"] = "recordings"
    with pytest.raises(ManifestError, match=r"train.val_group: all.csv has no column 'recordings' \(did you mean "):
        MultimodalPredictor(config).fit(tmp_path / "all.csv")
