"""Alignment end to end through ``MultimodalPredictor`` on tiny generated tables: a known linear map
between two modalities is recovered; embeddings survive save/load; a FAISS index built from a
run answers queries from the other modality; alignment beside a classification task with label
positives, three modalities and an anchor gives zero-shot classification by class names; frozen
encoders served from the feature cache; the VAE objective; the linear-CCA baseline."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal import MultimodalPredictor
from polymodal.errors import ManifestError, OptionError, SchemaMismatchError, command_line
from polymodal.retrieval import build_index, cca_baseline, retrieve
from polymodal.retrieval.index import EmbeddingIndex

DIM = 6
COLORS = ["red", "green", "blue"]
TRAIN = {"batch_size": 32, "lr": 1e-2, "seed": 0, "progress": False, "num_workers": 0, "early_stopping": None}


def linear_pairs(n: int, seed: int = 0) -> pd.DataFrame:
    """Modality ``a`` is Gaussian; modality ``b`` is a fixed linear map of it plus a little noise."""
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(100).normal(size=(DIM, DIM))
    xa = rng.normal(size=(n, DIM))
    xb = xa @ weights + 0.05 * rng.normal(size=(n, DIM))
    return pd.DataFrame({**{f"a{i}": xa[:, i] for i in range(DIM)}, **{f"b{i}": xb[:, i] for i in range(DIM)}})


def tab(prefix: str, **encoder: Any) -> dict[str, Any]:
    return {"kind": "tabular", "columns": [f"{prefix}{i}" for i in range(DIM)],
            "encoder": {"dim": 32, "hidden": [32], "dropout": 0.0, **encoder}}


def retrieval_config(objective: str = "contrastive", epochs: int = 15, **align: Any) -> dict[str, Any]:
    return {"task": "retrieval", "modalities": {"a": tab("a"), "b": tab("b")},
            "align": {"objective": objective, "dim": 16, **align},
            "train": {**TRAIN, "epochs": epochs}, "report": {"rows": 0}}


@pytest.fixture(scope="module")
def pairs() -> dict[str, pd.DataFrame]:
    frame = linear_pairs(300)
    return {"train": frame.iloc[:200], "valid": frame.iloc[200:240],
            "test": frame.iloc[240:].reset_index(drop=True)}


@pytest.fixture(scope="module")
def contrastive(pairs, tmp_path_factory) -> tuple[MultimodalPredictor, Path]:
    run = tmp_path_factory.mktemp("runs") / "contrastive"
    predictor = MultimodalPredictor.from_config(retrieval_config()).fit(pairs["train"], pairs["valid"], out=run)
    return predictor, run


def test_contrastive_recovers_a_linear_map(contrastive, pairs) -> None:
    predictor, _ = contrastive
    results = predictor.evaluate_retrieval(pairs["test"])
    assert set(results) == {"a->b", "b->a"}
    for direction, scores in results.items():
        assert scores["hits"] == "pair" and scores["queries"] == 60 and scores["gallery"] == 60
        assert scores["recall@1"] > 0.95, (direction, scores)
    assert predictor.metrics["valid"]["recall@1"] > 0.9  # validation scores the embeddings during training


def test_untrained_alignment_is_far_from_that(pairs) -> None:
    """The same model with a learning rate too small to move it: the pairs are not found."""
    cfg = retrieval_config(epochs=1)
    cfg["train"]["lr"] = 1e-9
    predictor = MultimodalPredictor.from_config(cfg).fit(pairs["train"], pairs["valid"])
    assert predictor.evaluate_retrieval(pairs["test"])["a->b"]["recall@1"] < 0.5


def test_embeddings_are_normalised_and_survive_save_and_load(contrastive, pairs) -> None:
    predictor, run = contrastive
    test = pairs["test"].copy()
    test.loc[3, [f"b{i}" for i in range(DIM)]] = np.nan  # an all-empty tabular modality is absent
    embedded = predictor.embed(test, modality="a")
    assert embedded.shape == (60, 16) and list(embedded.columns[:2]) == ["e0", "e1"]
    assert np.allclose(np.linalg.norm(embedded.to_numpy(), axis=1), 1.0, atol=1e-5)
    again = MultimodalPredictor.load(run).embed(test, modality="a")
    pd.testing.assert_frame_equal(embedded, again)
    labelled = test.set_axis(np.arange(500, 500 + len(test)))  # a DataFrame's own index labels the rows
    by_label = predictor.embed(labelled, modality="a")
    assert by_label.index.tolist() == list(range(500, 560))
    np.testing.assert_array_equal(by_label.to_numpy(), embedded.to_numpy())


def test_index_built_from_a_run_answers_queries_of_the_other_modality(contrastive, pairs, tmp_path) -> None:
    predictor, run = contrastive
    index = build_index(predictor, pairs["test"], "b", run=run)
    assert len(index) == 60 and index.meta["modality"] == "b" and index.meta["model"] is not None
    hits = retrieve(predictor, EmbeddingIndex.load(index.save(tmp_path / "idx")), pairs["test"], "a", k=3, run=run)
    top = hits[hits["rank"] == 1]
    assert len(hits) == 180 and (top["query"].to_numpy() == top["id"].to_numpy()).mean() > 0.95
    assert hits.equals(retrieve(predictor, index, pairs["test"], "a", k=3))


def test_an_index_from_another_model_is_refused(contrastive, pairs, tmp_path) -> None:
    predictor, run = contrastive
    index = build_index(predictor, pairs["test"], "b", run=run)
    index.meta["model"] = "0" * 32
    with pytest.raises(SchemaMismatchError, match="built with another model"):
        retrieve(predictor, index, pairs["test"], "a", run=run)


def test_linear_cca_baseline_on_inputs_and_encoder_features(contrastive, pairs) -> None:
    predictor, _ = contrastive
    on_inputs = cca_baseline(predictor, pairs["train"], pairs["test"], features="input", dim=DIM, pca=None)
    assert set(on_inputs) == {"a->b", "b->a"}
    assert on_inputs["a->b"]["recall@1"] > 0.95  # the relation is linear: CCA finds it
    on_encoders = cca_baseline(predictor, pairs["train"], pairs["test"], "a", "b", features="encoder", dim=8)
    assert set(on_encoders) == {"a->b"} and on_encoders["a->b"]["gallery"] == 60
    with pytest.raises(OptionError, match="^features=: .* got 'embedding'"):
        cca_baseline(predictor, pairs["train"], pairs["test"], features="embedding")


def test_the_cca_baseline_defaults_to_features_independent_of_the_model_and_names_them(contrastive, pairs,
                                                                                     monkeypatch) -> None:
    """CCA on encoders the run trained is CCA on the model's own learned features, not a baseline:
    by default (features='auto') such a modality is compared on its preprocessed inputs, and a
    frozen pretrained encoder on its features; every baseline row names what it was fitted on."""
    from polymodal.retrieval import search

    predictor, _ = contrastive
    asked: list[tuple[str, str]] = []
    real = search.embed_rows
    monkeypatch.setattr(search, "embed_rows", lambda p, data, name, kind="embedding", **k:
                        asked.append((name, kind)) or real(p, data, name, kind, **k))
    default = cca_baseline(predictor, pairs["train"], pairs["test"], dim=DIM, pca=None)
    assert set(asked) == {("a", "input"), ("b", "input")}  # no pass of the trained encoders
    assert default == cca_baseline(predictor, pairs["train"], pairs["test"], features="input", dim=DIM, pca=None)
    assert {scores["features"] for scores in default.values()} == {"input"}
    on_encoders = cca_baseline(predictor, pairs["train"], pairs["test"], features="encoder", dim=DIM, pca=None)
    assert {scores["features"] for scores in on_encoders.values()} == {"encoder (trained by this run)"}
    encoder = predictor.net.encoders["a"]  # as if 'a' were a frozen pretrained encoder
    monkeypatch.setattr(encoder, "pretrained", True)
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    try:
        for param in trainable:
            param.requires_grad_(False)
        asked.clear()
        mixed = cca_baseline(predictor, pairs["train"], pairs["test"], dim=DIM, pca=None)
    finally:
        for param in trainable:
            param.requires_grad_(True)
    assert set(asked) == {("a", "encoder"), ("b", "input")}
    assert mixed["a->b"]["features"] == "a: encoder (frozen pretrained); b: input"
    assert mixed["b->a"]["features"] == "b: input; a: encoder (frozen pretrained)"


def test_the_report_shows_every_direction_beside_linear_cca_fitted_on_the_training_rows(pairs, tmp_path) -> None:
    config = {**retrieval_config(epochs=3), "report": {"rows": 100}}
    run = tmp_path / "run"
    predictor = MultimodalPredictor.from_config(config).fit(pairs["train"], pairs["valid"], test=pairs["test"], out=run)
    diagnostics = MultimodalPredictor.load(run).diagnostics
    assert diagnostics["rows"] == 60 and diagnostics["cca_train_rows"] == 200  # both fewer than the limits
    rows = pd.DataFrame(diagnostics["retrieval"]).set_index(["method", "direction"])
    baseline = cca_baseline(predictor, pairs["train"], pairs["test"])
    model = predictor.evaluate_retrieval(pairs["test"])
    for direction in ("a->b", "b->a"):
        for method, expected in (("linear_cca", baseline), ("model", model)):
            for metric in ("recall@1", "recall@10", "map", "median_rank"):
                assert rows.loc[(method, direction), metric] == pytest.approx(expected[direction][metric])
    assert rows.loc[("model", "a->b"), "queries"] == 60
    page = (run / "report.html").read_text()
    assert "Retrieval beside linear CCA" in page and "linear_cca" in page
    assert "On all 60 rows of the test set, as the metrics table above" in page
    # the baseline says what it was fitted on: encoders this run trained give their inputs
    assert "linear CCA fitted on 200 training rows' preprocessed inputs" in page and "<th>features</th>" in page
    assert "frozen encoder" not in page
    header = page.split("</h1>", 1)[1].split("<h2>", 1)[0]  # a retrieval run has an alignment, no fusion, no head
    assert ("alignment <b>contrastive</b> (dim 16, positives pair, projection linear, anchor none (every pair))"
            in header)
    assert "fusion" not in header and "head" not in header


def test_the_reports_retrieval_table_samples_report_rows(pairs, tmp_path) -> None:
    from polymodal.evaluation.diagnostics import sampled_manifest

    config = {**retrieval_config(epochs=1), "report": {"rows": 25}}
    predictor = MultimodalPredictor.from_config(config).fit(pairs["train"], pairs["valid"], test=pairs["test"],
                                                            out=tmp_path / "run")
    sample = sampled_manifest(predictor, pairs["test"], 25, seed=0)
    assert len(sample) == 25 and list(sample.source_rows) == sorted(set(sample.source_rows))
    rows = predictor.diagnostics["retrieval"]
    assert predictor.diagnostics["rows"] == 25 and {r["queries"] for r in rows} == {25}
    expected = predictor.evaluate_retrieval(pairs["test"].iloc[sample.source_rows].reset_index(drop=True))
    assert rows[0]["map"] == pytest.approx(expected[rows[0]["direction"]]["map"])
    page = " ".join((tmp_path / "run" / "report.html").read_text().split())
    # the metrics table scores all 60 test rows: a sample is labelled, with why its figures differ
    assert "<b>On a seeded sample of 25 of the 60 test rows</b> (<code>report.rows</code>" in page
    assert "Recall@K and mAP depend on the gallery's size" in page and "set <code>report.rows</code> to 60" in page


def test_unaligned_models_and_modalities_are_refused(contrastive, pairs) -> None:
    predictor, _ = contrastive
    no_c = "this model has no modality 'c'; its modalities are \\['a', 'b'\\], of which it embeds \\(aligns\\) \\['a', 'b'\\]"
    with pytest.raises(SchemaMismatchError, match=no_c):
        predictor.embed(pairs["test"], modality="c")
    with pytest.raises(SchemaMismatchError, match=no_c):
        predictor.evaluate_retrieval(pairs["test"], query="c")
    for method in (predictor.predict, predictor.predict_proba, predictor.predict_frame, predictor.explain):
        with pytest.raises(SchemaMismatchError, match="not available for task 'retrieval'.*polymodal embed"):
            method(pairs["test"])


@pytest.mark.parametrize("objective, options", [("triplet", {"margin": 0.3}), ("cca", {"decorrelation": 0.1})])
def test_triplet_and_soft_cca_align_the_pairs(objective: str, options: dict[str, Any], pairs) -> None:
    predictor = MultimodalPredictor.from_config(retrieval_config(objective, **options))
    predictor.fit(pairs["train"], pairs["valid"])
    results = predictor.evaluate_retrieval(pairs["test"], "a", "b")
    assert results["a->b"]["recall@1"] > 0.8, results


def test_vae_embeds_either_modality_alone(pairs) -> None:
    predictor = MultimodalPredictor.from_config(retrieval_config("vae", epochs=20, beta=0.1, hidden=[32]))
    predictor.fit(pairs["train"], pairs["valid"])
    only_b = pairs["test"][[f"b{i}" for i in range(DIM)]]
    assert predictor.embed(only_b, "b").shape == (60, 16)
    results = predictor.evaluate_retrieval(pairs["test"], "b", "a")
    assert results["b->a"]["recall@10"] > 0.5, results  # chance: 10 / 60


def test_alignment_with_frozen_encoders_served_from_the_feature_cache(pairs, tmp_path) -> None:
    cfg = retrieval_config(projection={"name": "mlp", "hidden": [32], "dropout": 0.0}, epochs=25)
    cfg["modalities"]["a"] = tab("a", freeze="all", cache=True)
    cfg["data"] = {"cache_dir": str(tmp_path / "cache")}
    predictor = MultimodalPredictor.from_config(cfg).fit(pairs["train"], pairs["valid"])
    assert any((tmp_path / "cache").rglob("*")), "the frozen encoder's outputs are stored in the cache"
    frozen = dict(predictor.net.encoders["a"].named_parameters())
    assert frozen and not any(p.requires_grad for p in frozen.values())
    assert predictor.evaluate_retrieval(pairs["test"], "a", "b")["a->b"]["recall@1"] > 0.9


# -- beside a task: label positives, three modalities, an anchor, zero-shot ---------------------------
def colour_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    k = np.arange(n) % 3
    adjectives = np.array(["a", "one", "some", "this"])
    return pd.DataFrame({
        "x0": 2.0 * k + rng.normal(0, 0.3, n), "x1": rng.normal(size=n),
        "y0": -2.0 * k + rng.normal(0, 0.3, n), "y1": rng.normal(size=n),
        "caption": [f"{adjectives[rng.integers(4)]} {COLORS[i]} thing" for i in k],
        "label": [COLORS[i] for i in k],
    })


@pytest.fixture(scope="module")
def with_task() -> MultimodalPredictor:
    def numbers(*columns: str) -> dict[str, Any]:
        return {"kind": "tabular", "columns": list(columns), "encoder": {"dim": 16, "hidden": [16], "dropout": 0.0}}

    cfg = {
        "task": "classification", "target": "label",
        "modalities": {"x": numbers("x0", "x1"), "y": numbers("y0", "y1"),
                       # every test caption's words were seen in training: no [UNK] to learn, and hiding the
                       # colour of a three-word anchor caption would only blur the alignment this module measures
                       "caption": {"kind": "text", "column": "caption", "preprocess": {"unknown_rate": 0.0},
                                   "encoder": {"name": "embedding_bag", "dim": 16}}},
        "fusion": {"name": "concat"}, "head": {"name": "mlp", "hidden": [16]},
        "align": {"objective": "contrastive", "dim": 8, "positives": "label", "anchor": "caption", "weight": 0.5},
        "train": {**TRAIN, "epochs": 12}, "report": {"rows": 0},
    }
    return MultimodalPredictor.from_config(copy.deepcopy(cfg)).fit(colour_rows(150, 0), colour_rows(30, 1))


def test_alignment_beside_a_task_keeps_the_task(with_task) -> None:
    test = colour_rows(60, 2)
    assert with_task.evaluate(test)["accuracy"] > 0.9
    assert (with_task.predict(test) == test["label"]).mean() > 0.9


def test_label_positives_make_same_class_rows_hits(with_task) -> None:
    results = with_task.evaluate_retrieval(colour_rows(60, 2), "x", "y")
    assert results["x->y"]["hits"] == "label" and results["x->y"]["map"] > 0.9, results


def test_every_direction_is_scored_that_the_manifest_has_columns_for(with_task) -> None:
    """A test manifest without the caption column scores x<->y, saying which directions it left
    out, instead of failing on the caption's missing column; a direction named is not dropped."""
    test = colour_rows(60, 2).drop(columns="caption")
    with pytest.warns(UserWarning, match="has no column of caption: the directions with it are left out"):
        results = with_task.evaluate_retrieval(test)
    assert sorted(results) == ["x->y", "y->x"]
    with pytest.raises(ManifestError, match="caption"):
        with_task.evaluate_retrieval(test, "x", "caption")
    with pytest.raises(SchemaMismatchError, match="no two aligned modalities have columns there"):
        with_task.evaluate_retrieval(test.drop(columns=["y0", "y1"]))


