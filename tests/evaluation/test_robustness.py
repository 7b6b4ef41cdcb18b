"""Robustness sweeps: corruption after decoding, seeded, never cached; summaries and references."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from helpers_models import classification_config, make_dataset, write_splits

from polymodal import MultimodalPredictor
from polymodal.data.content_keys import StatMemo
from polymodal.errors import OptionError, SchemaMismatchError, command_line
from polymodal.evaluation.corruptions import CORRUPTIONS
from polymodal.evaluation.data import load_eval_data
from polymodal.evaluation.robustness import _summary, area, corrupt_table, parse_corruptions, robustness_sweep
from polymodal.evaluation.sweeps import run_evaluations


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Image + tabular classifier, trained with an on-disk feature cache; saved to a run folder."""
    root = tmp_path_factory.mktemp("data")
    paths = write_splits(root, make_dataset(root, n=60))
    cache = tmp_path_factory.mktemp("cache")
    config = classification_config(modality_dropout=0.2)
    config["data"] = {"cache_dir": str(cache)}
    config["report"] = {"rows": 0}
    folder = tmp_path_factory.mktemp("runs") / "clf"
    predictor = MultimodalPredictor.from_config(config).fit(paths["train"], paths["valid"], out=folder)
    return predictor, paths, cache, folder


def snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_sweep_starts_from_the_clean_metric_is_seeded_and_never_touches_the_cache(run, monkeypatch):
    predictor, paths, cache, _ = run
    # The files were written moments ago: let the stat memo remember them at once, so that the
    # clean evaluation below leaves the cache complete whatever the test's timing (otherwise the
    # sweep's own clean pass could remember them later, a legitimate write of clean identities).
    monkeypatch.setattr(StatMemo, "SETTLE_NS", 0)
    predictor.evaluate(paths["test"])  # the clean test rows are cached now
    before = snapshot(cache)
    first = robustness_sweep(predictor, paths["test"], ["img:gaussian_noise", "tab"])
    assert snapshot(cache) == before, "corrupted features went into the feature cache"
    again = robustness_sweep(predictor, paths["test"], ["img:gaussian_noise", "tab"])
    assert first.curves.equals(again.curves)
    clean = predictor.evaluate(paths["test"])["accuracy"]
    curves = first.curves
    assert set(zip(curves["modality"], curves["corruption"])) == {("img", "gaussian_noise"), ("tab", "missing"),
                                                                  ("tab", "swap")}
    assert (curves.groupby(["modality", "corruption"])["severity"].apply(list) == [list(range(6))] * 3).all()
    assert (curves[curves["severity"] == 0]["accuracy"] == clean).all()
    assert (curves["failed"] == 0).all()
    levels = curves[(curves["corruption"] == "gaussian_noise") & (curves["severity"] > 0)]["level"].tolist()
    assert levels == list(CORRUPTIONS.get("image", "gaussian_noise").levels)
    summary = first.summary.set_index(["modality", "corruption"])
    for key, part in curves.groupby(["modality", "corruption"]):
        assert summary.loc[key, "relative_robustness"] == pytest.approx(area(part["accuracy"].tolist()))
        assert summary.loc[key, "clean"] == clean
        assert summary.loc[key, "worst"] == part["accuracy"].min()
    labels = pd.read_csv(paths["test"])["label"]
    assert first.chance == pytest.approx(labels.value_counts().max() / len(labels))  # the most frequent class's share


