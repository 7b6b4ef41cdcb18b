"""Within-modality attributions (Captum Integrated Gradients) for every modality kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal import MultimodalPredictor
from polymodal.evaluation.attribution import mapped_rows
from polymodal.evaluation.data import batches, load_eval_data

from .helpers import all_kinds_config, all_kinds_dataset

SAMPLES = 2


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    frame = all_kinds_dataset(root)
    frame.to_csv(root / "all.csv", index=False)
    predictor = MultimodalPredictor.from_config(all_kinds_config()).fit(root / "all.csv")
    return predictor, root / "all.csv", predictor.explain(root / "all.csv", samples=SAMPLES, steps=64)


def target_logit(predictor, data, position: int, modality: str, target: int, baseline: bool) -> float:
    """The explained logit for one row, with the modality's input as is or at the IG baseline."""
    keep = np.zeros(len(data.table), bool)
    keep[position] = True
    batch = next(batches(predictor, data.table.select(keep), batch_size=1))
    inputs = {name: dict(values) for name, values in batch["inputs"].items()}
    if baseline:
        x = inputs[modality]["x"]
        pad = predictor.pipeline.preprocessors[modality].pad_id if modality == "text" else 0
        inputs[modality]["x"] = torch.full_like(x, pad)
    with torch.no_grad():
        return float(predictor.net(inputs, batch["present"])[0, target])


def sampled(explanation) -> list[int]:
    """The manifest rows the explanation draws maps for (a mistake first, then each predicted class)."""
    truth = np.array([list(explanation.outputs).index(label) for label in explanation.labels])
    return explanation.rows[mapped_rows("classification", explanation.full, truth, SAMPLES)].tolist()


def test_every_kind_gets_an_attribution_for_every_sample(explained):
    _, _, explanation = explained
    kinds = {(item.modality, item.row) for item in explanation.within}
    assert kinds == {(m, r) for m in ("audio", "image", "signal", "table", "text") for r in sampled(explanation)}
    predicted = explanation.values["explained"]
    for item in explanation.within:
        assert item.output == predicted.loc[item.row]
        assert np.isfinite(item.attribution).all() and np.abs(item.attribution).sum() > 0


def test_attributions_add_up_to_the_logit_change_from_the_baseline(explained):
    """Integrated Gradients' completeness: the attributions of an input sum to f(input) - f(baseline)."""
    predictor, path, explanation = explained
    data = load_eval_data(predictor, path, require_target=True)
    classes = predictor.pipeline.targets.classes
    for item in explanation.within:
        target = classes.index(item.output)
        change = (target_logit(predictor, data, item.row, item.modality, target, baseline=False)
                  - target_logit(predictor, data, item.row, item.modality, target, baseline=True))
        total = float(item.attribution.sum())
        assert total == pytest.approx(change, rel=0.05, abs=2e-3), (item.modality, item.row)


def test_display_shapes_follow_each_kind(explained):
    predictor, path, explanation = explained
    items = {(i.modality, i.row): i for i in explanation.within}
    first, second = sampled(explanation)
    image = items[("image", first)]
    assert image.layout == "image" and image.attribution.shape == (8, 8) and image.display.shape == (8, 8, 1)
    assert image.display.dtype == np.uint8
    audio = items[("audio", first)]
    assert audio.layout == "map" and audio.attribution.shape == audio.display.shape and audio.attribution.shape[0] == 16
    hop = predictor.config.modalities["audio"].preprocess.hop_ms
    assert audio.time_axis == f"frame (one per {hop:g} ms)", "the time axis says how long a frame is"
    frames = [items[("audio", r)].attribution.shape[1] for r in (first, second)]
    samples = [1200 + 200 * (r % 3) for r in (first, second)]  # each clip's length (all_kinds_dataset)
    assert np.sign(frames[1] - frames[0]) == np.sign(samples[1] - samples[0]), "padding frames are trimmed per clip"
    signal = items[("signal", first)]
    assert signal.layout == "lines" and signal.attribution.shape == (1, 32) and signal.time_axis == "sample"
    table = items[("table", first)]
    given = pd.read_csv(path).iloc[first]
    fill = dict(zip(predictor.pipeline.preprocessors["table"].numeric, predictor.pipeline.preprocessors["table"].fill))
    shown = [f"{c} = {given[c]:.4g}" if pd.notna(given[c]) else f"{c} (blank: imputed {fill[c]:.4g})"
             for c in ("x1", "x2")]  # the value as given, back from the standardised input
    assert table.layout == "bars" and table.labels == [*shown, "x1 (missing)", "x2 (missing)"]
    assert table.attribution.shape == (4,)
    text = items[("text", second)]
    prep = predictor.pipeline.preprocessors["text"]
    raw = pd.read_csv(path)["text"].iloc[second]
    assert text.layout == "tokens" and text.labels == prep.token_labels(raw) and text.attribution.shape == (len(text.labels),)