def test_zero_shot_classifies_by_class_name_embeddings(with_task) -> None:
    test = colour_rows(60, 3)
    for modality in ("x", "y"):
        predicted = with_task.zero_shot(test.drop(columns="caption"), modality, COLORS, template="the {} thing")
        assert list(predicted.columns) == ["prediction", "score_red", "score_green", "score_blue"]
        assert (predicted["prediction"].to_numpy() == test["label"].to_numpy()).mean() > 0.9, modality
    prompts = {"red": ["red", "a red thing"], "green": "green", "blue": ["blue"]}
    assert (with_task.zero_shot(test, "x", prompts)["prediction"] == test["label"]).mean() > 0.9


def test_zero_shot_needs_an_aligned_text_modality(contrastive, pairs) -> None:
    with pytest.raises(SchemaMismatchError, match="embeds class names with an aligned text modality"):
        contrastive[0].zero_shot(pairs["test"], "a", ["x", "y"])


def test_fit_warns_when_the_validation_space_collapsed(pairs, monkeypatch) -> None:
    """The warning is driven by the validation ``spread``: with the threshold raised above any
    possible spread every space counts as collapsed, and fit says so."""
    from polymodal.metrics import retrieval

    predictor = MultimodalPredictor.from_config(retrieval_config(epochs=1))
    monkeypatch.setattr(retrieval, "COLLAPSED_SPREAD", 2.0)
    with pytest.warns(UserWarning, match="shared space collapsed"):
        predictor.fit(pairs["train"], pairs["valid"])
    assert 0.0 < predictor.metrics["valid"]["spread"] <= 1.0
    assert "val_spread" in predictor.history.columns


