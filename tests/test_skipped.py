"""Files skipped with ``data.on_error: skip`` are never lost: the run folder's ``skipped.csv``
keeps the fit's (train / valid / test) whatever is evaluated later, and ``polymodal evaluate`` /
``polymodal predict`` name the files they skip and write them beside their output."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
import yaml
from helpers_cli import invoke
from helpers_models import classification_config, make_dataset, write_splits
from lightning.pytorch.callbacks import Callback

from polymodal import MultimodalPredictor


def corrupt(root, *images: str) -> None:
    for name in images:
        (root / name).write_bytes(b"not a png")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("skipped")
    paths = write_splits(root, make_dataset(root, n=45))  # train rows 0-26, valid 27-35, test 36-44
    corrupt(root, "img3.png", "img38.png")  # train row 3, test row 2
    config = classification_config(epochs=1)
    config["data"] = {"on_error": "skip"}
    paths["config"] = root / "config.yaml"
    paths["config"].write_text(yaml.safe_dump(config), encoding="utf-8")
    return {"root": root, **paths}


class TrainingStart(Callback):
    """Records the skipped-file warnings given before the first epoch."""

    def __init__(self, warned: list) -> None:
        self.warned, self.before = warned, None

    def on_train_start(self, trainer, module) -> None:
        self.before = [str(w.message) for w in self.warned if "skipped" in str(w.message)]


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("skipped-run") / "run"
    with pytest.warns(UserWarning) as warned:
        start = TrainingStart(warned)
        predictor = MultimodalPredictor.from_config(data["config"]).fit(data["train"], data["valid"],
                                                                        test=data["test"], out=out, callbacks=[start])
    return predictor, out, [str(w.message) for w in warned if "skipped" in str(w.message)], start.before


def test_python_fit_warns_about_the_files_it_skipped_before_the_epochs_naming_them(run):
    _, out, warned, before_training = run
    assert len(warned) == 2  # train + valid before the epochs, then the test set's evaluation
    train, test = warned
    assert before_training == [train]  # a broken path is seen before hours of training, not after
    assert train.startswith("1 unreadable or missing file(s) skipped (data.on_error: skip); rows with one are left out")
    assert "train.csv row 3 (line 5), modality 'img'" in train and "img3.png" in train
    assert train.endswith(f"all of them: {out / 'skipped.csv'}, written with the run")
    assert "img38.png" in test and test.endswith(f"all of them: {out / 'skipped.csv'}, written with the run")


def test_python_predict_warns_about_a_skipped_row_instead_of_returning_fewer_rows_silently(run, data):
    predictor, *_ = run
    with pytest.warns(UserWarning, match=r"(?s)1 unreadable or missing file\(s\) skipped.*img38\.png"):
        assert len(predictor.predict(data["test"])) == 8
    with predictor.quiet_skips(), warnings.catch_warnings():
        warnings.simplefilter("error")
        predictor.predict(data["test"])  # quiet: the caller reports eval_skipped itself
    assert len(predictor.eval_skipped) == 1


def test_the_run_lists_the_training_skips_when_a_test_set_is_evaluated(run):
    predictor, out, *_ = run
    listed = pd.read_csv(out / "skipped.csv")
    assert list(zip(listed["split"], listed["row"], listed["path"].map(lambda p: p.rsplit("/", 1)[-1]))) == [
        ("train", 3, "img3.png"), ("test", 2, "img38.png")]
    assert predictor.info["skipped_files"] == 1  # train and valid
    assert predictor.metrics["test"]["rows"] == 8


def test_a_later_evaluation_does_not_replace_the_fit_skips(run, data, tmp_path):
    predictor, out, *_ = run
    assert predictor.evaluate(data["valid"])["rows"] == 9 and predictor.eval_skipped.empty
    predictor.save(tmp_path / "again")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / "skipped.csv"), pd.read_csv(out / "skipped.csv"))
    loaded = MultimodalPredictor.load(out)
    loaded.evaluate(data["test"])
    assert len(loaded.eval_skipped) == 1
    loaded.save(tmp_path / "loaded")  # a loaded run keeps its fit's list too
    assert list(pd.read_csv(tmp_path / "loaded" / "skipped.csv")["split"]) == ["train", "test"]


def test_rows_split_off_for_validation_are_named_by_their_row_in_the_file(data, tmp_path):
    train = pd.read_csv(data["train"])
    train["image"] = [str(data["root"] / p) if isinstance(p, str) else p for p in train["image"]]
    assert train.loc[[5, 20], "image"].map(lambda p: isinstance(p, str)).all()
    for row in (5, 20):
        train.loc[row, "image"] = str(tmp_path / f"bad{row}.png")
        corrupt(tmp_path, f"bad{row}.png")
    train.to_csv(tmp_path / "train.csv", index=False)
    config = {**classification_config(epochs=1), "data": {"on_error": "skip"}}
    config["train"]["val_fraction"] = 0.3
    predictor = MultimodalPredictor.from_config(config).fit(tmp_path / "train.csv", out=tmp_path / "run")
    listed = pd.read_csv(tmp_path / "run" / "skipped.csv").sort_values("row")
    assert list(listed["row"]) == [3, 5, 20]  # img3.png: the fixture's
    # the holdout puts skipped rows in both splits, so a split-off validation row is named too, under "valid"
    assert set(listed["split"]) == {"train", "valid"}
    assert predictor.info["skipped_files"] == 3
    assert list(listed["where"]) == ["train.csv row 3 (line 5)", "train.csv row 5 (line 7)", "train.csv row 20 (line 22)"]
    assert list(listed["path"])[1:] == [str(tmp_path / "bad5.png"), str(tmp_path / "bad20.png")]
    assert predictor.info["train_rows"] + predictor.info["valid_rows"] == len(train) - 3


def test_cli_evaluate_names_the_skipped_files_and_writes_them(run, data):
    _, out, *_ = run
    result = invoke("evaluate", out, "--data", data["test"], "--json")
    assert result.exit_code == 0, result.output
    assert '"rows": 8' in result.stdout
    assert result.stderr.count("1 unreadable or missing file(s) skipped") == 1 and "img38.png" in result.stderr
    listed = pd.read_csv(out / "evaluation" / "skipped.csv")
    assert list(listed["row"]) == [2] and listed["path"].iloc[0].endswith("img38.png")
    assert list(pd.read_csv(out / "skipped.csv")["split"]) == ["train", "test"]  # the run's own list is untouched


def test_cli_predict_lists_the_skipped_rows_beside_the_predictions(run, data, tmp_path):
    _, out, *_ = run
    manifest = pd.read_csv(data["test"])
    manifest["image"] = [str(data["root"] / p) if isinstance(p, str) else p for p in manifest["image"]]
    bad = [2, 3, 4, 5, 6, 8]  # over three chunks of 4 rows
    for row in bad:
        manifest.loc[row, "image"] = str(tmp_path / f"bad{row}.png")
        corrupt(tmp_path, f"bad{row}.png")
    manifest.to_csv(tmp_path / "query.csv", index=False)
    preds = tmp_path / "preds.csv"
    result = invoke("predict", out, "--data", tmp_path / "query.csv", "--out", preds, "--chunk-rows", 4)
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(preds)["row"]) == [0, 1, 7]  # the gap is explicit: manifest row numbers
    listed = pd.read_csv(tmp_path / "preds.skipped.csv")
    assert list(listed["row"]) == bad and list(listed["path"]) == [str(tmp_path / f"bad{r}.png") for r in bad]
    assert listed["where"].iloc[-1].startswith("query.csv row 8")
    assert result.stderr.count("unreadable or missing file(s) skipped") == 1  # once for all chunks
    assert "6 unreadable or missing file(s) skipped" in result.stderr and "bad2.png" in result.stderr
    assert "... and 1 more" in result.stderr and "bad8.png" not in result.stderr
    assert "3 predictions written" in result.stdout


def test_a_row_with_no_modality_present_is_kept_without_a_prediction_and_listed_not_fatal_unless_on_error_raise(
        run, data, tmp_path):
    _, out, *_ = run
    manifest = pd.read_csv(data["test"])
    manifest["image"] = [str(data["root"] / p) if isinstance(p, str) else p for p in manifest["image"]]
    empty = [1, 5]  # in the first and second chunk of 4 rows
    manifest.loc[empty, ["image", "x1", "x2", "color"]] = None
    manifest.to_csv(tmp_path / "query.csv", index=False)
    result = invoke("predict", out, "--data", tmp_path / "query.csv", "--out", tmp_path / "p.csv", "--chunk-rows", 4,
                    "--on-error", "missing")
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(tmp_path / "p.csv")  # row 2: its unreadable image missing; rows 1 and 5: nothing to go on
    assert list(predicted["row"]) == list(range(9)) and predicted["prediction"].isna().tolist() == [
        row in empty for row in range(9)]
    assert predicted.loc[empty, "absent"].tolist() == ["img, tab"] * 2 and predicted.loc[2, "absent"] == "img"
    listed = pd.read_csv(tmp_path / "p.skipped.csv")
    assert list(listed["row"]) == [1, 2, 5] and listed["modality"].isna().tolist() == [True, False, True]
    assert listed["reason"][0] == "no modality present (every modality's cell is empty)"
    assert ("1 unreadable or missing file(s) read as missing; 2 row(s) with no modality present kept, with NaN "
            "predictions (data.on_error: missing)") in " ".join(result.stderr.split())
    assert "query.csv row 1 (line 3): no modality present" in result.stderr
    said = " ".join(result.stdout.split())
    assert said.startswith("9 rows written to") and "(2 without a prediction: no modality could be read; listed in" \
        in said and "p.skipped.csv)" in said
    result = invoke("evaluate", out, "--data", tmp_path / "query.csv", "--on-error", "skip", "--json")  # row 2 too
    assert result.exit_code == 0, result.output
    assert '"rows": 6' in result.stdout
    manifest.assign(image=None, x1=None, x2=None, color=None).to_csv(tmp_path / "blank.csv", index=False)  # all blank
    result = invoke("evaluate", out, "--data", tmp_path / "blank.csv", "--on-error", "skip")
    assert result.exit_code == 2 and f"each of its {len(manifest)} row(s) held no modality, skipped ({len(manifest)} " \
        "row(s) with no modality present; data.on_error: skip); first: blank.csv row 0 (line 2): no modality present" \
        in " ".join(result.stderr.split())
    result = invoke("evaluate", out, "--data", tmp_path / "query.csv", "--on-error", "raise")
    assert result.exit_code == 2
    assert "query.csv: no modality present in rows 1 (line 3), 5 (line 7) (data.on_error: skip or missing" in \
        " ".join(result.stderr.split())


def test_on_error_given_on_the_command_line_replaces_the_runs_for_this_call(run, data, tmp_path):
    _, out, *_ = run  # trained with data.on_error: skip
    result = invoke("evaluate", out, "--data", data["test"], "--on-error", "raise")
    assert result.exit_code == 2 and "img38.png" in result.stderr and "Cannot decode" in result.stderr
    assert "hint: --on-error skip leaves out the rows" in result.stderr
    result = invoke("predict", out, "--data", data["test"], "--out", tmp_path / "p.csv", "--on-error", "missing")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == 9, "the row keeps its prediction, its image counted as missing"
    assert "their modality counts as missing" in result.stderr
    result = invoke("explain", out, "--data", data["test"], "--on-error", "ignore")
    assert result.exit_code == 2 and "--on-error: one of raise, skip, missing; got 'ignore'" in result.stderr


def test_explain_reports_the_rows_it_skipped_in_python_and_on_the_command_line(run, data, tmp_path):
    predictor, out, *_ = run
    with pytest.warns(UserWarning, match=r"(?s)1 unreadable or missing file\(s\) skipped.*img38\.png"):
        explanation = predictor.explain(data["test"], samples=0)
    assert len(explanation.values) == 8 and 2 not in explanation.values.index
    assert list(predictor.eval_skipped["row"]) == [2]
    result = invoke("explain", out, "--data", data["test"], "--samples", 0, "--out", tmp_path / "ex")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("unreadable or missing file(s) skipped") == 1 and "img38.png" in result.stderr
    assert list(pd.read_csv(tmp_path / "ex" / "skipped.csv")["row"]) == [2]


def test_skipped_table_cells_are_counted_as_values_not_files():
    from polymodal.data.skipped import Skipped, describe_skipped, skipped_frame

    skipped = skipped_frame([Skipped("image", 0, "row 0", "a.png", "file not found", 0),
                             Skipped("labs", 1, "row 1", None, "column 'temp' must be numeric; got 'x'", 1),
                             Skipped("labs", 2, "row 2", None, "column 'crp' must be numeric; got 'y'", 2)])
    text = describe_skipped(skipped, "missing")
    assert text.startswith("1 unreadable or missing file(s) and 2 unreadable value(s) read as missing "
                           "(data.on_error: missing); their modality counts as missing in those rows")
    assert "row 1, modality 'labs': column 'temp' must be numeric; got 'x'" in text
    rows = describe_skipped(skipped_frame([Skipped("", 4, "row 4", None, "no modality present", 4)]), "skip")
    assert rows == "1 row(s) with no modality present skipped (data.on_error: skip):\n  row 4: no modality present"
    only_cells = describe_skipped(skipped.iloc[1:], "skip")
    assert only_cells.startswith("2 unreadable value(s) skipped (data.on_error: skip); rows with one are left out")
    assert describe_skipped(skipped.iloc[1:], "missing").startswith(
        "2 unreadable value(s) read as missing (data.on_error: missing); a value reads as missing in its cell")


def test_the_count_says_what_on_error_did_skipped_or_read_as_missing():
    """Under ``missing`` nothing is skipped but a row left with no modality: the count says which
    files and values were read as missing (the train command repeats it after the epochs)."""
    from polymodal.data.skipped import Skipped, count_skipped, skipped_frame

    cells = [Skipped("labs", i, f"row {i}", None, "column 'crp' must be numeric; got '>200'", i) for i in range(3)]
    file = Skipped("image", 5, "row 5", "a.png", "file not found", 5)
    empty = Skipped("", 6, "row 6", None, "no modality present", 6)
    assert count_skipped(skipped_frame(cells), "missing") == "3 unreadable value(s) read as missing"
    assert count_skipped(skipped_frame(cells), "skip") == "3 unreadable value(s) skipped"
    assert count_skipped(skipped_frame([*cells, file, empty]), "missing") == (
        "1 unreadable or missing file(s) and 3 unreadable value(s) read as missing; "
        "1 row(s) with no modality present left out")
    assert count_skipped(skipped_frame([empty]), "missing", emptied="predicted, flagged") == (
        "1 row(s) with no modality present predicted, flagged")
    assert count_skipped(skipped_frame([file, empty]), "skip") == (
        "1 unreadable or missing file(s) and 1 row(s) with no modality present skipped")