def test_each_swept_cell_is_decoded_once_for_every_corruption_and_severity(run, monkeypatch):
    """The sweep decodes each image once and corrupts copies of it, with the curves of decoding it
    again for every corrupted evaluation (what it does beyond ``DECODED_KEPT_BYTES``)."""
    from polymodal.evaluation import robustness

    predictor, paths, _, _ = run
    data = load_eval_data(predictor, paths["test"], require_target=True)
    present = int(data.table.modalities["img"].present.sum())
    prep = type(predictor.pipeline.preprocessors["img"])
    calls = []
    decode = prep.decode
    monkeypatch.setattr(prep, "decode", lambda self, value: calls.append(value) or decode(self, value))
    outputs = {"once": [], "every time": []}  # the model's outputs of each evaluation, clean first
    raw_outputs = type(predictor).raw_outputs
    specs = ["img:gaussian_noise", "img:occlusion"]
    monkeypatch.setattr(type(predictor), "raw_outputs", lambda self, t: outputs["once"].append(raw_outputs(self, t))
                        or outputs["once"][-1])
    once = robustness_sweep(predictor, data, specs)
    assert len(calls) == present
    calls.clear()
    monkeypatch.setattr(robustness, "DECODED_KEPT_BYTES", 0)
    monkeypatch.setattr(type(predictor), "raw_outputs",
                        lambda self, t: outputs["every time"].append(raw_outputs(self, t)) or outputs["every time"][-1])
    every_time = robustness_sweep(predictor, data, specs)
    assert len(calls) >= 2 * 5 * present  # every corrupted evaluation decoded its images again
    pd.testing.assert_frame_equal(once.curves, every_time.curves)
    assert len(outputs["once"]) == len(outputs["every time"]) == 1 + 2 * 5  # clean, then 2 corruptions x 5 severities
    for a, b in zip(outputs["once"], outputs["every time"]):
        np.testing.assert_array_equal(a, b)  # the same corrupted inputs, whichever way they were decoded
    assert not np.array_equal(outputs["once"][0], outputs["once"][-1])  # the corruptions changed the outputs


def test_corrupted_table_changes_only_the_corrupted_modality_and_only_above_severity_zero(run):
    predictor, paths, _, _ = run
    data = load_eval_data(predictor, paths["test"], require_target=True)
    noise = CORRUPTIONS.get("image", "gaussian_noise")
    clean_img = np.asarray(data.table.modalities["img"].arrays["x"])
    same, failed = corrupt_table(predictor, data, "img", noise, 0)
    assert failed == 0
    np.testing.assert_array_equal(np.asarray(same.modalities["img"].arrays["x"]), clean_img)
    noisy, _ = corrupt_table(predictor, data, "img", noise, 5)
    present = data.table.modalities["img"].present
    np.testing.assert_array_equal(noisy.modalities["img"].present, present)
    changed = np.asarray(noisy.modalities["img"].arrays["x"]) != clean_img
    assert changed[present].reshape(present.sum(), -1).any(axis=1).all(), "a present image was not corrupted"
    assert not changed[~present].any(), "an absent image got values"
    for key, value in data.table.modalities["tab"].arrays.items():
        np.testing.assert_array_equal(np.asarray(noisy.modalities["tab"].arrays[key]), np.asarray(value))


def test_a_rows_noise_does_not_depend_on_which_other_rows_are_evaluated(run):
    predictor, paths, _, _ = run
    noise = CORRUPTIONS.get("image", "salt_pepper")
    full = load_eval_data(predictor, paths["test"], require_target=True)
    part = load_eval_data(predictor, paths["test"], require_target=True, max_rows=5, seed=3)
    assert len(part) == 5
    full_x = np.asarray(corrupt_table(predictor, full, "img", noise, 3)[0].modalities["img"].arrays["x"])
    part_x = np.asarray(corrupt_table(predictor, part, "img", noise, 3)[0].modalities["img"].arrays["x"])
    np.testing.assert_array_equal(part_x, full_x[part.source_rows])


def test_a_reference_run_gives_effective_robustness(run):
    predictor, paths, _, folder = run
    reference = MultimodalPredictor.load(folder)
    result = robustness_sweep(predictor, paths["test"], ["img:contrast"], reference=reference)
    np.testing.assert_allclose(result.curves["reference"], result.curves["accuracy"])
    assert result.summary["effective_robustness"].tolist() == pytest.approx([0.0])
    other = MultimodalPredictor.from_config({**classification_config(), "modalities": {
        "tab": classification_config()["modalities"]["tab"]}, "report": {"rows": 0}})
    other.fit(paths["train"], paths["valid"])
    with pytest.raises(SchemaMismatchError, match=r"^the reference run must have modality 'img' of kind 'image' "
                                                  r"\(it is swept\); it has \{'tab': 'tabular'\}"):
        robustness_sweep(predictor, paths["test"], ["img:contrast"], reference=other)
    assert len(result.summary) == 1 and result.summary.iloc[0]["reference_clean"] == result.summary.iloc[0]["clean"]
    assert result.summary.iloc[0]["reference_relative_robustness"] == pytest.approx(
        result.summary.iloc[0]["relative_robustness"])