def test_retrieval_evaluation_of_a_model_without_align_says_so():
    from polymodal.config import load_config
    from polymodal.errors import SchemaMismatchError
    from polymodal.retrieval.search import directions

    config = load_config({"target": "y", "modalities": {"t": {"kind": "tabular", "columns": ["x"]}}})
    with pytest.raises(SchemaMismatchError, match="no shared embedding space: its config has no 'align' section"):
        directions(MultimodalPredictor(config), None, None)  # an estimator: it says what it cannot have


# -- what retrieval refuses or warns about ---------------------------------------------------------
def test_an_index_built_in_python_records_the_weights_and_refuses_another_model(contrastive, pairs) -> None:
    """No run folder is needed: the digest of the weights identifies the model, the same for the
    fitted predictor and its run folder loaded again."""
    predictor, run = contrastive
    index = build_index(predictor, pairs["test"], "b")
    assert index.meta["model"] is not None
    hits = retrieve(MultimodalPredictor.load(run), index, pairs["test"], "a", k=3)
    assert len(hits) == 180
    other = copy.deepcopy(predictor)
    with torch.no_grad():
        next(other.net.parameters()).add_(1e-3)
    with pytest.raises(SchemaMismatchError, match="built with another model \\(weights digest "):
        retrieve(other, index, pairs["test"], "a")
    index.meta["model"] = None
    with pytest.warns(UserWarning, match="the index records no model"):
        retrieve(predictor, index, pairs["test"], "a")


