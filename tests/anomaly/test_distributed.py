"""An anomaly detector trained by 2 CPU processes (DDP, gloo) scores like the single-process one,
with a frozen encoder's outputs cached (``encoder.cache: true``) in the folder the ranks share."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers_models import train_in_subprocess

from polymodal.anomaly import AnomalyDetector

from .helpers import config


@pytest.mark.slow  # two 1-process and two 2-process runs (20-35 s each): make test-slow
@pytest.mark.parametrize("scorer", ["mahalanobis", "autoencoder"])
def test_two_process_ddp_detector_matches_the_single_process_one(data, tmp_path, scorer):
    paths = {"train": data / "train.csv", "valid": data / "valid.csv"}
    runs = {}
    for name, train in (("single", {"batch_size": 16}),
                        ("ddp", {"batch_size": 8, "devices": 2, "strategy": "ddp", "accelerator": "cpu"})):
        cfg = config(scorer, epochs=6)
        cfg["modalities"]["a"]["encoder"].update(freeze="all", cache=True)  # sensor a: frozen, cached
        cfg["data"] = {"cache_dir": str(tmp_path / f"cache_{name}")}
        cfg["report"] = {"rows": 0}
        cfg["train"].update(train)
        metrics = train_in_subprocess(cfg, paths, tmp_path / name)
        assert metrics["training"]["train_rows"] == 96 and metrics["valid"]["rows"] == 24
        history = pd.read_csv(tmp_path / name / "history.csv")
        assert len(history) == 6  # rank 0 wrote one row per epoch; no second writer
        assert any((tmp_path / f"cache_{name}" / "embeddings").iterdir())  # the frozen sensor's outputs stored
        runs[name] = (AnomalyDetector.load(tmp_path / name).evaluate(data / "test.csv"), history, metrics)
    (single, single_history, single_fit), (ddp, ddp_history, ddp_fit) = runs["single"], runs["ddp"]
    assert ddp["rows"] == single["rows"] == 72
    assert ddp["auroc"] >= 0.75 and abs(ddp["auroc"] - single["auroc"]) <= 0.03
    # 2 ranks x batch 8 take the optimiser steps of 1 x 16: the last validation loss agrees
    assert ddp_history["val_loss"].iloc[-1] == pytest.approx(single_history["val_loss"].iloc[-1], rel=0.05)
    # the threshold is set on the validation rows' scores at the same false-positive rate
    assert ddp_fit["valid"]["flag_fpr"] == pytest.approx(single_fit["valid"]["flag_fpr"], abs=1 / 24 + 1e-9)