@pytest.fixture(scope="module")
def two_class_reference(run, tmp_path_factory):
    """A reference run saved to a folder, trained without the test rows' third class."""
    _, paths, _, _ = run
    kept = {}
    for split in ("train", "valid"):
        frame = pd.read_csv(paths[split])
        kept[split] = paths[split].parent / f"{split}_two_classes.csv"
        frame[frame["label"] != frame["label"].iloc[2]].to_csv(kept[split], index=False)
    config = {**classification_config(), "report": {"rows": 0}}
    folder = tmp_path_factory.mktemp("runs") / "two_classes"
    return MultimodalPredictor.from_config(config).fit(kept["train"], kept["valid"], out=folder), folder


def spy_on_sweeps(monkeypatch) -> list[str]:
    """Record which predictor each sweep ran for (by its run folder)."""
    from polymodal.evaluation import robustness

    calls: list[str] = []
    real = robustness._sweep_curves

    def spy(predictor, *args, **kwargs):
        calls.append(str(predictor.run_dir))
        return real(predictor, *args, **kwargs)

    monkeypatch.setattr(robustness, "_sweep_curves", spy)
    return calls


def test_a_reference_that_does_not_know_the_evaluated_labels_is_refused_before_any_sweep(
        run, two_class_reference, monkeypatch):
    """A reference trained without a class of the evaluated rows once failed only after the whole
    sweep of the evaluated run, with a message that read as that run's own."""
    predictor, paths, _, _ = run
    reference, folder = two_class_reference
    calls = spy_on_sweeps(monkeypatch)
    with pytest.raises(SchemaMismatchError, match=rf"^the reference run {re.escape(str(folder))} cannot score the "
                                                  r"evaluated rows: test.csv row \d+ \(line \d+\): label '\w+' in "
                                                  r"column 'label' was not seen in training"):
        robustness_sweep(predictor, paths["test"], ["tab:swap"], reference=reference)
    assert calls == [], "a sweep ran before the reference was checked"
    wrong_task = MultimodalPredictor.load(folder)
    wrong_task.config = wrong_task.config.model_copy(update={"task": "regression"})
    with pytest.raises(SchemaMismatchError, match=rf"^the reference run {re.escape(str(folder))} does task 'regression'; "
                                                  r"the evaluated run does 'classification'"):
        robustness_sweep(predictor, paths["test"], ["tab:swap"], reference=wrong_task)
    assert calls == []
    robustness_sweep(predictor, paths["test"], ["tab:swap"], reference=predictor)  # the spy sees a good one
    assert len(calls) == 2


def test_corruption_specs_are_checked(run):
    predictor = run[0]
    assert parse_corruptions(["img:blur", "img:blur"], predictor) == {"img": ["blur"]}
    assert parse_corruptions(["img"], predictor) == {"img": CORRUPTIONS.names("image")}
    assert parse_corruptions(None, predictor) == {"img": CORRUPTIONS.names("image"),
                                                  "tab": CORRUPTIONS.names("tabular")}
    with command_line():  # as 'polymodal evaluate --robustness --corruption ...' names them
        with pytest.raises(OptionError, match=r"^--corruption audio:white_noise: unknown modality 'audio'.*\['img', 'tab'\]"):
            parse_corruptions(["audio:white_noise"], predictor)
        with pytest.raises(OptionError, match=r"^--corruption img:white_noise: corruption 'white_noise'.*'image'.*"
                                              r"allowed: \['gaussian_noise'"):
            parse_corruptions(["img:white_noise"], predictor)
        with pytest.raises(OptionError, match=r"^--corruption img:: no corruption after the colon"):
            parse_corruptions(["img:"], predictor)
    # a Python call names its argument, not the command's option
    with pytest.raises(OptionError, match=r"^corruptions='audio:white_noise': unknown modality 'audio'") as caught:
        parse_corruptions(["audio:white_noise"], predictor)
    assert "--corruption" not in str(caught.value)
    with pytest.raises(OptionError, match=r"^corruptions=3: a spec is MODALITY or MODALITY:CORRUPTION text; got int"):
        parse_corruptions([3], predictor)


