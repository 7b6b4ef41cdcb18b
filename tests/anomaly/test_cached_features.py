"""An anomaly detector honours the frozen-feature cache (``encoder.cache: true``, a frame encoder's
``frame.cache``) as a classifier does: the frozen encoder runs once per input to fill the cache and
never in the training epochs, inference reads the stored outputs back, and the scores are those of
running the encoder on the inputs (the autoencoder's reconstruction targets travel beside the stored
outputs: :mod:`polymodal.anomaly.cached`).

Sensor ``a`` of the two-sensor data (:mod:`tests.anomaly.helpers`) has a frozen random ``cnn1d``
whose outputs are cached; ``b``'s encoder trains.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers_pretrained import EncoderRows

from polymodal.anomaly import AnomalyDetector
from polymodal.deploy.export import export_run

from .helpers import config

pytestmark = pytest.mark.filterwarnings("ignore:.*whose weights are random:UserWarning")


def cached_config(scorer: str, cache_dir, epochs: int = 3) -> dict:
    cfg = config(scorer, epochs=epochs)
    cfg["modalities"]["a"]["encoder"] = {**cfg["modalities"]["a"]["encoder"], "freeze": "all", "cache": True}
    cfg["data"] = {"cache_dir": None if cache_dir is None else str(cache_dir)}
    cfg["report"] = {"rows": 0}  # no analyses after the fit: their latency figure times the encoder on inputs
    return cfg


class FitEncoderRows:
    """Counts the rows encoder ``a`` of every model a detector builds runs on (its forward: the
    network's and the feature cache's embedding pass alike)."""

    def __init__(self, monkeypatch):
        self.rows = 0
        build = AnomalyDetector._build_model

        def counted(detector, pipeline, restore=False):
            model = build(detector, pipeline, restore)

            def count(module, args, kwargs):
                self.rows += int((next(iter(kwargs.values())) if kwargs else args[0]).shape[0])

            model.encoders["a"].register_forward_pre_hook(count, with_kwargs=True)
            return model

        monkeypatch.setattr(AnomalyDetector, "_build_model", counted)


def run_encoders_every_time(monkeypatch) -> None:
    """What a detector did before it read the cache: the network runs every encoder on the inputs."""
    monkeypatch.setattr(AnomalyDetector, "network_table", lambda self, manifest, table, **_: table)


def rows_of(path) -> int:
    return len(pd.read_csv(path))


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory):
    """An autoencoder fitted with ``a`` cached on disk, and the rows its frozen encoder ran on."""
    folder = tmp_path_factory.mktemp("cached-anomaly")
    with pytest.MonkeyPatch.context() as patch:
        calls = FitEncoderRows(patch)
        detector = AnomalyDetector.from_config(cached_config("autoencoder", folder / "cache")).fit(
            data / "train.csv", data / "valid.csv", test=data / "test.csv", out=folder / "run")
    return {"detector": detector, "folder": folder, "fit_rows": calls.rows}


def test_a_fit_embeds_each_row_once_and_a_second_fit_reads_them_all_from_the_cache(fitted, data, monkeypatch):
    # 3 epochs over 96 training rows, validation, the scorer's statistics, the threshold and the subsets' scores
    # would each run the encoder: it ran once on every training, validation and test row, to store its outputs
    assert fitted["fit_rows"] == sum(rows_of(data / f"{split}.csv") for split in ("train", "valid", "test"))
    calls = FitEncoderRows(monkeypatch)
    again = AnomalyDetector.from_config(cached_config("autoencoder", fitted["folder"] / "cache")).fit(
        data / "train.csv", data / "valid.csv", test=data / "test.csv")
    assert calls.rows == 0  # the same frozen weights: every row read back from the cache
    np.testing.assert_allclose(again.valid_scores[0], fitted["detector"].valid_scores[0], rtol=1e-5, atol=1e-6)


def test_the_cached_scores_are_those_of_running_the_encoder_on_the_inputs(fitted, data, monkeypatch):
    """The autoencoder reconstructs ``a``'s input, which its cached rows carry as a stored target."""
    detector = AnomalyDetector.load(fitted["folder"] / "run")
    cached = detector.predict_frame(data / "test.csv")
    run_encoders_every_time(monkeypatch)
    raw = detector.predict_frame(data / "test.csv")
    np.testing.assert_allclose(cached["score"], raw["score"], rtol=1e-5, atol=1e-6)
    assert cached["flag"].tolist() == raw["flag"].tolist()
    # the fit's own validation scores, on the stored outputs, are the loaded detector's on the inputs
    np.testing.assert_allclose(fitted["detector"].valid_scores[0], detector.predict_frame(data / "valid.csv")["score"],
                               rtol=1e-5, atol=1e-6)


def test_a_loaded_detector_scores_rows_the_cache_holds_without_the_frozen_encoder(fitted, data):
    detector = AnomalyDetector.load(fitted["folder"] / "run")
    with EncoderRows(detector.model, ["a"]) as counted:
        flags = detector.predict(data / "test.csv")
        metrics = detector.evaluate(data / "test.csv")
        explanation = detector.explain(data / "test.csv", samples=0)  # Shapley values over the modalities
    assert counted.rows == {"a": 0}
    assert len(flags) == rows_of(data / "test.csv") and explanation.values.shape[0] == len(flags)
    assert metrics["auroc"] == pytest.approx(fitted["detector"].metrics["test"]["auroc"], abs=1e-6)