def test_the_page_shows_every_kind(explained, tmp_path):
    _, _, explanation = explained
    page = explanation.to_html(tmp_path).read_text(encoding="utf-8")
    assert "Inside each modality" in page
    assert "These maps need not agree with the Shapley values, even in sign: a Shapley value measures the modality " \
           "against its absence (the model's missing-modality path), Integrated Gradients against a baseline input" in page
    assert page.count("<img") >= 1 + 4 * SAMPLES  # importance plot + image, audio, signal, table per sample
    tokens = sum(len(item.labels) for item in explanation.within if item.modality == "text")
    assert tokens > 0 and page.count("<span title=") == tokens  # one highlighted span per token
    columns = pd.read_csv(tmp_path / "columns_table.csv")  # the table's columns over the rows explained
    bars = [i for i in explanation.within if i.modality == "table"]
    assert len(bars) == SAMPLES and "Columns of table" in page
    mean_abs = {f: np.mean([abs(b.attribution[b.features.index(f)]) for b in bars]) for f in bars[0].features}
    assert columns["column"].tolist() == sorted(mean_abs, key=lambda f: -mean_abs[f])  # largest first
    assert columns["mean_abs_attribution"].tolist() == pytest.approx([mean_abs[f] for f in columns["column"]])


def test_heat_maps_work_on_features_read_back_from_the_cache(explained, tmp_path, monkeypatch):
    """With ``data.cache_dir`` the encoded arrays are memory-mapped segments, not numpy arrays."""
    predictor, path, explanation = explained
    monkeypatch.setattr(predictor.config.data, "cache_dir", tmp_path / "cache")
    predictor.explain(path, samples=0)  # fills the cache
    assert any((tmp_path / "cache").iterdir())
    cached = predictor.explain(path, samples=1, steps=4)
    image = next(i for i in cached.within if i.modality == "image")
    expected = next(i for i in explanation.within if i.modality == "image" and i.row == image.row)
    np.testing.assert_array_equal(image.display, expected.display)


def test_a_signal_spectrogram_gets_a_time_frequency_map(tmp_path):
    frame = all_kinds_dataset(tmp_path)
    frame.to_csv(tmp_path / "all.csv", index=False)
    config = all_kinds_config()
    config["modalities"] = {"signal": {**config["modalities"]["signal"],
                                       "preprocess": {"length": 32, "spectrogram": {"n_fft": 8, "hop": 4}}},
                            "table": config["modalities"]["table"]}
    predictor = MultimodalPredictor.from_config(config).fit(tmp_path / "all.csv")
    explanation = predictor.explain(tmp_path / "all.csv", samples=1, steps=16)
    signal = next(item for item in explanation.within if item.modality == "signal")
    assert signal.layout == "map"
    assert signal.attribution.shape == signal.display.shape and signal.attribution.shape[0] == 8 // 2 + 1
    assert signal.attribution.shape[1] > 1 and np.abs(signal.attribution).sum() > 0
    page = explanation.to_html(tmp_path / "page").read_text(encoding="utf-8")
    assert page.count("<img") >= 2  # importance plot + the map