def test_a_single_spec_string_is_one_spec_not_its_letters(run):
    predictor = run[0]
    assert parse_corruptions("img:blur", predictor) == {"img": ["blur"]}
    assert parse_corruptions("tab", predictor) == {"tab": CORRUPTIONS.names("tabular")}
    result = robustness_sweep(predictor, run[1]["test"], "img:blur")
    assert set(zip(result.summary["modality"], result.summary["corruption"])) == {("img", "blur")}


def test_a_corruption_mapping_is_checked_like_the_specs(run):
    predictor, paths, _, _ = run
    result = robustness_sweep(predictor, paths["test"], {"tab": "swap", "img": ["blur", "blur"]})
    assert sorted(zip(result.summary["modality"], result.summary["corruption"])) == [("img", "blur"), ("tab", "swap")]
    with pytest.raises(OptionError, match=r"^corruptions\['image'\]: unknown modality 'image' \(did you mean 'img'\?\); "
                                          r"this model has \['img', 'tab'\]"):
        robustness_sweep(predictor, paths["test"], {"image": ["gaussian_noise"]})
    with pytest.raises(OptionError, match=r"^corruptions\['img'\]: corruption 'white_noise' does not exist for "
                                          r"modality kind 'image'; allowed: \['gaussian_noise'"):
        robustness_sweep(predictor, paths["test"], {"img": ["gaussian_noise", "white_noise"]})
    for bad in ([], None, [1]):
        with pytest.raises(OptionError, match=r"^corruptions\['img'\]: a corruption name or a non-empty list of "
                                              r"them \(those of kind 'image': \['gaussian_noise'"):
            robustness_sweep(predictor, paths["test"], {"img": bad})


def test_a_row_sample_must_hold_a_row(run):
    predictor, paths, _, _ = run
    for bad in (0, -3, 2.5):
        with pytest.raises(OptionError, match=rf"^max_rows: the number of rows to sample must be an integer of at "
                                              rf"least 1 \(None: every row\); got {bad}$"):
            robustness_sweep(predictor, paths["test"], "tab:swap", max_rows=bad)


def test_area_under_the_severity_curve():
    assert area([0.8] * 6) == pytest.approx(0.8)
    assert area([1.0, 0.8, 0.6, 0.4, 0.2, 0.0]) == pytest.approx(0.5)


def test_effective_robustness_is_the_area_gain_over_the_reference_minus_the_clean_gain():
    curves = pd.DataFrame({"modality": "img", "corruption": "blur", "severity": [0, 1, 2],
                           "accuracy": [1.0, 0.8, 0.6], "reference": [0.9, 0.5, 0.1]})
    row = _summary(curves, "accuracy").iloc[0]
    # areas over severities mapped to [0, 1]: model (1.8 + 1.4) / 4 = 0.8, reference (1.4 + 0.6) / 4 = 0.5
    assert row["relative_robustness"] == pytest.approx(0.8)
    assert row["effective_robustness"] == pytest.approx(0.8 - 0.5 - (1.0 - 0.9))
    assert (row["clean"], row["worst"]) == (1.0, 0.6)


def test_worst_is_the_lowest_metric_over_severities_not_the_last_one():
    """A curve need not fall monotonically (audio white noise once read clean 0.775, severity 5 0.850)."""
    curves = pd.DataFrame({"modality": "audio", "corruption": "white_noise", "severity": range(6),
                           "accuracy": [0.775, 0.70, 0.65, 0.80, 0.82, 0.85]})
    row = _summary(curves, "accuracy").iloc[0]
    assert (row["clean"], row["worst"]) == (0.775, 0.65)