def test_gradients_inside_a_cached_modality_and_the_export_still_read_its_inputs(fitted, data):
    detector = fitted["detector"]
    with EncoderRows(detector.model, ["a"]) as counted:
        explanation = detector.explain(data / "test.csv", samples=2, steps=4)
    within = [item for item in explanation.within if item.modality == "a"]
    assert within and all(np.abs(item.attribution).sum() > 0 for item in within) and counted.rows["a"] > 0
    report = export_run(detector, fitted["folder"] / "export", data=data / "test.csv", rows=16)
    assert report.parity["graph_max_abs_diff"] <= 1e-4 and report.parity["runtime_max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("scorer", ["deep_svdd", "mahalanobis", "consistency"])
def test_a_fit_on_stored_outputs_in_memory_is_the_fit_on_the_inputs(scorer, data, monkeypatch):
    """Without a cache folder the outputs are held in memory for the fit. Its losses, epoch by
    epoch (Deep SVDD's pre-training and the Mahalanobis scorer's reconstruct ``a``'s input from its
    stored target), and its scores are those of the same fit without ``cache``."""
    calls = FitEncoderRows(monkeypatch)
    cached = AnomalyDetector.from_config(cached_config(scorer, None, epochs=2)).fit(data / "train.csv",
                                                                                  data / "valid.csv")
    assert calls.rows == rows_of(data / "train.csv") + rows_of(data / "valid.csv")
    plain = cached_config(scorer, None, epochs=2)
    plain["modalities"]["a"]["encoder"]["cache"] = False
    raw = AnomalyDetector.from_config(plain).fit(data / "train.csv", data / "valid.csv")
    for column in ("train_loss", "val_loss"):
        np.testing.assert_allclose(cached.history[column], raw.history[column], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cached.valid_scores[0], raw.valid_scores[0], rtol=1e-5, atol=1e-6)


# --- frame.cache: a frozen frame encoder's per-frame vectors under a GRU that trains ---
def write_clips(folder, n: int = 12) -> int:
    """``n`` .npy clips of a bar moving right, 3-5 frames each (5 sampled with a stride: the shorter
    ones padded), each its own content; returns their real frames (one pass of the frame encoder)."""
    rows, real = [], 0
    for i in range(n):
        frames = 3 + i % 3
        clip = np.zeros((frames, 8, 8), np.uint8)
        for t in range(frames):
            clip[t, 2:6, 1 + t] = 255
        clip[0, 0, 0] = i
        np.save(folder / f"v{i}.npy", clip)
        rows.append({"clip": f"v{i}.npy", "x1": float(i % 4)})
        real += frames
    pd.DataFrame(rows).to_csv(folder / "m.csv", index=False)
    return real


@pytest.mark.filterwarnings("ignore:the validation manifest is the training manifest:UserWarning",
                            "ignore:anomaly.target_fpr .* is below 1/N:UserWarning")
def test_a_video_detector_trains_on_cached_frame_vectors_and_scores_as_on_the_frames(tmp_path, monkeypatch):
    from polymodal.models.encoders.video import FrameEncoder

    real = write_clips(tmp_path)
    frame = {"name": "cnn", "channels": [4], "dim": 8, "freeze": "all", "cache": True}
    cfg = {"task": "anomaly",
           "modalities": {"video": {"kind": "video", "column": "clip",
                                    "preprocess": {"size": 8, "color": "gray", "frames": 5, "sampling": "stride"},
                                    "encoder": {"name": "frame_cnn", "frame": frame, "temporal": "gru", "dim": 8}},
                          "table": {"kind": "tabular", "columns": ["x1"], "encoder": {"dim": 4, "hidden": [8]}}},
           "fusion": {"name": "concat"},
           "anomaly": {"scorer": "autoencoder", "latent_dim": 4, "recon_size": 16, "decoder_hidden": 8},
           "train": {"epochs": 2, "batch_size": 4, "lr": 1e-2, "progress": False, "early_stopping": None},
           "data": {"cache_dir": str(tmp_path / "cache")}, "report": {"rows": 0}}
    seen = {"frames": 0}
    vectors = FrameEncoder.frame_vectors

    def counted(encoder, frames):
        seen["frames"] += frames.shape[0]
        return vectors(encoder, frames)

    monkeypatch.setattr(FrameEncoder, "frame_vectors", counted)
    detector = AnomalyDetector.from_config(cfg).fit(tmp_path / "m.csv", tmp_path / "m.csv")
    assert seen["frames"] == real  # once per clip's real frame, though training and validation read every clip
    cached = detector.predict_frame(tmp_path / "m.csv")
    assert seen["frames"] == real  # read back from the cache
    run_encoders_every_time(monkeypatch)
    raw = detector.predict_frame(tmp_path / "m.csv")  # the whole video encoder on the frames
    assert seen["frames"] == 2 * real
    assert np.isfinite(cached["score"]).all()
    np.testing.assert_allclose(cached["score"], raw["score"], rtol=1e-5, atol=1e-6)