def test_an_index_saved_in_format_1_is_checked_against_the_run_folder(contrastive, pairs, tmp_path) -> None:
    import json
    import warnings

    from polymodal.retrieval.search import model_digest

    predictor, run = contrastive
    folder = build_index(predictor, pairs["test"], "b").save(tmp_path / "idx")
    meta = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({**meta, "format": 1, "model": model_digest(run)}))
    old = EmbeddingIndex.load(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        retrieve(predictor, old, pairs["test"], "a", run=run)
    with pytest.warns(UserWarning, match="records only the digest of its run's model.safetensors"):
        retrieve(predictor, old, pairs["test"], "a")
    old.meta["model_file"] = "0" * 32
    with pytest.raises(SchemaMismatchError, match="built with another model \\(model.safetensors digest 0000"):
        retrieve(predictor, old, pairs["test"], "a", run=run)


def test_index_ids_follow_a_dataframes_own_index_as_queries_do(contrastive, pairs) -> None:
    predictor, _ = contrastive
    labelled = pairs["test"].set_axis([f"r{i}" for i in range(60)])[::-1]  # its own, reversed index
    index = build_index(predictor, labelled, "b")
    assert index.ids == list(labelled.index)
    top = retrieve(predictor, index, labelled, "a", k=1)
    assert (top["query"] == top["id"]).mean() > 0.95  # a row's pair is named as the query names it


def test_repeated_or_empty_item_ids_are_refused_naming_rows_and_values(contrastive, pairs) -> None:
    from polymodal.errors import ManifestError

    predictor, _ = contrastive
    named = pairs["test"].assign(name=[f"n{i}" for i in range(60)])
    named.loc[7, "name"] = "n3"
    named.loc[5, "name"] = ""
    with pytest.raises(ManifestError) as caught:
        build_index(predictor, named, "b", id_column="name")
    message = str(caught.value)
    assert "id column 'name' is empty at 1 indexed row(s): DataFrame row 5" in message
    assert "id column 'name': 'n3' names 2 rows: DataFrame row 3, DataFrame row 7; ids must be unique" in message
    with pytest.raises(ManifestError, match="the DataFrame's index: 'x' names 2 rows: DataFrame row 0 \\(index 'x'\\)"):
        build_index(predictor, pairs["test"].set_axis(["x", "x"] + [f"r{i}" for i in range(58)]), "b")


def test_same_modality_retrieval_and_bad_hit_options_are_refused(contrastive, pairs) -> None:
    predictor, _ = contrastive
    with pytest.raises(OptionError, match="^gallery=: 'a' is also the query modality; .* choose another of \\['a', 'b'\\]"):
        predictor.evaluate_retrieval(pairs["test"], "a", "a")
    for hits in ("foo", "pairs"):
        with pytest.raises(OptionError, match=f"^hits=: pair, label or auto; got '{hits}'$"):
            predictor.evaluate_retrieval(pairs["test"], hits=hits)
    with pytest.raises(OptionError, match=r"^labels=: column 'tag' is not in DataFrame \(columns: \['a0', 'a1'"):
        predictor.evaluate_retrieval(pairs["test"], labels="tag")



def test_messages_name_the_python_arguments_in_a_call_and_the_options_in_a_command(contrastive, pairs) -> None:
    """A notebook user told ``--hits`` must translate it to ``hits=``, a command-line user told
    ``modality=`` to ``--modality``: the same mistake is named as each gave it, never both ways."""
    predictor, _ = contrastive
    tagged = pairs["test"].assign(label=[7, 8] * 30)
    said = {}
    for interface in ("python", "command line"):
        with command_line() if interface == "command line" else contextlib.nullcontext():
            with pytest.raises(OptionError) as bad_hits:
                predictor.evaluate_retrieval(pairs["test"], hits="pairs")
            with pytest.raises(SchemaMismatchError) as unknown:
                predictor.embed(pairs["test"], "A")
            with pytest.raises(OptionError) as labels_for_pairs:
                predictor.evaluate_retrieval(tagged, hits="pair", labels="label")
        said[interface] = (str(bad_hits.value), str(unknown.value), str(labels_for_pairs.value))
    python, command = said["python"], said["command line"]
    assert python[0] == "hits=: pair, label or auto; got 'pairs'"
    assert command[0] == "--hits: pair, label or auto; got 'pairs'"
    assert python[1].startswith("modality=: this model has no modality 'A' (did you mean 'a'?); its modalities")
    assert command[1].startswith("--modality: this model has no modality 'A' (did you mean 'a'?); its modalities")
    assert python[2] == ("labels=: 'label' names the labels of label-level hits, but with hits='pair' a hit is only "
                         "the query's own row; drop labels=, or use hits='label'")
    assert command[2] == ("--labels: 'label' names the labels of label-level hits, but with --hits pair a hit is only "
                          "the query's own row; drop --labels, or use --hits label")
    assert not any("--" in message for message in python)


def test_label_hits_match_labels_as_training_does(contrastive, pairs) -> None:
    """7, 7.0 and '7' are one label (label_key); an empty label matches no row."""
    predictor, _ = contrastive
    clean = pairs["test"].assign(tag=[7, 8] * 30)
    messy = pairs["test"].assign(tag=pd.Series([7, 8.0, "7", 8, 7.0, "8"] * 10, dtype=object))
    expected = predictor.evaluate_retrieval(clean, "a", "b", hits="label", labels="tag")["a->b"]
    assert predictor.evaluate_retrieval(messy, "a", "b", hits="label", labels="tag")["a->b"] == expected
    with_empty = clean.assign(tag=clean["tag"].astype(object))
    with_empty.loc[[0, 1, 2], "tag"] = None
    with pytest.warns(UserWarning, match="a->b: 3 of 60 queries have no relevant gallery item"):
        scores = predictor.evaluate_retrieval(with_empty, "a", "b", hits="label", labels="tag")["a->b"]
    assert scores["queries_without_match"] == 3 and scores["queries"] == 57


def test_a_modality_empty_in_every_row_names_the_modality_and_the_manifest(contrastive, pairs) -> None:
    predictor, _ = contrastive
    no_b = pairs["test"].assign(**{f"b{i}": np.nan for i in range(DIM)})
    match = r"no row of DataFrame holds modality 'b' \(column\(s\) \['b0', 'b1', .*\] are empty or absent in all 60 rows\)"
    with pytest.raises(SchemaMismatchError, match=match):
        predictor.embed(no_b, "b")
    with pytest.raises(SchemaMismatchError, match=match):
        predictor.evaluate_retrieval(no_b)
    with pytest.raises(SchemaMismatchError, match=match):
        cca_baseline(predictor, no_b, pairs["test"])  # a CCA training manifest without the modality


def test_cca_training_rows_without_pairs_name_the_manifest_and_modalities(contrastive, pairs) -> None:
    predictor, _ = contrastive
    apart = pairs["train"].reset_index(drop=True).copy()
    apart.loc[:99, [f"b{i}" for i in range(DIM)]] = np.nan  # rows 0-99 hold only a, the others only b
    apart.loc[100:, [f"a{i}" for i in range(DIM)]] = np.nan
    with pytest.raises(SchemaMismatchError, match="linear CCA is fitted on the rows holding both 'a' and 'b': the "
                                                  "DataFrame has 0 such row\\(s\\); at least 3 are needed"):
        cca_baseline(predictor, apart, pairs["test"])


def test_a_modality_outside_the_shared_space_gets_one_message_everywhere() -> None:
    """evaluate_retrieval said 'no direction matches query=...' where embed, build_index and
    retrieve say the modality is not aligned; a name the model does not know lists its modalities."""
    def numbers(*columns: str) -> dict[str, Any]:
        return {"kind": "tabular", "columns": list(columns), "encoder": {"dim": 16, "hidden": [16], "dropout": 0.0}}

    cfg = {"task": "classification", "target": "label",
           "modalities": {"x": numbers("x0", "x1"), "y": numbers("y0", "y1"),
                          "caption": {"kind": "text", "column": "caption", "encoder": {"name": "embedding_bag", "dim": 8}}},
           "fusion": {"name": "concat"}, "head": {"name": "mlp", "hidden": [8]},
           "align": {"objective": "contrastive", "dim": 8, "modalities": ["x", "y"], "weight": 0.5},
           "train": {**TRAIN, "epochs": 1}, "report": {"rows": 0}}
    predictor = MultimodalPredictor.from_config(cfg).fit(colour_rows(60, 0), colour_rows(20, 1))
    test = colour_rows(20, 2)
    unaligned = "modality 'caption' is not aligned; this model embeds \\['x', 'y'\\]"
    for call in (lambda: predictor.evaluate_retrieval(test, query="caption"),
                 lambda: predictor.evaluate_retrieval(test, gallery="caption"),
                 lambda: predictor.evaluate_retrieval(test, "x", "caption"),
                 lambda: build_index(predictor, test, "caption"),
                 lambda: predictor.embed(test, "caption")):
        with pytest.raises(SchemaMismatchError, match=unaligned):
            call()
    with pytest.raises(SchemaMismatchError, match="this model has no modality 'nosuch'; its modalities are "
                                                  "\\['x', 'y', 'caption'\\], of which it embeds \\(aligns\\) \\['x', 'y'\\]"):
        predictor.evaluate_retrieval(test, query="nosuch", gallery="x")


def test_cca_on_inputs_leaves_out_only_the_directions_of_a_text_modality(with_task) -> None:
    """Token ids are no input features: the directions with the caption get no baseline (one
    warning naming the Python arguments to use instead); the others are scored."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = cca_baseline(with_task, colour_rows(150, 0), colour_rows(60, 2), features="input", hits="pair")
    assert set(results) == {"x->y", "y->x"} and results["x->y"]["queries"] == 60
    notes = [str(w.message) for w in caught if "linear-CCA" in str(w.message)]
    assert len(notes) == 1, notes
    assert notes[0].startswith("no linear-CCA baseline for caption->x, caption->y, x->caption, y->caption: it was "
                               "asked for on 'input' features, and 'caption' has no numeric input arrays")
    assert "(features='encoder' in cca_baseline, kind='encoder' in embed_rows; not" in notes[0]
    assert "--cca-features" not in notes[0]  # a Python call: no option of a command
    with pytest.warns(UserWarning, match="no linear-CCA baseline for x->caption"):
        assert cca_baseline(with_task, colour_rows(150, 0), colour_rows(60, 2), "x", "caption", features="input",
                            hits="pair") == {}
    from polymodal.retrieval.embed import embed_rows
    with pytest.raises(SchemaMismatchError, match="modality 'caption' has no numeric input arrays .*features instead "
                                                  "\\(features='encoder' in cca_baseline, kind='encoder' in "
                                                  "embed_rows\\)$"):
        embed_rows(with_task, colour_rows(10, 3), "caption", "input")


def test_label_hits_without_a_label_column_name_the_option_and_labels_need_label_hits(contrastive, pairs) -> None:
    predictor, _ = contrastive  # trained without a target
    tagged = pairs["test"].assign(label=[7, 8] * 30)
    with pytest.raises(OptionError, match="^hits='label': .* this model has no target to take labels from: name the "
                                          "label column with labels=, e.g. labels='label'; columns of DataFrame: "):
        predictor.evaluate_retrieval(tagged, hits="label")
    with pytest.raises(OptionError, match="^labels=: 'label' names the labels of label-level hits, but with "
                                          "hits='pair' a hit is only the query's own row; drop labels=, or use "
                                          "hits='label'$"):
        predictor.evaluate_retrieval(tagged, hits="pair", labels="label")
    assert predictor.evaluate_retrieval(tagged, hits="label", labels="label")["a->b"]["hits"] == "label"


def test_retrieval_is_across_modalities_and_query_rows_must_be_named_once(contrastive, pairs) -> None:
    from polymodal.errors import ManifestError

    predictor, _ = contrastive
    index = build_index(predictor, pairs["test"], "b")
    with pytest.raises(OptionError, match="^modality=: the index holds 'b' items, .* retrieval is across "
                                          "modalities unless .* same_modality=True; "
                                          "else query it with another of \\['a'\\]"):
        retrieve(predictor, index, pairs["test"], "b")
    # image -> image search, asked for: queries of the gallery's modality (here some of its own rows, found first)
    same = retrieve(predictor, index, pairs["test"].iloc[[7, 3, 11]], "b", k=2, same_modality=True)
    top = same[same["rank"] == 1]
    assert top["query"].tolist() == [7, 3, 11] and top["id"].tolist() == [7, 3, 11]
    assert np.allclose(top["score"], 1.0, atol=1e-5) and len(same) == 6
    repeated = pairs["test"].set_axis(["q0", "q0"] + [f"q{i}" for i in range(2, 60)])
    with pytest.raises(ManifestError, match="the queries' DataFrame index: 'q0' names 2 rows: DataFrame row 0 "
                                            "\\(index 'q0'\\), DataFrame row 1 \\(index 'q0'\\); ids must be unique"):
        retrieve(predictor, index, repeated, "a")
    hits = retrieve(predictor, index, pairs["test"].set_axis([f"q{i}" for i in range(60)]), "a", k=1)
    assert hits["query"].tolist() == [f"q{i}" for i in range(60)]


def test_identical_gallery_rows_are_warned_about_once(contrastive, pairs) -> None:
    """Exact copies tie with their original for every query; ties rank pessimistically (the rule
    stays), so the copies lower R@1: one warning says so and counts them."""
    import warnings

    predictor, _ = contrastive
    copied = pd.concat([pairs["test"], pairs["test"].iloc[[0, 1]]], ignore_index=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = predictor.evaluate_retrieval(copied)
    notes = [str(w.message) for w in caught if "identical embeddings" in str(w.message)]
    assert len(notes) == 1, notes
    assert ("'b': 4 of 62 rows share their vector with another row; 'a': 4 of 62 rows" in notes[0]
            and "Ties in similarity rank pessimistically" in notes[0])
    assert results["a->b"]["recall@1"] < predictor.evaluate_retrieval(pairs["test"])["a->b"]["recall@1"]
    with warnings.catch_warnings():  # copies of one label tie harmlessly
        warnings.simplefilter("error")
        predictor.evaluate_retrieval(copied.assign(tag=np.arange(62) % 60), hits="label", labels="tag")


def test_distinct_inputs_embedded_alike_are_blamed_on_the_model_not_the_data(contrastive, pairs) -> None:
    """A projection that maps every 'b' row onto one point (a collapsed embedding) ties rows
    whose inputs differ: the warning says the model collapsed them, not that the data repeats
    rows (the copied row counts too: its other twins differ from it)."""
    import warnings

    predictor, _ = contrastive

    class Collapsed(torch.nn.Module):
        def forward(self, pooled: torch.Tensor) -> torch.Tensor:
            return torch.ones(len(pooled), 16)

    # put back by hand: monkeypatch.setattr reads a module's child as absent (it is no instance
    # attribute) and deleted it at teardown, breaking the module's shared predictor for later tests
    heads = predictor.net.projections.heads
    kept, heads["b"] = heads["b"], Collapsed()
    copied = pd.concat([pairs["test"], pairs["test"].iloc[[0]]], ignore_index=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predictor.evaluate_retrieval(copied, query="a", gallery="b")
    finally:
        heads["b"] = kept
    notes = [str(w.message) for w in caught if "identically" in str(w.message) or "identical embeddings" in str(w.message)]
    assert len(notes) == 1, notes
    assert notes[0].startswith("the model embeds different inputs identically ('b': 61 of 61 rows share their vector "
                               "with another row whose input differs)"), notes[0]
    assert "partly collapsed" in notes[0] and "remove repeated rows" not in notes[0]


def test_same_modality_with_queries_of_another_modality_is_refused(contrastive, pairs) -> None:
    """same_modality allows queries of the index's own modality; with another it would do nothing."""
    predictor, _ = contrastive
    index = build_index(predictor, pairs["test"], "b")
    with pytest.raises(OptionError, match="^same_modality=: allows queries of the index's own "
                                          "modality, and the index holds 'b' items while the queries are 'a': it "
                                          "does nothing here; drop it"):
        retrieve(predictor, index, pairs["test"], "a", same_modality=True)
    unnamed = EmbeddingIndex.build(predictor.embed(pairs["test"], "b").to_numpy(), meta={"model": index.meta["model"]})
    with pytest.raises(OptionError, match="^same_modality=: .* the index records no modality"):
        retrieve(predictor, unnamed, pairs["test"], "a", same_modality=True)


def test_rows_without_the_modality_are_left_out_with_one_warning_that_counts_them(contrastive, pairs) -> None:
    """embed, retrieve and evaluate_retrieval say how many rows lacked the modality (once per
    modality); the linear-CCA baseline, which scores the same rows, does not say it again."""
    import warnings

    predictor, _ = contrastive
    gaps = pairs["test"].copy()
    gaps.loc[:9, [f"a{i}" for i in range(DIM)]] = np.nan  # rows 0-9 hold no 'a'
    said = "10 of 60 rows of DataFrame hold no 'a' \\(column\\(s\\) \\['a0', .*\\] empty\\): they are left out, and the other 50 embedded"
    with pytest.warns(UserWarning, match=said):
        assert len(predictor.embed(gaps, "a")) == 50
    index = build_index(predictor, pairs["test"], "b")
    with pytest.warns(UserWarning, match=said):
        assert retrieve(predictor, index, gaps, "a", k=1)["query"].tolist() == list(range(10, 60))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor.evaluate_retrieval(gaps)
        cca_baseline(predictor, pairs["train"], gaps)
    notes = [str(w.message) for w in caught if "hold no" in str(w.message)]
    assert notes == [notes[0]] and notes[0].startswith("10 of 60 rows of DataFrame hold no 'a'"), notes
    with warnings.catch_warnings():  # every row holds the modality: nothing to say
        warnings.simplefilter("error")
        predictor.embed(pairs["test"], "a")


def test_rows_left_out_are_counted_when_a_file_could_not_be_read_too(tmp_path) -> None:
    """Once a file is skipped, encoding drops every row with no modality present: the rows with an
    empty cell were gone from the table before they were counted, and nothing was said of them."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        np.save(tmp_path / f"s{i}.npy", rng.normal(size=32).astype(np.float32))
        rows.append({"a0": float(rng.normal()), "a1": float(rng.normal()), "v": f"s{i}.npy"})
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "train.csv", index=False)
    config = {"task": "retrieval", "modalities": {
        "a": {"kind": "tabular", "columns": ["a0", "a1"], "encoder": {"dim": 8, "hidden": [8]}},
        "v": {"kind": "signal", "column": "v", "preprocess": {"length": 32}, "encoder": {"name": "cnn1d", "dim": 8}}},
        "align": {"objective": "contrastive", "dim": 8}, "data": {"on_error": "missing"}, "report": {"rows": 0},
        "train": {"epochs": 1, "batch_size": 16, "seed": 0, "progress": False, "num_workers": 0}}
    predictor = MultimodalPredictor.from_config(config).fit(tmp_path / "train.csv", tmp_path / "train.csv")
    frame.loc[0, "v"], frame.loc[1, "v"] = None, "bad.npy"  # an empty cell; a file that cannot be read
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    frame.to_csv(tmp_path / "test.csv", index=False)
    with pytest.warns(UserWarning, match=r"2 of 40 rows of test.csv hold no 'v' \(column\(s\) \['v'\] empty, or for 1 "
                                         r"of them a file that could not be read .*the other 38 embedded"):
        assert len(predictor.embed(tmp_path / "test.csv", "v")) == 38


def test_an_unknown_modality_names_the_argument_and_the_one_meant(contrastive, pairs) -> None:
    predictor, _ = contrastive
    index = build_index(predictor, pairs["test"], "b")
    known = "its modalities are \\['a', 'b'\\], of which it embeds \\(aligns\\) \\['a', 'b'\\]"
    for call, given in ((lambda: predictor.embed(pairs["test"], "A"), "modality="),
                        (lambda: build_index(predictor, pairs["test"], "A"), "modality="),
                        (lambda: retrieve(predictor, index, pairs["test"], "A"), "modality="),
                        (lambda: predictor.evaluate_retrieval(pairs["test"], query="A"), "query="),
                        (lambda: predictor.evaluate_retrieval(pairs["test"], gallery="A"), "gallery=")):
        with pytest.raises(SchemaMismatchError, match=f"^{given}: this model has no modality 'A' \\(did you mean "
                                                      f"'a'\\?\\); {known}$"):
            call()



def test_a_learned_temperature_is_held_at_its_cap_and_can_come_back(pairs, monkeypatch) -> None:
    """A learned logit scale past the cap (where momentum would carry it) is clamped back after
    every training step, CLIP's rule, not left to drift; at the cap its gradient still flows, so
    a loss that wants it lower can lower it (a clamp in the forward pass would stop it there)."""
    import math

    import torch

    import polymodal.training.alignment as alignment
    from polymodal.models.objectives.align import capped_scale

    built, build = [], alignment.build_objective

    def past_the_cap(*args):
        built.append(build(*args))
        with torch.no_grad():
            built[-1].log_scale.fill_(6.0)  # a scale of 403
        return built[-1]

    monkeypatch.setattr(alignment, "build_objective", past_the_cap)
    MultimodalPredictor.from_config(retrieval_config(epochs=1)).fit(pairs["train"], pairs["valid"])
    assert len(built) == 1 and isinstance(built[0].log_scale, torch.nn.Parameter)
    assert built[0].log_scale.item() <= math.log(100.0) + 1e-6
    at_cap = torch.tensor(math.log(100.0), requires_grad=True)
    (-capped_scale(at_cap)).backward()  # a loss that wants a smaller scale
    assert at_cap.grad.item() < 0 and capped_scale(torch.tensor(9.0)).item() == pytest.approx(100.0)