def test_a_sweep_over_a_modality_the_data_never_holds_says_there_is_nothing_to_corrupt(run, tmp_path):
    """``polymodal evaluate --robustness --corruption img`` on rows without images is refused; a sweep of
    every modality warns that it leaves the image out and sweeps the others."""
    predictor, paths, _, _ = run
    frame = pd.read_csv(paths["test"]).assign(image="")
    frame.to_csv(tmp_path / "no_images.csv", index=False)
    with pytest.raises(SchemaMismatchError, match="no row holds img: there is nothing to corrupt"):
        run_evaluations(predictor, tmp_path / "no_images.csv", tmp_path / "out", missing=False, robustness=True,
                        corruptions=["img"])
    with pytest.warns(UserWarning, match="no row holds img: nothing to corrupt there, left out of the sweep"):
        result = run_evaluations(predictor, tmp_path / "no_images.csv", tmp_path / "out", missing=False,
                                 robustness=True, corruptions=["img", "tab:missing"])
    assert {row["modality"] for row in result["robustness"]["table"]} == {"tab"}


def test_a_sweep_shows_its_progress_over_every_corrupted_evaluation(run, monkeypatch):
    from contextlib import contextmanager

    from polymodal.evaluation import robustness

    bars = []

    @contextmanager
    def recorder(total, description, enabled=True, min_total=200):
        bars.append({"total": total, "description": description, "enabled": enabled, "done": 0})
        yield lambda n: bars[-1].update(done=bars[-1]["done"] + n)

    monkeypatch.setattr(robustness, "progress_bar", recorder)
    predictor, paths, _, _ = run
    robustness_sweep(predictor, paths["test"], ["img:gaussian_noise", "tab"], progress=True)
    assert bars == [{"total": 15, "description": "robustness sweep", "enabled": True, "done": 15}]  # 3 x 5 severities
    robustness_sweep(predictor, paths["test"], ["tab:swap"])
    assert bars[-1]["enabled"] is False  # the report's sweep stays quiet


def test_the_report_sweeps_one_registered_corruption_of_every_modality_kind():
    """report.html's robustness curves: one noise per modality, whatever its kind (video included)."""
    from polymodal.data.modalities import PREPROCESSORS
    from polymodal.evaluation.robustness import REPORT_CORRUPTIONS

    kinds = {prep.kind for _, prep in PREPROCESSORS.items()}
    assert set(REPORT_CORRUPTIONS) == kinds == set(CORRUPTIONS.kinds())
    assert all(CORRUPTIONS.get(kind, name).random for kind, name in REPORT_CORRUPTIONS.items())  # a noise


def test_a_kind_without_corruptions_is_left_out_of_a_default_sweep_and_naming_it_says_why(monkeypatch):
    """Every kind has corruptions today; a kind added without any is still left out of a default
    sweep (not swept as ``{"clip": []}``), and naming it says so."""
    from types import SimpleNamespace

    from polymodal.config import load_config
    from polymodal.evaluation import robustness
    from polymodal.evaluation.corruptions import CorruptionRegistry

    config = load_config({"target": "label", "modalities": {"clip": {"kind": "video", "column": "clip"},
                                                             "sound": {"kind": "audio", "column": "sound"}}})
    predictor = SimpleNamespace(config=config)
    assert parse_corruptions(None, predictor) == {"clip": CORRUPTIONS.names("video"), "sound": CORRUPTIONS.names("audio")}
    audio_only = CorruptionRegistry()
    audio_only.register("audio", "hum", levels=(1, 2, 3, 4, 5), unit="u")(lambda sample, level, rng, pool: sample)
    monkeypatch.setattr(robustness, "CORRUPTIONS", audio_only)
    assert parse_corruptions(None, predictor) == {"sound": ["hum"]}
    for spec in ("clip", "clip:blur"):
        with pytest.raises(OptionError, match=r"corruptions='" + spec + r"': modality 'clip' is of kind 'video', "
                                              r"which has no corruptions \(kinds that have: \['audio'\]\)"):
            parse_corruptions([spec], predictor)
    with command_line(), pytest.raises(OptionError, match=r"--corruption clip: modality 'clip' is of kind 'video'"):
        parse_corruptions(["clip"], predictor)


