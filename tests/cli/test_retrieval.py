"""The shared-space commands: ``embed``, ``index build``, ``retrieve``, ``zero-shot`` and
``evaluate --retrieval`` (with the linear-CCA baseline), run in-process with typer's CliRunner."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from helpers_cli import assert_user_error, invoke
from typer.testing import CliRunner

from polymodal import MultimodalPredictor
from polymodal.cli import app

runner = CliRunner()
COLORS = ["red", "green", "blue"]


def rows(n: int, seed: int) -> pd.DataFrame:
    """A number pair and a caption per row; all three reveal the colour."""
    rng = np.random.default_rng(seed)
    k = np.arange(n) % 3
    return pd.DataFrame({"x0": 2.0 * k + rng.normal(0, 0.3, n), "x1": rng.normal(size=n),
                         "caption": [f"a {COLORS[i]} one" for i in k], "label": [COLORS[i] for i in k],
                         "name": [f"item{i}" for i in range(n)]})


CONFIG = {
    "task": "retrieval", "target": "label",
    "modalities": {"x": {"kind": "tabular", "columns": ["x0", "x1"], "encoder": {"dim": 16, "hidden": [16]}},
                   "caption": {"kind": "text", "column": "caption", "encoder": {"name": "embedding_bag", "dim": 16}}},
    "align": {"objective": "contrastive", "dim": 8, "positives": "label"},
    "train": {"epochs": 10, "batch_size": 32, "lr": 1e-2, "seed": 0, "progress": False, "num_workers": 0,
              "early_stopping": None},
    "report": {"rows": 0},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cli_retrieval")
    paths = {name: root / f"{name}.csv" for name in ("train", "valid", "test")}
    for path, (n, seed) in zip(paths.values(), [(120, 0), (30, 1), (30, 2)]):
        rows(n, seed).to_csv(path, index=False)
    run = root / "run"
    MultimodalPredictor.from_config(copy.deepcopy(CONFIG)).fit(paths["train"], paths["valid"], out=run)
    return {"root": root, "run": run, **paths}


def test_embed_writes_one_normalised_vector_per_row(setup) -> None:
    out = setup["root"] / "emb.parquet"
    result = invoke("embed", setup["run"], "--data", setup["test"], "--modality", "x", "--out", out)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["row"] + [f"e{i}" for i in range(8)] and frame["row"].tolist() == list(range(30))
    assert np.allclose(np.linalg.norm(frame.drop(columns="row").to_numpy(), axis=1), 1.0, atol=1e-5)


def test_index_build_then_retrieve_from_the_other_modality(setup) -> None:
    index = setup["root"] / "idx"
    result = invoke("index", "build", setup["run"], "--data", setup["test"], "--modality", "caption", "--out", index,
                    "--id-column", "name")
    assert result.exit_code == 0, result.output
    assert "indexed 30 'caption' items (8-d)" in result.output
    hits_path = setup["root"] / "hits.csv"
    result = invoke("retrieve", setup["run"], "--index", index, "--query", setup["test"], "--modality", "x",
                    "-k", "5", "--out", hits_path)
    assert result.exit_code == 0, result.output
    hits = pd.read_csv(hits_path)
    assert list(hits.columns) == ["query", "rank", "id", "score"] and len(hits) == 150
    test = pd.read_csv(setup["test"]).set_index("name")
    top = hits[hits["rank"] == 1]
    same_colour = test.loc[top["id"], "label"].to_numpy() == pd.read_csv(setup["test"])["label"].to_numpy()[top["query"]]
    assert same_colour.mean() > 0.9
    shown = runner.invoke(app, [str(a) for a in ("retrieve", setup["run"], "--index", index, "--query", setup["test"],
                                                 "--modality", "x", "-k", "2")], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "the first 10 of 30 queries; --out FILE writes every hit" in shown.output
    printed = [line.split("│")[1].strip() for line in shown.output.splitlines() if line.count("│") >= 4]
    assert sorted({int(q) for q in printed if q.isdigit()}) == list(range(10))  # those queries' hits only


def test_kept_columns_stand_beside_the_hits_the_gallerys_from_the_index_the_queries_as_query_columns(setup, tmp_path):
    index = tmp_path / "idx"
    gallery = rows(30, 2).assign(label=lambda f: f["label"].where(f.index != 4), code=[f"00{i}" for i in range(30)])
    gallery.to_csv(setup["root"] / "gallery.csv", index=False)
    built = invoke("index", "build", setup["run"], "--data", setup["root"] / "gallery.csv", "--modality", "caption",
                   "--out", index, "--keep", "label", "--keep", "code")
    assert built.exit_code == 0, built.output
    out = tmp_path / "hits.parquet"
    result = invoke("retrieve", setup["run"], "--index", index, "--query", setup["test"], "--modality", "x", "-k", "3",
                    "--keep", "label", "--out", out)
    assert result.exit_code == 0, result.output
    hits = pd.read_parquet(out)
    assert list(hits.columns) == ["query", "query_label", "rank", "id", "label", "code", "score"]
    queries = pd.read_csv(setup["test"])
    assert (hits["query_label"] == queries["label"].to_numpy()[hits["query"]]).all()
    assert (hits["code"] == [f"00{i}" for i in hits["id"]]).all()  # read as text: '004' stays '004'
    expected = gallery["label"].to_numpy()[hits["id"]]
    assert hits["label"].isna().tolist() == pd.isna(expected).tolist()  # the empty cell stays empty
    assert (hits["label"].dropna() == pd.Series(expected).dropna().to_numpy()).all()
    assert (hits[hits["rank"] == 1]["label"] == hits[hits["rank"] == 1]["query_label"]).mean() > 0.8
    for args, fragment in [(("index", "build", setup["run"], "--data", setup["test"], "--modality", "caption", "--out",
                             tmp_path / "other", "--keep", "lable"), "column 'lable' (kept beside the hits) is not in"),
                           (("index", "build", setup["run"], "--data", setup["test"], "--modality", "caption", "--out",
                             tmp_path / "other", "--keep", "score"), "kept columns ['score'] would stand beside the hit"),
                           (("retrieve", setup["run"], "--index", index, "--query", setup["test"], "--modality", "x",
                             "--keep", "nosuch"), "column 'nosuch' (kept beside the hits) is not in")]:
        assert_user_error(invoke(*args), fragment)
    assert not (tmp_path / "other").exists()


def test_retrieve_names_queries_by_an_id_column(setup, tmp_path) -> None:
    index = tmp_path / "idx"
    assert invoke("index", "build", setup["run"], "--data", setup["test"], "--modality", "caption", "--out",
                  index).exit_code == 0
    out = tmp_path / "named.csv"
    result = invoke("retrieve", setup["run"], "--index", index, "--query", setup["test"], "--modality", "x", "-k", "2",
                    "--id-column", "name", "--out", out)
    assert result.exit_code == 0, result.output
    hits = pd.read_csv(out)
    assert hits["query"].tolist() == [f"item{i}" for i in range(30) for _ in range(2)]
    assert hits["id"].between(0, 29).all()  # the index names its items by row: it was built without --id-column
    assert_user_error(invoke("retrieve", setup["run"], "--index", index, "--query", setup["test"], "--modality", "x",
                             "--id-column", "nosuch"),
                      "id column 'nosuch' is not in", "(columns: ['x0', 'x1', 'caption', 'label', 'name'])")


def test_evaluate_retrieval_reports_both_directions_beside_linear_cca(setup) -> None:
    """Both encoders were trained by the run: asked for on their 'encoder' features, every
    baseline row says so (the table's features column, --json's 'features')."""
    result = invoke("evaluate", setup["run"], "--data", setup["test"], "--retrieval", "--cca-train", setup["train"],
                    "--cca-features", "encoder", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"model", "linear_cca"}
    assert set(report["model"]) == {"x->caption", "caption->x"}
    scores = report["model"]["x->caption"]
    assert scores["hits"] == "label" and scores["map"] > 0.9
    assert {"recall@1", "recall@5", "recall@10", "map", "median_rank"} <= set(report["linear_cca"]["caption->x"])
    assert {s["features"] for s in report["linear_cca"].values()} == {"encoder (trained by this run)"}
    table = runner.invoke(app, [str(a) for a in ("evaluate", setup["run"], "--data", setup["test"], "--retrieval",
                                                 "--hits", "pair", "--cca-features", "encoder")],
                          env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "R@10" in table.output and "mAP" in table.output
    assert "features" in table.output and "encoder (trained by this run)" in table.output
    assert "shared space" in table.output  # the model's rows


def test_by_default_the_baseline_leaves_out_encoders_the_run_trained(setup) -> None:
    """The default (--cca-features auto) compares a trained encoder's modality on its inputs; the
    caption's are token ids, so no direction gets a baseline, and the warning says why and what to
    give instead."""
    with pytest.warns(UserWarning) as caught:
        result = invoke("evaluate", setup["run"], "--data", setup["test"], "--retrieval", "--json")
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"model"}
    notes = [str(w.message) for w in caught if "linear-CCA" in str(w.message)]
    assert len(notes) == 1 and "an encoder the run trained is compared on its 'input' features" in notes[0]
    assert "--cca-features encoder" in notes[0] and "not an independent baseline" in notes[0]


def test_the_cca_baseline_is_fitted_on_the_runs_training_manifest_by_default(setup, tmp_path, monkeypatch) -> None:
    from polymodal.retrieval import search

    fitted_on = []
    real = search.cca_baseline
    monkeypatch.setattr(search, "cca_baseline", lambda p, train, *a, **k: fitted_on.append(train) or real(p, train, *a, **k))
    args = ("evaluate", setup["run"], "--data", setup["test"], "--retrieval", "--json")
    explicit = json.loads(invoke(*args, "--cca-train", setup["train"]).stdout)
    default = invoke(*args)
    assert default.exit_code == 0, default.output
    assert json.loads(default.stdout) == explicit and fitted_on == [setup["train"], setup["train"].resolve()]
    other = tmp_path / "other.csv"
    rows(60, 7).to_csv(other, index=False)
    assert invoke(*args, "--cca-train", other).exit_code == 0 and fitted_on[-1] == other
    assert set(json.loads(invoke(*args, "--no-cca").stdout)) == {"model"} and len(fitted_on) == 3
    contradiction = invoke(*args, "--no-cca", "--cca-train", other)
    assert contradiction.exit_code == 2 and "--no-cca turns off" in contradiction.output


def test_without_a_recorded_training_manifest_the_baseline_is_skipped_with_a_warning(setup, tmp_path) -> None:
    run = tmp_path / "run"
    frame = pd.read_csv(setup["train"])
    MultimodalPredictor.from_config({**copy.deepcopy(CONFIG), "train": {**CONFIG["train"], "epochs": 1}}).fit(
        frame, frame.iloc[:30], out=run)
    result = invoke("evaluate", run, "--data", setup["test"], "--retrieval", "--json")
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"model"}
    assert "no linear-CCA baseline: the run recorded no training manifest" in " ".join(result.stderr.split())


def test_zero_shot_command(setup) -> None:
    out = setup["root"] / "zs.csv"
    result = invoke("zero-shot", setup["run"], "--data", setup["test"], "--modality", "x", "--classes", "red,green,blue",
                    "--template", "a {} one", "--out", out)
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(out)
    assert (predicted["prediction"].to_numpy() == pd.read_csv(setup["test"])["label"].to_numpy()).mean() > 0.9
    accuracy = (predicted["prediction"].to_numpy() == pd.read_csv(setup["test"])["label"].to_numpy()).mean()
    assert f"against 'label' (30 labelled rows, 3 classes): accuracy {accuracy:.4f}" in " ".join(result.output.split())


def test_zero_shot_scores_against_a_labels_column_spelled_as_the_classes(setup, tmp_path) -> None:
    data = tmp_path / "coded.csv"
    frame = pd.read_csv(setup["test"])
    frame.assign(label=frame["label"].map({"red": 0, "green": 1, "blue": 2}), colour=frame["label"]).to_csv(data, index=False)
    options = ["zero-shot", setup["run"], "--data", data, "--modality", "x", "--classes", "red,green,blue",
               "--template", "a {} one"]
    coded = invoke(*options)  # the target holds codes, not class names: not scored, and the note says why
    assert coded.exit_code == 0, coded.output
    assert "not scored: the target 'label': '0', '1', '2' are not among the classes" in " ".join(coded.output.split())
    assert "accuracy" not in coded.output.replace("balanced accuracy", "")
    named = invoke(*options, "--labels", "colour")
    assert named.exit_code == 0, named.output
    assert "against 'colour' (30 labelled rows, 3 classes): accuracy" in " ".join(named.output.split())
    assert_user_error(invoke(*options, "--labels", "label"), "--labels 'label': '0', '1', '2' are not among the classes")
    assert_user_error(invoke(*options, "--labels", "nosuch"), "--labels: column 'nosuch' is not in")


def test_user_mistakes_exit_2_with_a_message(setup) -> None:
    result = invoke("embed", setup["run"], "--data", setup["test"], "--modality", "audio", "--out",
                    setup["root"] / "e.parquet")
    assert result.exit_code == 2 and "this model has no modality 'audio'" in result.stderr
    result = invoke("retrieve", setup["run"], "--index", setup["root"] / "nowhere", "--query", setup["test"],
                    "--modality", "x")
    assert result.exit_code == 2 and "index.faiss not found" in result.stderr
    result = invoke("embed", setup["run"], "--data", setup["test"], "--modality", "nosuch", "--out",
                    setup["root"] / "e.parquet")
    assert_user_error(result, "this model has no modality 'nosuch'; its modalities are ['x', 'caption']")
    result = invoke("zero-shot", setup["run"], "--data", setup["test"], "--modality", "x", "--classes", "nope.json")
    assert result.exit_code == 2 and "--classes names a JSON file that does not exist: nope.json" in result.stderr
    bad = setup["root"] / "bad.json"
    bad.write_text('["red", "green"', encoding="utf-8")
    result = invoke("zero-shot", setup["run"], "--data", setup["test"], "--modality", "x", "--classes", bad)
    assert result.exit_code == 2 and "not valid JSON" in result.stderr
    assert "Traceback" not in result.output
    for command in (["retrieve", setup["run"], "--index", setup["root"] / "nowhere", "--query", setup["test"]],
                    ["zero-shot", setup["run"], "--data", setup["test"], "--classes", "red,green"],
                    ["embed", setup["run"], "--data", setup["test"]]):  # refused before the index or model is read
        assert_user_error(invoke(*command, "--modality", "x", "--out", setup["root"] / "hits.json"),
                          "--out: tables are written as .csv or .parquet; got 'hits.json'")
    assert not (setup["root"] / "hits.json").exists()
    assert_user_error(invoke("zero-shot", setup["run"], "--data", setup["test"], "--modality", "x", "--classes", "a,b",
                             "--template", "a drawing"), "--template: must hold '{}'")


@pytest.mark.parametrize("command", [["embed"], ["index", "build"], ["retrieve"], ["zero-shot"]])
def test_help_shows_every_option_help_in_full(command) -> None:
    """Help strings are rich markup: an unescaped ``[prompts]`` used to vanish from ``--help``."""
    import typer

    click_command = typer.main.get_command(app)
    for name in command:
        click_command = click_command.commands[name]
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "400"}, terminal_width=400)
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    helps = [p.help for p in click_command.params if getattr(p, "help", None)]
    assert helps
    for text in helps:
        assert " ".join(text.replace("\\[", "[").split()) in shown


def test_retrieve_names_the_whole_gallery_and_refuses_another_runs_index(setup, tmp_path) -> None:
    index = tmp_path / "idx"
    assert invoke("index", "build", setup["run"], "--data", setup["test"], "--modality", "caption", "--out",
                  index).exit_code == 0
    shown = runner.invoke(app, [str(a) for a in ("retrieve", setup["run"], "--index", index, "--query", setup["test"],
                                                 "--modality", "x", "-k", "500")], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "top 30 per query (the whole gallery)" in " ".join(shown.output.split()) and "top 500" not in shown.output
    capped = invoke("retrieve", setup["run"], "--index", index, "--query", setup["test"], "--modality", "x", "-k", "500",
                    "--out", tmp_path / "all.csv")
    assert capped.exit_code == 0, capped.output
    assert "900 hits (top 30 per query (the whole gallery)) for 30 queries written to" in " ".join(capped.output.split())
    other = tmp_path / "other"
    frame = pd.read_csv(setup["train"])
    MultimodalPredictor.from_config({**copy.deepcopy(CONFIG), "train": {**CONFIG["train"], "epochs": 1}}).fit(
        frame, frame.iloc[:30], out=other)
    assert_user_error(invoke("retrieve", other, "--index", index, "--query", setup["test"], "--modality", "x"),
                      "the index was built with another model (weights digest")


def test_evaluate_retrieval_json_stays_strict_when_no_query_has_a_relevant_item(setup, tmp_path) -> None:
    data = tmp_path / "unmatched.csv"
    frame = rows(20, 5).assign(label=[f"only{i}" for i in range(20)])  # every row its own label
    frame.loc[:9, "caption"] = ""  # rows 0-9: x only; 10-19: caption only
    frame.loc[10:, ["x0", "x1"]] = np.nan
    frame.to_csv(data, index=False)
    with pytest.warns(UserWarning, match="x->caption: none of the 10 queries has a relevant gallery item"):
        result = invoke("evaluate", setup["run"], "--data", data, "--retrieval", "--no-cca", "--json")
    assert result.exit_code == 0, result.output
    assert "NaN" not in result.stdout
    report = json.loads(result.stdout)["model"]["x->caption"]
    assert report["map"] is None and report["queries"] == 0 and report["queries_without_match"] == 10


def test_a_modality_empty_in_every_row_is_a_user_error_in_every_command(setup, tmp_path) -> None:
    data = tmp_path / "no_x.csv"
    rows(12, 3).assign(x0=np.nan, x1=np.nan).to_csv(data, index=False)
    expected = "no row of no_x.csv holds modality 'x' (column(s) ['x0', 'x1'] are empty or absent in all 12 rows)"
    assert_user_error(invoke("embed", setup["run"], "--data", data, "--modality", "x", "--out",
                             tmp_path / "e.parquet"), expected)
    assert not (tmp_path / "e.parquet").exists()
    assert_user_error(invoke("evaluate", setup["run"], "--data", data, "--retrieval", "--no-cca"), expected)
    assert_user_error(invoke("zero-shot", setup["run"], "--data", data, "--modality", "x", "--classes",
                             "red,green,blue"), expected)
    assert_user_error(invoke("evaluate", setup["run"], "--data", setup["test"], "--retrieval", "--cca-train", data),
                      expected)  # the CCA training manifest


@pytest.mark.parametrize("given, message", [
    ("", "--classes: empty; give comma-separated class names"),
    ("red", "--classes: zero-shot classification needs at least 2 classes; got 1: ['red']"),
    ("red,green,red", "--classes: each class must be named once; ['red'] repeat(s)"),
    ('"one"', "the file must hold a list of class names or {class: prompt or [prompts]}; it holds a JSON str: 'one'"),
    ('{"one": 5, "two": "two"}', "--classes: class 'one' needs a prompt or a non-empty list of prompts"),
    ("[1, 2]", "--classes: class names must be non-empty texts; got [1, 2]"),
])
def test_zero_shot_refuses_bad_classes(setup, tmp_path, given: str, message: str) -> None:
    classes = given
    if given and given[0] in '"{[':  # a JSON file
        classes = tmp_path / "classes.json"
        classes.write_text(given, encoding="utf-8")
    assert_user_error(invoke("zero-shot", setup["run"], "--data", setup["test"], "--modality", "x", "--classes",
                             classes), message)


def test_zero_shot_template_braces_other_than_the_name_are_text(setup) -> None:
    result = invoke("zero-shot", setup["run"], "--data", setup["test"], "--modality", "x", "--classes",
                    "red,green,blue", "--template", "a {} one {x}")
    assert result.exit_code == 0, result.output
    assert_user_error(invoke("zero-shot", setup["run"], "--data", setup["test"], "--modality", "x", "--classes",
                             "red,green", "--template", "a {0} one"), "--template: must hold '{}'", "got 'a {0} one'")


@pytest.mark.parametrize("command, capability", [
    (["evaluate", "--missing"], "subset evaluation (--missing)"), (["evaluate", "--robustness"], "a robustness sweep"),
    (["explain"], "explain"), (["predict", "--out", "{root}/p.csv"], "predict"), (["export"], "export")])
def test_what_a_retrieval_model_cannot_do_is_a_clear_error(setup, command, capability) -> None:
    before = sorted(setup["root"].rglob("*"))
    result = invoke(command[0], setup["run"], "--data", setup["test"], *(c.format(**setup) for c in command[1:]))
    assert_user_error(result, f"{capability}", "is not available for task 'retrieval'", "polymodal embed")
    assert sorted(setup["root"].rglob("*")) == before  # refused before anything was written


def test_cca_on_input_features_skips_a_text_modality_with_one_warning_and_keeps_the_model(setup) -> None:
    """The caption's inputs are token ids: its directions get no baseline, the evaluation goes on,
    and the warning names the option to use (not the Python arguments)."""
    with pytest.warns(UserWarning) as caught:
        result = invoke("evaluate", setup["run"], "--data", setup["test"], "--retrieval", "--cca-features", "input",
                        "--json")
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"model"}
    notes = [str(w.message) for w in caught if "linear-CCA" in str(w.message)]
    assert len(notes) == 1, notes
    assert notes[0].startswith("no linear-CCA baseline for caption->x, x->caption: it was asked for on 'input' "
                               "features, and 'caption' has no numeric input arrays")
    assert "fit it on 'encoder' features to score them (--cca-features encoder; not" in notes[0]
    assert "cca_baseline" not in notes[0] and "features='encoder'" not in notes[0]  # a command: no Python call


def test_label_options_that_cannot_apply_are_refused(setup, tmp_path) -> None:
    args = ("evaluate", setup["run"], "--retrieval", "--no-cca")
    assert_user_error(invoke(*args, "--data", setup["test"], "--hits", "pair", "--labels", "label"),
                      "--labels: 'label' names the labels of label-level hits, but with --hits pair a hit is only "
                      "the query's own row; drop --labels, or use --hits label")
    unlabelled = tmp_path / "unlabelled.csv"
    pd.read_csv(setup["test"]).rename(columns={"label": "colour"}).to_csv(unlabelled, index=False)
    assert_user_error(invoke(*args, "--data", unlabelled, "--hits", "label"),
                      "--hits label: the labels are the model's target 'label' unless --labels names another "
                      "column, and unlabelled.csv has no column 'label'",
                      "name the label column with --labels, or use --hits pair")
    result = invoke(*args, "--data", unlabelled, "--hits", "label", "--labels", "colour", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["model"]["x->caption"]["hits"] == "label"


def test_retrieve_refuses_queries_of_the_modality_the_index_holds(setup, tmp_path) -> None:
    index = tmp_path / "idx"
    assert invoke("index", "build", setup["run"], "--data", setup["test"], "--modality", "caption", "--out",
                  index).exit_code == 0
    assert_user_error(invoke("retrieve", setup["run"], "--index", index, "--query", setup["test"], "--modality",
                             "caption"),
                      "--modality: the index holds 'caption' items", "retrieval is across modalities "
                      "unless", "gallery with --same-modality; else query it with another of ['x']")
    same = tmp_path / "same.csv"  # caption -> caption search, asked for
    result = invoke("retrieve", setup["run"], "--index", index, "--query", setup["test"], "--modality", "caption",
                    "--same-modality", "-k", "1", "--out", same)
    assert result.exit_code == 0, result.output
    hits = pd.read_csv(same)
    assert len(hits) == 30 and np.allclose(hits["score"], 1.0, atol=1e-5)  # the gallery holds every query's caption


def test_evaluate_names_an_unknown_query_or_gallery_modality_as_embed_does(setup) -> None:
    for option in ("--query", "--gallery"):
        assert_user_error(invoke("evaluate", setup["run"], "--data", setup["test"], "--retrieval", "--no-cca", option,
                                 "nosuch"),
                          "this model has no modality 'nosuch'; its modalities are ['x', 'caption'], of which it "
                          "embeds (aligns) ['caption', 'x']")


def test_evaluate_warns_once_about_identical_gallery_rows(setup, tmp_path) -> None:
    copied = tmp_path / "copied.csv"
    frame = pd.read_csv(setup["test"])
    pd.concat([frame, frame.iloc[:3]]).to_csv(copied, index=False)
    with pytest.warns(UserWarning) as caught:
        result = invoke("evaluate", setup["run"], "--data", copied, "--retrieval", "--no-cca", "--hits", "pair")
    assert result.exit_code == 0, result.output
    notes = [str(w.message) for w in caught if "identical embeddings" in str(w.message)]
    assert len(notes) == 1, notes
    assert "'x': 6 of 33 rows share their vector with another row" in notes[0]  # copies embedded in other batches too
    assert "Ties in similarity rank pessimistically" in notes[0]


@pytest.mark.parametrize("options, message", [
    (["--missing"], "--missing does not apply with --retrieval"),
    (["--corruption", "x"], "--corruption does not apply with --retrieval"),
    (["--rows", "3"], "--rows does not apply with --retrieval"),
    (["--seed", "5"], "--seed does not apply with --retrieval"),
    (["--reference", "{root}/nope"], "--reference does not apply with --retrieval"),
    (["--out", "{root}/eval"], "--out does not apply with --retrieval (which evaluates retrieval only and writes no "
                               "file)"),
    (["--no-cca", "--cca-features", "input"], "--cca-features sets up the linear-CCA baseline that --no-cca turns "
                                              "off; give one of them"),
])
def test_evaluate_retrieval_refuses_the_options_of_the_other_modes(setup, options, message) -> None:
    """Sweep options beside --retrieval were ignored without a word (a --missing model check aside)."""
    before = sorted(setup["root"].rglob("*"))
    args = [o.format(**setup) for o in options]
    assert_user_error(invoke("evaluate", setup["run"], "--data", setup["test"], "--retrieval", *args), message)
    assert sorted(setup["root"].rglob("*")) == before


def test_evaluate_without_the_target_points_a_retrieval_run_to_pair_hits_not_predict(setup, tmp_path) -> None:
    """predict refuses a retrieval run, so an unlabelled manifest's advice is the retrieval
    evaluation by pairs, which then runs."""
    unlabelled = tmp_path / "unlabelled.csv"
    pd.read_csv(setup["test"]).drop(columns="label").to_csv(unlabelled, index=False)
    result = invoke("evaluate", setup["run"], "--data", unlabelled)
    assert_user_error(result, "target column 'label' is not in unlabelled.csv", "to score retrieval without labels (a "
                      "hit is the query's own row) use 'polymodal evaluate RUN --data FILE --retrieval --hits pair' "
                      "(evaluate_retrieval(data, hits='pair') in Python)")
    assert "polymodal predict" not in result.stderr
    followed = invoke("evaluate", setup["run"], "--data", unlabelled, "--retrieval", "--hits", "pair", "--no-cca", "--json")
    assert followed.exit_code == 0 and json.loads(followed.stdout)["model"]["x->caption"]["hits"] == "pair"


def test_retrieve_refuses_same_modality_with_queries_of_another_modality(setup, tmp_path) -> None:
    index = tmp_path / "idx"
    assert invoke("index", "build", setup["run"], "--data", setup["test"], "--modality", "caption", "--out",
                  index).exit_code == 0
    assert_user_error(invoke("retrieve", setup["run"], "--index", index, "--query", setup["test"], "--modality", "x",
                             "--same-modality", "--out", tmp_path / "hits.csv"),
                      "--same-modality: allows queries of the index's own modality, and the index "
                      "holds 'caption' items while the queries are 'x': it does nothing here; drop it")
    assert not (tmp_path / "hits.csv").exists()


def test_rows_without_the_query_modality_are_counted_in_one_warning_by_every_command(setup, tmp_path) -> None:
    """retrieve printed 'for 20 queries' of 30 rows, embed wrote 20 rows, evaluate scored 20 queries,
    none saying that 10 rows had no 'x'."""
    import warnings

    gaps = tmp_path / "gaps.csv"
    pd.read_csv(setup["test"]).assign(x0=lambda f: f["x0"].mask(f.index < 10)).assign(
        x1=lambda f: f["x1"].mask(f.index < 10)).to_csv(gaps, index=False)
    said = "10 of 30 rows of gaps.csv hold no 'x' (column(s) ['x0', 'x1'] empty): they are left out, and the other 20 embedded"
    index = tmp_path / "idx"
    assert invoke("index", "build", setup["run"], "--data", setup["test"], "--modality", "caption", "--out",
                  index).exit_code == 0
    commands = {"embed": ("embed", setup["run"], "--data", gaps, "--modality", "x", "--out", tmp_path / "e.parquet"),
                "retrieve": ("retrieve", setup["run"], "--index", index, "--query", gaps, "--modality", "x", "--out",
                             tmp_path / "hits.csv"),
                "evaluate": ("evaluate", setup["run"], "--data", gaps, "--retrieval", "--json",
                             "--cca-features", "encoder")}
    for name, command in commands.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = invoke(*command)
        assert result.exit_code == 0, result.output
        notes = [str(w.message) for w in caught if "hold no" in str(w.message)]
        assert notes == [said], (name, notes)  # evaluate's CCA baseline scores the same rows: said once
    assert "for 20 queries" in invoke(*commands["retrieve"], "--overwrite").stdout


@pytest.mark.parametrize("command, option", [
    (["embed", "--data", "{test}", "--out", "{root}/e.parquet", "--modality"], "--modality"),
    (["index", "build", "--data", "{test}", "--out", "{root}/idx_bad", "--modality"], "--modality"),
    (["zero-shot", "--data", "{test}", "--classes", "red,green", "--modality"], "--modality"),
    (["zero-shot", "--data", "{test}", "--classes", "red,green", "--modality", "x", "--text-modality"],
     "--text-modality"),
    (["evaluate", "--data", "{test}", "--retrieval", "--no-cca", "--query"], "--query"),
    (["evaluate", "--data", "{test}", "--retrieval", "--no-cca", "--gallery"], "--gallery"),
])
def test_an_unknown_modality_names_its_option_and_the_one_likely_meant(setup, command, option) -> None:
    args = [c.format(**setup) for c in command]
    if args[0] == "index":
        args.insert(2, str(setup["run"]))
    else:
        args.insert(1, str(setup["run"]))
    assert_user_error(invoke(*args, "Caption"), f"{option}: this model has no modality 'Caption' (did you mean "
                                                "'caption'?); its modalities are ['x', 'caption']")


def test_retrieve_names_an_unknown_modality_with_its_option(setup, tmp_path) -> None:
    index = tmp_path / "idx"
    assert invoke("index", "build", setup["run"], "--data", setup["test"], "--modality", "caption", "--out",
                  index).exit_code == 0
    assert_user_error(invoke("retrieve", setup["run"], "--index", index, "--query", setup["test"], "--modality", "X"),
                      "--modality: this model has no modality 'X' (did you mean 'x'?)")


def test_compare_tells_alignment_runs_apart_by_positives(setup, tmp_path) -> None:
    """Every alignment run showed 'align contrastive': label positives are named. Parameters are
    the saved network's (the learnable temperature trains beside it, and is not kept)."""
    pair = tmp_path / "pair"
    config = copy.deepcopy(CONFIG)
    config["align"]["positives"] = "pair"
    config["train"]["epochs"] = 1
    predictor = MultimodalPredictor.from_config(config).fit(setup["train"], setup["valid"], out=pair)
    result = invoke("compare", setup["run"], pair, "--json")
    assert result.exit_code == 0, result.output
    records = {r["run"]: r for r in json.loads(result.stdout)}
    assert records[str(setup["run"])]["model"] == "align contrastive (label positives)"
    assert records[str(pair)]["model"] == "align contrastive"
    network = sum(p.numel() for p in predictor.net.parameters())
    assert records[str(pair)]["parameters"] == records[str(pair)]["trainable"] == network


