"""Run folder reading: keys a saved config lacks take the behaviour the run was trained with."""

from __future__ import annotations

import pytest

from polymodal.config import load_config, save_config
from polymodal.errors import RunFolderError
from polymodal.runfolder import CONFIG_FILE, check_resumable, read_config

AUDIO = {"target": "label", "modalities": {"audio": {"kind": "audio", "column": "audio",
                                                     "encoder": {"name": "mel_cnn", "dim": 8}}}}


def test_a_saved_key_is_kept_and_a_missing_one_takes_the_predated_default(tmp_path):
    save_config(load_config(AUDIO), tmp_path / CONFIG_FILE)  # today's default, frequency: flatten, written out
    assert read_config(tmp_path).modalities["audio"].encoder.frequency == "flatten"
    text = (tmp_path / CONFIG_FILE).read_text(encoding="utf-8")
    assert "frequency: flatten" in text
    (tmp_path / CONFIG_FILE).write_text("\n".join(line for line in text.splitlines() if "frequency:" not in line),
                                        encoding="utf-8")  # as written before the key existed
    assert read_config(tmp_path).modalities["audio"].encoder.frequency == "mean"


@pytest.mark.parametrize("kind", ["image", "video"])
def test_an_image_config_saved_before_background_keeps_dropping_alpha(tmp_path, kind):
    save_config(load_config({"target": "y", "modalities": {"m": {"kind": kind, "column": "m"}}}), tmp_path / CONFIG_FILE)
    assert read_config(tmp_path).modalities["m"].preprocess.background == "white"
    text = (tmp_path / CONFIG_FILE).read_text(encoding="utf-8")
    (tmp_path / CONFIG_FILE).write_text("\n".join(line for line in text.splitlines() if "background:" not in line),
                                        encoding="utf-8")
    assert read_config(tmp_path).modalities["m"].preprocess.background is None


def test_a_one_cycle_run_resumes_only_with_its_epochs(tmp_path):
    """The one-cycle schedule's length is fixed when it starts (stepping past it is an error);
    cosine (a step multiplier) may be extended."""
    from helpers_models import classification_config

    def config(epochs: int, scheduler: str):
        spec = classification_config(epochs=epochs)
        spec["train"]["scheduler"] = scheduler
        return load_config(spec)

    for scheduler in ("onecycle", "cosine"):
        save_config(config(2, scheduler), tmp_path / CONFIG_FILE)
        check_resumable(tmp_path, config(2, scheduler))
        if scheduler == "onecycle":
            with pytest.raises(RunFolderError, match="one-cycle schedule, which spans the 2 epochs"):
                check_resumable(tmp_path, config(4, scheduler))
        else:
            check_resumable(tmp_path, config(4, scheduler))


def test_a_run_resumes_only_with_the_metric_it_selects_its_epoch_by(tmp_path):
    from helpers_models import classification_config

    def config(early_stopping):
        return load_config({**classification_config(), "train": {**classification_config()["train"],
                                                                   "early_stopping": early_stopping}})

    save_config(config({"monitor": "auto", "patience": 3}), tmp_path / CONFIG_FILE)
    check_resumable(tmp_path, config({"monitor": "loss", "patience": 5}))  # auto is the loss; patience may change
    check_resumable(tmp_path, config(None))  # no early stopping: still the best validation loss
    with pytest.raises(RunFolderError, match="selects its best epoch by validation loss; resuming it by accuracy"):
        check_resumable(tmp_path, config({"monitor": "accuracy", "patience": 3}))