def test_a_video_run_is_swept_on_corrupted_frames_past_its_frame_cache(tmp_path):
    """A video under a frozen frame encoder whose vectors are cached: the sweep corrupts the real
    frames (never the padding), runs the frame encoder on them, and stores nothing in the cache."""
    from helpers_models import frame_cache_config, write_short_clips

    write_short_clips(tmp_path)
    manifest, cache = tmp_path / "m.csv", tmp_path / "cache"
    predictor = MultimodalPredictor.from_config(frame_cache_config(cache)).fit(manifest)
    before = snapshot(cache)
    result = robustness_sweep(predictor, manifest, ["video:frame_drop", "video:gaussian_noise"])
    assert snapshot(cache) == before, "corrupted frames went into the feature cache"
    curves = result.curves
    assert (curves.groupby(["modality", "corruption"], sort=False)["severity"].apply(list).to_dict()
            == {("video", "frame_drop"): list(range(6)), ("video", "gaussian_noise"): list(range(6))})
    assert (curves["failed"] == 0).all() and curves["accuracy"].between(0, 1).all()

    data = load_eval_data(predictor, manifest, require_target=True)
    clean = data.table.modalities["video"]
    x, length = np.asarray(clean.arrays["x"]), np.asarray(clean.arrays["length"])  # (N, 5, 8, 8, 1), (N,)
    reference = predictor.raw_outputs(data.features)
    for name in ("frame_drop", "gaussian_noise"):
        table, failed = corrupt_table(predictor, data, "video", CORRUPTIONS.get("video", name), 5)
        corrupted = table.modalities["video"]
        noisy = np.asarray(corrupted.arrays["x"])
        assert failed == 0 and (corrupted.present == clean.present).all()
        np.testing.assert_array_equal(np.asarray(corrupted.arrays["length"]), length)
        for row in np.flatnonzero(clean.present):
            real = int(length[row])
            np.testing.assert_array_equal(noisy[row, real:], x[row, real:])  # padding untouched
            changed = [not np.array_equal(noisy[row, t], x[row, t]) for t in range(real)]
            black = [not noisy[row, t].any() for t in range(real)]
            if name == "frame_drop":  # 5/8 of the real frames lost, the others as they were
                assert changed == black and sum(black) == math.ceil(0.625 * real)
            else:
                assert all(changed)
        outputs = predictor.raw_outputs(table)
        assert not np.allclose(outputs[clean.present], reference[clean.present]), f"{name} changed no prediction"
        np.testing.assert_allclose(outputs[~clean.present], reference[~clean.present], rtol=1e-5, atol=1e-6)


def test_a_regression_sweep_over_rows_of_one_target_value_keeps_its_undefined_r2(tmp_path):
    """R2 of rows whose target is constant is undefined (None): the sweep's curves hold NaN (not
    scikit-learn's 0.0, which would draw a model at chance level), and the tables keep the rows."""
    from helpers_models import regression_config

    paths = write_splits(tmp_path, make_dataset(tmp_path, n=40))
    config = {**regression_config(epochs=1), "report": {"rows": 0}}
    predictor = MultimodalPredictor.from_config(config).fit(paths["train"], paths["valid"])
    pd.read_csv(paths["test"]).assign(y=110.0).to_csv(tmp_path / "one_value.csv", index=False)
    result = run_evaluations(predictor, tmp_path / "one_value.csv", tmp_path / "out", missing=True, robustness=True,
                             corruptions=["tab:missing", "sig"])
    table = result["robustness"]["table"]
    assert [(row["modality"], row["corruption"]) for row in table] == [("tab", "missing"), ("sig", "noise"),
                                                                        ("sig", "dropout"), ("sig", "drift")]
    assert all(row["clean"] is None and row["s0"] is None and row["s5"] is None for row in table)
    assert pd.read_csv(tmp_path / "out" / "robustness_summary.csv")["s5"].isna().all()
    assert all(row["r2"] is None and row["mae"] > 0 for row in result["missing"])  # scored, but no R2
