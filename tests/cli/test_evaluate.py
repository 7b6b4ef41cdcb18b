"""``polymodal evaluate --missing / --robustness`` and ``polymodal explain``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
from helpers_cli import assert_user_error, fitted_run, invoke
from helpers_models import classification_config, unit_targets, unit_targets_config

from polymodal import MultimodalPredictor


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fitted_run(tmp_path_factory, classification_config(modality_dropout=0.2), 60, "clf")


def test_missing_and_robustness_tables_in_json_and_files(run):
    folder, paths = run
    result = invoke("evaluate", folder, "--data", paths["test"], "--missing", "--robustness",
                    "--corruption", "img:blur", "--corruption", "tab:missing", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == report["sweep_rows"] == 12 and "accuracy" in report
    assert [r["modalities"] for r in report["missing"]] == ["img+tab", "img", "tab"]
    table = report["robustness"]["table"]
    assert [(r["modality"], r["corruption"]) for r in table] == [("img", "blur"), ("tab", "missing")]
    assert all(r["s0"] == report["accuracy"] for r in table)
    assert {"s1", "s5", "relative_robustness"} <= set(table[0])
    out = folder / "evaluation"
    assert len(pd.read_csv(out / "missing.csv")) == 3
    assert len(pd.read_csv(out / "robustness_curves.csv")) == 12
    assert (out / "robustness.png").stat().st_size > 1000


def test_by_prints_a_table_per_value_and_puts_them_in_the_json(run, tmp_path):
    folder, paths = run
    test = pd.read_csv(paths["test"])
    test["site"] = ["north" if i < 5 else "south" if i < 11 else "lone" for i in range(len(test))]
    test.to_csv(paths["test"].parent / "test_sites.csv", index=False)
    result = invoke("evaluate", folder, "--data", paths["test"].parent / "test_sites.csv", "--by", "site", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {k: v["rows"] for k, v in report["by"]["site"].items()} == {"north": 5, "south": 6, "lone": 1}
    note = report["by"]["site"]["lone"]["note"]  # one row, one class: no AUROC, and why
    printed = invoke("evaluate", folder, "--data", paths["test"].parent / "test_sites.csv", "--by", "site")
    assert printed.exit_code == 0, printed.output
    assert "metrics by site" in printed.stdout and "north" in printed.stdout and "south" in printed.stdout
    assert f"site lone: {note}" in " ".join(printed.stdout.split()), "the reason is printed under the table too"
    assert_user_error(invoke("evaluate", folder, "--data", paths["test"], "--by", "site"),
                      "column 'site' (to split the metrics by) is not in test.csv")


def test_by_shows_values_that_differ_only_by_surrounding_whitespace_quoted(run):
    """'sex' is no category of the model: 'F' and 'F ' are two groups, which a table (trimming
    its cells) would print both as F."""
    folder, paths = run
    test = pd.read_csv(paths["test"])
    test["sex"] = [["F", "F ", "M"][i % 3] for i in range(len(test))]
    test.to_csv(paths["test"].parent / "test_sex.csv", index=False)
    report = json.loads(invoke("evaluate", folder, "--data", paths["test"].parent / "test_sex.csv", "--by", "sex",
                               "--json").stdout)
    assert set(report["by"]["sex"]) == {"F", "F ", "M"}  # the values themselves
    printed = invoke("evaluate", folder, "--data", paths["test"].parent / "test_sex.csv", "--by", "sex")
    assert printed.exit_code == 0, printed.output
    rows = [line.split("│")[1].strip() for line in printed.stdout.split("metrics by sex")[1].splitlines()
            if line.count("│") > 2]
    assert rows == ["'F'", "'F '", "M"]


@pytest.fixture(scope="module")
def several(tmp_path_factory):
    """A regression of load (about 1 hp) and rpm (about 1750) saved in a folder; its manifests' folder."""
    root = tmp_path_factory.mktemp("several")
    for name, n, seed in (("train", 120, 0), ("valid", 40, 1), ("test", 40, 2)):
        unit_targets(n, seed).to_csv(root / f"{name}.csv", index=False)
    MultimodalPredictor.from_config(unit_targets_config()).fit(root / "train.csv", root / "valid.csv", out=root / "run")
    return root / "run", root