def _no_work(monkeypatch) -> None:
    """Fail the test if a command loads the model (and so embeds anything)."""
    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(MultimodalPredictor, "load", fail)


def _commands(setup, index, data) -> dict[str, tuple]:
    """The three commands writing a table to --out, each reading ``data``, less their --out."""
    return {"embed": ("embed", setup["run"], "--data", data, "--modality", "x"),
            "retrieve": ("retrieve", setup["run"], "--index", index, "--query", data, "--modality", "x", "-k", "2"),
            "zero-shot": ("zero-shot", setup["run"], "--data", data, "--modality", "x", "--classes", "red,green,blue",
                          "--template", "a {} one")}


@pytest.mark.parametrize("command", ["embed", "retrieve", "zero-shot"])
def test_an_existing_out_is_replaced_only_with_overwrite_and_refused_before_any_work(setup, tmp_path, monkeypatch,
                                                                                     command) -> None:
    index = tmp_path / "idx"
    assert invoke("index", "build", setup["run"], "--data", setup["test"], "--modality", "caption", "--out",
                  index).exit_code == 0
    out = tmp_path / "out.csv"
    out.write_text("mine\n")
    args = _commands(setup, index, setup["test"])[command]
    with monkeypatch.context() as patched:
        _no_work(patched)
        assert_user_error(invoke(*args, "--out", out),
                          f"{out} (--out) already exists; give --overwrite to replace it, or another --out")
    assert out.read_text() == "mine\n"
    result = invoke(*args, "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) in (30, 60)  # a row per manifest row (embed, zero-shot), 2 hits per query


@pytest.mark.parametrize("command", ["embed", "retrieve", "zero-shot"])
def test_an_out_that_is_the_manifest_read_is_refused_even_with_overwrite(setup, tmp_path, monkeypatch,
                                                                          command) -> None:
    """``embed RUN --data x.csv --out x.csv`` replaced the manifest with its embeddings."""
    data = tmp_path / "x.csv"
    data.write_bytes(setup["test"].read_bytes())
    _no_work(monkeypatch)  # refused before the model, or the index, is read
    option = "--query" if command == "retrieve" else "--data"
    args = _commands(setup, tmp_path / "no_index", data)[command]
    for overwrite in ([], ["--overwrite"]):
        assert_user_error(invoke(*args, "--out", data, *overwrite),
                          f"{data} (--out) is the {option} manifest; write to another file")
    assert data.read_bytes() == setup["test"].read_bytes()


@pytest.mark.parametrize("command", ["retrieve", "zero-shot"])
def test_overwrite_without_out_is_refused(setup, tmp_path, monkeypatch, command) -> None:
    _no_work(monkeypatch)
    assert_user_error(invoke(*_commands(setup, tmp_path / "no_index", setup["test"])[command], "--overwrite"),
                      "--overwrite applies only with --out")