def test_a_video_run_is_explained_with_a_heat_map_per_real_frame(tmp_path):
    """``polymodal explain`` on a run with a video modality: Shapley over the modalities, and inside
    the video a heat-map per sampled frame (a short clip's padding left out)."""
    import pandas as pd
    from typer.testing import CliRunner

    from polymodal.cli import app

    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        k, frames = i % 2, 4 + i % 3  # clips of 4-6 frames, 6 sampled: the short ones padded
        clip = np.zeros((frames, 8, 8), np.uint8)
        for t in range(frames):  # a bar moving right (class 1) or left (class 0)
            clip[t, 2:6, 1 + t if k else 6 - t] = 255
        np.save(tmp_path / f"v{i}.npy", clip)
        rows.append({"clip": f"v{i}.npy", "x1": float(k + rng.normal(0, 0.5)), "label": f"c{k}"})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    config = {
        "task": "classification", "target": "label",
        "modalities": {
            "video": {"kind": "video", "column": "clip",
                      "preprocess": {"size": 8, "color": "gray", "frames": 6, "sampling": "stride"},
                      "encoder": {"name": "frame_cnn", "frame": {"name": "cnn", "channels": [4], "dim": 8},
                                  "temporal": "gru", "dim": 8}},
            "table": {"kind": "tabular", "columns": ["x1"], "encoder": {"dim": 4, "hidden": [8]}}},
        "fusion": {"name": "concat"},
        "train": {"epochs": 2, "batch_size": 8, "progress": False, "early_stopping": None},
        "report": {"rows": 0},
    }
    predictor = MultimodalPredictor.from_config(config).fit(tmp_path / "m.csv", out=tmp_path / "run")
    result = CliRunner().invoke(app, ["explain", str(tmp_path / "run"), "--data", str(tmp_path / "m.csv"),
                                      "--samples", "3"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "run" / "explain" / "explain.html").read_text(encoding="utf-8")
    assert "<img alt=\"video\"" in page and page.count("<img") >= 1 + 2 * 3  # importance + video and table per row
    assert "A video shows its sampled frames" in page  # said where a video is shown (test_explained_output: not else)
    # the frames' IG totals and the video's Shapley value have different references: the page says so
    assert "can come with a positive Shapley value for the video, which compares it with no video at all" in page
    assert set(pd.read_csv(tmp_path / "run" / "explain" / "shapley.csv").columns) >= {"video", "table"}

    explanation = predictor.explain(tmp_path / "m.csv", samples=3, steps=64)
    data = load_eval_data(predictor, tmp_path / "m.csv", require_target=True)
    classes = predictor.pipeline.targets.classes
    videos = [item for item in explanation.within if item.modality == "video"]
    assert [item.row for item in videos] == [0, 1, 2]
    for item in videos:
        frames = 4 + item.row % 3
        assert item.layout == "frames" and item.attribution.shape == (frames, 8, 8)
        assert item.display.shape == (frames, 8, 8, 1) and item.display.dtype == np.uint8
        assert item.display.max() == 255 and np.abs(item.attribution).sum() > 0
        change = (target_logit(predictor, data, item.row, "video", classes.index(item.output), baseline=False)
                  - target_logit(predictor, data, item.row, "video", classes.index(item.output), baseline=True))
        assert float(item.attribution.sum()) == pytest.approx(change, rel=0.05, abs=2e-3)  # nothing left on padding


def test_a_categorical_column_is_attributed_through_its_embedding(tmp_path):
    """Numbers and categories are attributed together at the encoder body's input; a category's
    share is its embedding's, against the column's training-weighted mean embedding; together they
    add up to the logit change from "the average row" (numbers 0, each category's mean embedding)."""
    from helpers_models import classification_config, make_dataset, write_splits

    from polymodal.evaluation.integrated_gradients import tabular_baseline, through_body

    paths = write_splits(tmp_path, make_dataset(tmp_path, n=60))
    predictor = MultimodalPredictor.from_config(classification_config(epochs=2)).fit(paths["train"], paths["valid"])
    explanation = predictor.explain(paths["test"], samples=3, steps=64)
    data = load_eval_data(predictor, paths["test"], require_target=True)
    classes = predictor.pipeline.targets.classes
    colours = data.manifest.frame["color"]
    tables = [item for item in explanation.within if item.modality == "tab"]
    assert len(tables) == 3
    for item in tables:
        position = int(np.flatnonzero(data.source_rows == item.row)[0])
        assert [label.split(" ")[0] for label in item.labels[:2]] == ["x1", "x2"]  # with their values
        assert item.labels[-1] == f"color = {colours.iloc[position]}"
        keep = np.zeros(len(data.table), bool)
        keep[position] = True
        batch = next(batches(predictor, data.table.select(keep), batch_size=1))
        target = classes.index(item.output)
        with torch.no_grad():
            actual = float(predictor.net(batch["inputs"], batch["present"])[0, target])
            encoder = predictor.net.encoders["tab"]
            average = tabular_baseline(predictor.pipeline.preprocessors["tab"], encoder)[None]
            counts = predictor.pipeline.preprocessors["tab"].category_counts["color"]
            assert sum(counts) > 0 and len(counts) == len(predictor.pipeline.preprocessors["tab"].categories["color"])
            feeds = (batch["inputs"], batch["present"])
            baseline = float(through_body(encoder, predictor.net)(average, *feeds)[0, target])
        assert float(item.attribution.sum()) == pytest.approx(actual - baseline, rel=0.05, abs=2e-3)


def test_a_blank_number_is_labelled_with_what_was_imputed_not_as_a_measurement():
    """A bar for a blank lab value shows the effect of the imputed value: its label says so."""
    from types import SimpleNamespace

    from polymodal.config.modalities import TabularModality
    from polymodal.data.modalities import build_preprocessor
    from polymodal.evaluation.integrated_gradients import _tabular_bars

    prep = build_preprocessor(TabularModality(kind="tabular", columns=["crp", "wbc"]), "labs")
    prep.fit([[10.0, 8.0], [30.0, None], [20.0, 12.0]])
    x = torch.as_tensor(np.stack([prep.featurize([prep.decode([25.0, None])])["num"][0]]))
    predictor, encoder = SimpleNamespace(pipeline=SimpleNamespace(preprocessors={"labs": prep})), \
        SimpleNamespace(embeddings=[])
    _, _, labels, features = _tabular_bars(predictor, "labs", np.zeros(4), {"x": x, "cat": torch.zeros(1, 0)}, 0,
                                           encoder)
    assert labels == ["crp = 25", "wbc (blank: imputed 10)", "crp (missing)", "wbc (missing)"]
    assert features == ["crp", "wbc", "crp (missing)", "wbc (missing)"]
    unflagged = build_preprocessor(TabularModality(kind="tabular", columns=["crp", "wbc"],
                                                   preprocess={"missing_indicator": False}), "labs")
    unflagged.fit([[10.0, 8.0], [30.0, None], [20.0, 12.0]])
    x = torch.as_tensor(np.stack([unflagged.featurize([unflagged.decode([25.0, None])])["num"][0]]))
    predictor.pipeline.preprocessors["labs"] = unflagged
    _, _, labels, _ = _tabular_bars(predictor, "labs", np.zeros(2), {"x": x, "cat": torch.zeros(1, 0)}, 0, encoder)
    assert labels == ["crp = 25", "wbc = 10 (the imputed value: blank?)"]  # no flag tells a blank apart


def test_a_categorical_column_without_signal_gets_near_zero_attribution(tmp_path, monkeypatch):
    """A number decides the label and a category is pure noise (blank in a tenth of the rows, so
    the unknown/missing category's embedding trains as "missing"): measured against the average
    row (the column's training-weighted mean embedding), the noise column's attribution is small
    beside the number's; against the unknown category, as before, it was over twice as large."""
    import polymodal.evaluation.integrated_gradients as ig

    rng = np.random.default_rng(0)
    n = 1000
    signal = rng.normal(size=n)
    frame = pd.DataFrame({"x": signal.round(3), "noise": rng.choice(["a", "b", "c"], n),
                          "label": np.where(signal + rng.normal(0, 0.3, n) > 0, "yes", "no")})
    frame.loc[rng.random(n) < 0.1, "noise"] = None
    config = {"task": "classification", "target": "label",
              "modalities": {"tab": {"kind": "tabular", "columns": ["x"], "categorical": ["noise"],
                                     "encoder": {"dim": 16, "hidden": [32]}}},
              "head": {"name": "mlp", "hidden": [16]}, "report": {"rows": 0},
              "train": {"epochs": 8, "batch_size": 32, "lr": 0.01, "seed": 0, "progress": False, "num_workers": 0}}
    predictor = MultimodalPredictor.from_config(config).fit(frame.iloc[:800], frame.iloc[800:])
    prep = predictor.pipeline.preprocessors["tab"]
    train = frame["noise"].iloc[:800]
    assert prep.category_counts["noise"] == [int((train == c).sum()) for c in ("a", "b", "c")]

    def mean_abs() -> dict[str, float]:
        explanation = predictor.explain(frame.iloc[800:], samples=40, steps=32)
        tables = [item for item in explanation.within if item.modality == "tab"]
        assert len(tables) >= 20
        return dict(zip(tables[0].features, np.abs(np.stack([t.attribution for t in tables])).mean(axis=0),
                        strict=True))

    average = mean_abs()
    assert average["noise"] < 0.15 * average["x"], average
    baseline = ig.tabular_baseline

    def unknown_category(prep, encoder):  # the baseline before: the unknown category's embedding
        found = baseline(prep, encoder)
        width = encoder.embeddings[0].embedding_dim
        found[-width:] = encoder.embeddings[0].weight[0].detach()
        return found

    monkeypatch.setattr(ig, "tabular_baseline", unknown_category)
    unknown = mean_abs()
    assert unknown["noise"] > 1.5 * average["noise"], (unknown, average)