def test_several_targets_get_their_own_columns_in_the_missing_and_by_tables_and_the_averages_a_note(several):
    from polymodal.metrics.tasks import MIXED_UNITS

    folder, root = several
    result = invoke("evaluate", folder, "--data", root / "test.csv", "--missing", "--by", "site")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    headers = [line for line in lines if line.startswith(("┃ modalities", "┃ site"))]
    assert len(headers) == 2 and all("rmse_per_target.rpm" in h and "mae_per_target.load" in h for h in headers)
    text = " ".join(result.stdout.split())
    assert f"note: {MIXED_UNITS}" in text  # under the metrics
    assert f"every site: {MIXED_UNITS}" in text  # under the table by site
    assert text.count(MIXED_UNITS) == 3, "and under the subsets' table"
    predictor = MultimodalPredictor.load(folder)
    table = pd.read_csv(folder / "evaluation" / "missing.csv").set_index("modalities")
    for subset in ("a", "b"):
        alone = predictor.evaluate(root / "test.csv", modalities=[subset])
        for metric in ("mae", "rmse", "r2"):
            for target in ("load", "rpm"):
                assert table.loc[subset, f"{metric}_per_target.{target}"] == pytest.approx(
                    alone[f"{metric}_per_target"][target], rel=1e-5)
    assert table.loc["b", "rmse_per_target.rpm"] < table.loc["a", "rmse_per_target.rpm"], "rpm follows b"
    report = json.loads(invoke("evaluate", folder, "--data", root / "test.csv", "--by", "site", "--json").stdout)
    assert set(report["by"]["site"]["north"]["rmse_per_target"]) == {"load", "rpm"}  # the JSON keeps its shape


def test_tables_are_printed_and_saved_where_asked_with_a_reference(run, tmp_path):
    folder, paths = run
    result = invoke("evaluate", folder, "--data", paths["test"], "--missing", "--robustness", "--corruption",
                    "img:contrast", "--reference", folder, "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    assert "modality subsets" in result.stdout and "by corruption severity" in result.stdout
    summary = pd.read_csv(tmp_path / "eval" / "robustness_summary.csv")
    assert summary["effective_robustness"].tolist() == pytest.approx([0.0])  # a run against itself


def test_the_summary_file_has_the_api_summarys_columns(run, tmp_path):
    """robustness_summary.csv once lacked ``clean`` and ``worst``, which ``.summary`` and the README give."""
    from polymodal.evaluation.robustness import robustness_sweep

    folder, paths = run
    result = invoke("evaluate", folder, "--data", paths["test"], "--corruption", "tab:swap", "--reference", folder,
                    "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    written = pd.read_csv(tmp_path / "eval" / "robustness_summary.csv")
    predictor = MultimodalPredictor.load(folder)
    api = robustness_sweep(predictor, paths["test"], "tab:swap", reference=MultimodalPredictor.load(folder)).summary
    assert list(written.columns) == ["modality", "corruption", *(f"s{k}" for k in range(6)), *api.columns[2:]]
    assert {"clean", "worst", "relative_robustness", "effective_robustness", "reference_clean",
            "reference_relative_robustness"} <= set(written.columns)
    pd.testing.assert_frame_equal(written[api.columns], api, check_dtype=False)
    assert (written["clean"] == written["s0"]).all()
    assert (written["worst"] == written[[f"s{k}" for k in range(6)]].min(axis=1)).all()


def test_a_reference_that_cannot_score_the_rows_is_refused_before_anything_is_evaluated(run, tmp_path_factory,
                                                                                        monkeypatch):
    folder, paths = run
    kept = {}
    for split in ("train", "valid"):
        frame = pd.read_csv(paths[split])
        kept[split] = paths[split].parent / f"{split}_two_classes.csv"
        frame[frame["label"] != frame["label"].iloc[2]].to_csv(kept[split], index=False)
    reference = tmp_path_factory.mktemp("runs") / "two_classes"
    MultimodalPredictor.from_config({**classification_config(), "report": {"rows": 0}}).fit(
        kept["train"], kept["valid"], out=reference)
    evaluated = []
    real = MultimodalPredictor.evaluate
    monkeypatch.setattr(MultimodalPredictor, "evaluate",
                        lambda self, *a, **k: evaluated.append(self.run_dir) or real(self, *a, **k))
    result = invoke("evaluate", folder, "--data", paths["test"], "--missing", "--robustness", "--corruption",
                    "tab:swap", "--reference", reference, "--out", tmp_path_factory.mktemp("eval"))
    assert_user_error(result, f"the reference run {reference} cannot score the evaluated rows: test.csv row",
                      "was not seen in training")
    assert evaluated == [], "the run was evaluated before its reference was checked"
    other = invoke("evaluate", folder, "--data", paths["test"], "--corruption", "img:blur", "--reference",
                   fitted_run(tmp_path_factory, {**classification_config(), "modalities": {
                       "tab": classification_config()["modalities"]["tab"]}}, 30, "tab_only")[0])
    assert_user_error(other, "the reference run", "must have modality 'img' of kind 'image' (it is swept); it has "
                                                  "{'tab': 'tabular'}")
    assert evaluated == []


def test_a_corruption_alone_asks_for_its_sweep(run):
    folder, paths = run
    result = invoke("evaluate", folder, "--data", paths["test"], "--corruption", "img:blur", "--json")
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)["robustness"]["table"]
    assert [(r["modality"], r["corruption"]) for r in table] == [("img", "blur")]


def test_unknown_corruption_is_a_user_error(run):
    folder, paths = run
    result = invoke("evaluate", folder, "--data", paths["test"], "--robustness", "--corruption", "img:fog")
    assert result.exit_code == 2, result.output
    assert "'fog'" in result.stderr and "gaussian_noise" in result.stderr and "Traceback" not in result.output


def test_explain_writes_the_page(run, tmp_path):
    folder, paths = run
    result = invoke("explain", folder, "--data", paths["test"], "--samples", "1", "--out", tmp_path / "why")
    assert result.exit_code == 0, result.output
    assert "modality importance" in result.stdout and "explain.html" in result.stdout
    page = (tmp_path / "why" / "explain.html").read_text(encoding="utf-8")
    assert page.count("<img") >= 3  # importance, the image heat-map, the table's bars
    assert len(pd.read_csv(tmp_path / "why" / "shapley.csv")) == 12


def test_explain_of_a_model_never_trained_with_a_modality_hidden_says_so(run, tmp_path_factory):
    from helpers_models import make_dataset, write_splits

    root = tmp_path_factory.mktemp("whole_rows")
    frame = make_dataset(root, n=40)
    paths = write_splits(root, frame[frame["image"] != ""].reset_index(drop=True))  # every row whole
    folder = root / "run"
    MultimodalPredictor.from_config({**classification_config(epochs=1), "report": {"rows": 0}}).fit(
        paths["train"], paths["valid"], out=folder)
    result = invoke("explain", folder, "--data", paths["test"], "--samples", "0")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    assert ("note: this model never trained on rows with a modality hidden (train.modality_dropout is 0 for every "
            "modality and loss.subset_weight is 0)") in said
    assert "train with train.modality_dropout (e.g. 0.3) or loss.subset_weight (e.g. 1.0)" in said
    trained = invoke("explain", run[0], "--data", run[1]["test"], "--samples", "0", "--out",
                     tmp_path_factory.mktemp("why"))
    assert trained.exit_code == 0 and "never trained on rows with a modality hidden" not in trained.stdout


def test_a_modality_empty_in_every_row_is_warned_once_for_the_evaluation_and_its_sweep(run, tmp_path):
    folder, paths = run
    frame = pd.read_csv(paths["test"])
    frame["image"] = ""
    data = tmp_path / "no_images.csv"
    frame.to_csv(data, index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning recorded, repeats too
        result = invoke("evaluate", folder, "--data", data, "--missing")
    assert result.exit_code == 0, result.output
    assert sum("has no value in any row" in str(w.message) for w in caught) == 1


def test_missing_on_a_one_modality_model_says_there_is_no_other_subset(run, tmp_path_factory):
    config = classification_config(epochs=1)
    config["modalities"] = {"tab": config["modalities"]["tab"]}
    folder, paths = fitted_run(tmp_path_factory, config, 30, "one")
    result = invoke("evaluate", folder, "--data", paths["test"], "--missing")
    assert result.exit_code == 0, result.output
    assert "a model of one modality has no other subset: the row is the metrics above" in " ".join(result.output.split())
    two = invoke("evaluate", run[0], "--data", run[1]["test"], "--missing")
    assert two.exit_code == 0 and "no other subset" not in two.output


def test_a_sampled_sweep_says_so(run):
    folder, paths = run
    result = invoke("evaluate", folder, "--data", paths["test"], "--missing", "--rows", "5")
    assert result.exit_code == 0, result.output
    assert "on a sample of 5 of 12 rows (--rows)" in " ".join(result.output.split())


@pytest.mark.parametrize("options, messages", [
    (["--rows", "3"], ["--rows applies only with --missing or --robustness"]),
    (["--seed", "5"], ["--seed applies only with --missing or --robustness"]),
    (["--missing", "--seed", "5"], ["--seed applies with --missing only together with --rows"]),
    (["--reference", "{tmp}/nope"], ["--reference applies only with --robustness or --corruption"]),
    (["--missing", "--reference", "{run}"], ["--reference applies only with --robustness or --corruption"]),
    (["--query", "img"], ["--query applies only with --retrieval"]),
    (["--gallery", "tab"], ["--gallery applies only with --retrieval"]),
    (["--hits", "pair"], ["--hits applies only with --retrieval"]),
    (["--labels", "label"], ["--labels applies only with --retrieval"]),
    (["--cca-train", "{tmp}/nope.csv"], ["--cca-train applies only with --retrieval"]),
    (["--no-cca"], ["--no-cca applies only with --retrieval"]),
    (["--retrieval", "--by", "label"], ["--by does not apply with --retrieval"]),
    (["--cca-features", "input"], ["--cca-features applies only with --retrieval"]),
    (["--rows", "3", "--query", "img"], ["--query applies only with --retrieval",
                                         "--rows applies only with --missing or --robustness"]),
])
def test_an_option_of_another_mode_is_refused_before_the_work(run, tmp_path, monkeypatch, options, messages):
    """These were ignored without a word (a --reference that does not exist included): the plain
    metrics were printed as if the option had been honoured."""
    folder, paths = run
    loaded = []
    real = MultimodalPredictor.load.__func__
    monkeypatch.setattr(MultimodalPredictor, "load", classmethod(lambda cls, *a, **k: loaded.append(a) or real(cls, *a, **k)))
    args = [o.format(tmp=tmp_path, run=folder) for o in options]
    assert_user_error(invoke("evaluate", folder, "--data", paths["test"], *args), *messages)
    assert loaded == []  # refused before the run was loaded, let alone evaluated


def test_out_and_json_still_apply_to_the_plain_evaluation(run, tmp_path):
    folder, paths = run
    result = invoke("evaluate", folder, "--data", paths["test"], "--out", tmp_path / "eval", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 12


@pytest.mark.parametrize("missing", [False, True])
@pytest.mark.parametrize("inside", [False, True])
def test_an_out_in_a_file_is_refused_before_the_evaluation(run, tmp_path, monkeypatch, missing, inside):
    """``--missing --out FILE`` failed with "Not a directory: FILE/skipped.csv" once the whole
    evaluation had run."""
    folder, paths = run
    taken = tmp_path / "base.yaml"
    taken.write_text("mine")
    evaluated = []
    monkeypatch.setattr(MultimodalPredictor, "evaluate", lambda self, *a, **k: evaluated.append(a))
    sweep = ["--missing", "--rows", "5"] if missing else []
    out = taken / "exp" if inside else taken
    assert_user_error(invoke("evaluate", folder, "--data", paths["test"], *sweep, "--out", out),
                      f"--out: {taken} is a file, not a folder")
    assert evaluated == [] and taken.read_text() == "mine"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no file can be made")
def test_an_out_that_cannot_be_written_is_refused_before_the_evaluation(run, monkeypatch):
    folder, paths = run
    evaluated = []
    monkeypatch.setattr(MultimodalPredictor, "evaluate", lambda self, *a, **k: evaluated.append(a))
    assert_user_error(invoke("evaluate", folder, "--data", paths["test"], "--missing", "--out", "/proc/eval"),
                      "--out: the folder /proc cannot be written (")
    assert evaluated == []


def test_a_note_in_words_is_printed_below_the_metrics_table_not_in_it():
    from polymodal.cli.common import console, print_metrics

    note = "AUPRC is undefined: the evaluated rows hold no anomaly, so every row would count as a false positive"
    with console.capture() as captured:
        print_metrics({"auroc": 0.91, "per_label_auroc": {"fault": 0.95}, "note": note}, "metrics")
    lines = captured.get().splitlines()
    table = [line for line in lines if "auroc" in line]
    assert len(table) == 2 and all(len(line) < 60 for line in table)  # not stretched to the note's width
    below = " ".join(lines[lines.index(table[-1]) + 1:])
    assert "note: AUPRC is undefined" in below and "note" not in " ".join(table)


def test_a_metric_whose_name_says_little_is_explained_below_the_table():
    from polymodal.cli.common import console, print_metrics

    with console.capture() as captured:
        print_metrics({"accuracy": 0.9, "ece": 0.05}, "metrics")
    said = captured.get()
    assert said.rstrip().endswith("averaged over probability bins (0: calibrated)")
    assert "ece: expected calibration error" in said.splitlines()[-1]
    with console.capture() as captured:
        print_metrics({"rmse": 0.3}, "metrics")
    assert "calibration" not in captured.get()
    with console.capture() as captured:  # a regression whose further task classifies
        print_metrics({"rmse": 0.3, "species/accuracy": 0.8, "species/ece": 0.1}, "metrics")
    assert "ece: expected calibration error" in captured.get()


def test_target_and_normal_are_refused_for_a_run_that_is_no_anomaly_detector(run, monkeypatch):
    folder, paths = run
    evaluated = []
    monkeypatch.setattr(MultimodalPredictor, "evaluate", lambda self, *a, **k: evaluated.append(a))
    assert_user_error(invoke("evaluate", folder, "--data", paths["test"], "--target", "label", "--normal", "a"),
                      "--target applies only to an anomaly run; a 'classification' run is evaluated against its "
                      "config's target ['label']", "--normal applies only to an anomaly run")
    assert evaluated == []


def _run_copy(run, tmp_path) -> Path:
    """A copy of the module's run folder, to break without touching the others' run."""
    import shutil

    folder, _ = run
    copied = tmp_path / "run"
    shutil.copytree(folder, copied)
    shutil.rmtree(copied / "evaluation", ignore_errors=True)  # an earlier test's evaluation
    return copied


def test_a_run_whose_evaluation_folder_is_a_file_still_prints_the_metrics(run, tmp_path):
    """It ended with "error: Not a directory: RUN/evaluation/skipped.csv" after the whole
    evaluation, and no metrics: removing a stale list, which cannot be there, failed."""
    _, paths = run
    folder = _run_copy(run, tmp_path)
    (folder / "evaluation").write_text("mine")
    result = invoke("evaluate", folder, "--data", paths["test"], "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 12
    assert result.stderr == ""  # nothing skipped, no stale list: nothing to say
    assert (folder / "evaluation").read_text() == "mine"


def test_a_list_of_skipped_files_that_cannot_be_written_is_a_warning_after_the_metrics(run, tmp_path):
    _, paths = run
    folder = _run_copy(run, tmp_path)
    (folder / "evaluation").write_text("mine")
    test = pd.read_csv(paths["test"])
    test.loc[0, "image"] = str(tmp_path / "gone.png")  # skipped under --on-error skip
    data = Path(paths["test"]).parent / "one_gone.csv"  # beside the images its relative paths name
    test.to_csv(data, index=False)
    result = invoke("evaluate", folder, "--data", data, "--on-error", "skip", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 11  # the metrics, of the rows left
    listed = folder / "evaluation" / "skipped.csv"
    said = " ".join(result.stderr.split())
    assert "gone.png" in said and f"full list not written: {listed}: {folder / 'evaluation'} is a file, not a folder; give --out FOLDER" in said
    assert not any(line.startswith("error:") for line in result.stderr.splitlines())
    assert (folder / "evaluation").read_text() == "mine"
    kept = invoke("evaluate", folder, "--data", data, "--on-error", "skip", "--out", tmp_path / "eval")
    assert kept.exit_code == 0, kept.output
    assert pd.read_csv(tmp_path / "eval" / "skipped.csv")["row"].tolist() == [0]
    assert "metrics on one_gone.csv" in kept.stdout
    assert f"full list: {tmp_path / 'eval' / 'skipped.csv'}" in " ".join(kept.stderr.split())
