"""Run folder reading: keys a saved config lacks take the behaviour the run was trained with."""

from __future__ import annotations

import pytest
import torch

from polymodal.config import load_config, save_config
from polymodal.errors import OptionError, RunFolderError
from polymodal.resume import check_resumable
from polymodal.run_files import CONFIG_FILE
from polymodal.runfolder import read_config

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


@pytest.mark.parametrize(("written", "hint"), [
    ("9.0.0", "the run was written by polymodal 9.0.0, this is polymodal {this}: load it with polymodal 9.0.0 or "
              "upgrade (pip install -U polymodal)"),
    ("0.0.1", "the run was written by polymodal 0.0.1, this is polymodal {this}: load it with polymodal 0.0.1"),
    (None, "the run records no polymodal version (saved before versions were recorded, or never saved): a polymodal "
           "older or newer than this one ({this}) may have written the key"),
])
def test_a_key_this_version_does_not_know_names_the_version_that_wrote_the_run(tmp_path, written, hint):
    import json

    from polymodal import __version__
    from polymodal.errors import ConfigError
    from polymodal.run_files import METRICS_FILE

    save_config(load_config(AUDIO), tmp_path / CONFIG_FILE)
    text = (tmp_path / CONFIG_FILE).read_text(encoding="utf-8")
    (tmp_path / CONFIG_FILE).write_text(text.replace("  name: concat\n", "  name: concat\n  future_key: 1\n"),
                                        encoding="utf-8")
    if written is not None:
        (tmp_path / METRICS_FILE).write_text(json.dumps({"training": {"polymodal_version": written}}), encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        read_config(tmp_path)
    [problem] = refused.value.problems  # the hint is said within the problem, not counted as another
    assert problem.startswith("fusion.future_key: unknown key 'future_key'")
    assert f"; {hint.format(this=__version__)}" in problem
    (tmp_path / METRICS_FILE).write_text(json.dumps({"training": {"polymodal_version": __version__}}), encoding="utf-8")
    with pytest.raises(ConfigError) as refused:  # written by this version: a key added by hand, no hint
        read_config(tmp_path)
    assert refused.value.problems[0].startswith("fusion.future_key: unknown key 'future_key'")
    assert "polymodal" not in refused.value.problems[0]


@pytest.mark.parametrize("kind", ["image", "video"])
def test_an_image_config_saved_before_background_keeps_dropping_alpha(tmp_path, kind):
    save_config(load_config({"target": "y", "modalities": {"m": {"kind": kind, "column": "m"}}}), tmp_path / CONFIG_FILE)
    assert read_config(tmp_path).modalities["m"].preprocess.background == "white"
    text = (tmp_path / CONFIG_FILE).read_text(encoding="utf-8")
    (tmp_path / CONFIG_FILE).write_text("\n".join(line for line in text.splitlines() if "background:" not in line),
                                        encoding="utf-8")
    assert read_config(tmp_path).modalities["m"].preprocess.background is None



def test_a_tabular_config_saved_before_normalize_categories_keeps_keying_categories_as_written(tmp_path):
    """Today's default strips a category's surrounding whitespace; a run saved before the setting
    learned ``'current '`` as a category of its own, and keeps reading it so."""
    spec = {"target": "y", "modalities": {"labs": {"kind": "tabular", "columns": ["crp"], "categorical": ["smoking"]}}}
    save_config(load_config(spec), tmp_path / CONFIG_FILE)
    assert read_config(tmp_path).modalities["labs"].preprocess.normalize_categories == "strip"
    text = (tmp_path / CONFIG_FILE).read_text(encoding="utf-8")
    (tmp_path / CONFIG_FILE).write_text("\n".join(line for line in text.splitlines()
                                                  if "normalize_categories:" not in line), encoding="utf-8")
    assert read_config(tmp_path).modalities["labs"].preprocess.normalize_categories == "none"


def test_a_signal_config_saved_before_spectrogram_scale_keeps_featurising_with_log1p(tmp_path):
    """A run saved before ``spectrogram.scale`` existed was trained on log1p spectrograms: it loads
    with log1p and featurises exactly as before (today's default, db, would read other numbers);
    a run that records its scale keeps it."""
    import numpy as np

    from polymodal.data.modalities import build_preprocessor
    from polymodal.data.spectral import stft_power

    spec = {"target": "y", "modalities": {"vib": {"kind": "signal", "column": "vib", "preprocess": {
        "length": 256, "spectrogram": {"n_fft": 32, "hop": 16}}}, "raw": {"kind": "signal", "column": "raw"}}}
    save_config(load_config(spec), tmp_path / CONFIG_FILE)
    assert read_config(tmp_path).modalities["vib"].preprocess.spectrogram.scale == "db"
    text = (tmp_path / CONFIG_FILE).read_text(encoding="utf-8")
    assert "scale: db" in text
    (tmp_path / CONFIG_FILE).write_text("\n".join(line for line in text.splitlines() if "scale: db" not in line),
                                        encoding="utf-8")  # as written before the key existed
    config = read_config(tmp_path)
    assert config.modalities["vib"].preprocess.spectrogram.scale == "log1p"
    assert config.modalities["raw"].preprocess.spectrogram is None  # no spectrogram: nothing to set
    wave = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32) * 0.1
    np.save(tmp_path / "w.npy", wave.T)
    prep = build_preprocessor(config.modalities["vib"], "vib")
    prep.fit([str(tmp_path / "w.npy")])
    got = prep.featurize([prep.decode(str(tmp_path / "w.npy"))])["x"]
    power = stft_power(torch.from_numpy(wave), 32, 16)  # (1, T, F) float32, as featurised before the key
    np.testing.assert_array_equal(got[0], torch.log1p(power)[0].T.numpy())


def test_a_new_configs_stopwords_true_is_saved_as_english_and_read_back_so(tmp_path):
    """``true`` now keeps negations (``english``); a run saved with it says so, and is not read as
    a run from before (whose ``true`` was the whole list)."""
    spec = {"target": "y", "modalities": {"notes": {"kind": "text", "column": "t", "preprocess": {"stopwords": True}}}}
    save_config(load_config(spec), tmp_path / CONFIG_FILE)
    assert "stopwords: english\n" in (tmp_path / CONFIG_FILE).read_text(encoding="utf-8")
    assert read_config(tmp_path).modalities["notes"].preprocess.stopwords == "english"


def test_a_new_configs_text_joins_apostrophes_and_is_saved_and_read_back_so(tmp_path):
    """A new config deletes an apostrophe inside a word; its run says so, and is not read as a run
    from before (which split the word)."""
    from polymodal.data.modalities.text import clean_text

    spec = {"target": "y", "modalities": {"notes": {"kind": "text", "column": "t"}}}
    save_config(load_config(spec), tmp_path / CONFIG_FILE)
    assert "join_apostrophes: true\n" in (tmp_path / CONFIG_FILE).read_text(encoding="utf-8")
    preprocess = read_config(tmp_path).modalities["notes"].preprocess
    assert preprocess.join_apostrophes is True
    assert clean_text("The patient can't breathe", preprocess) == "the patient cant breathe"


def test_a_text_run_saved_before_english_and_kept_numbers_cleans_and_predicts_as_trained(tmp_path):
    """A run saved before these settings wrote ``stopwords: true`` for scikit-learn's whole list
    (negations too: its state holds no list), no ``keep_number_punctuation`` and no
    ``join_apostrophes``: it split '3.5' into '3 5' and "can't" into 'can t'. It keeps cleaning so,
    predicts as before, and spells its settings as it did, which keeps the fingerprint its weights
    record (what serving checks an export against)."""
    import pandas as pd

    from polymodal import MultimodalPredictor
    from polymodal.run_files import MODEL_FILE, saved_fingerprint

    notes = ["no fever, 3.5 mg", "fever 1,000 IU", "not coughing at 12:30", "cough, can't sleep, 2.5 mg"]
    frame = pd.DataFrame({"note": notes * 6, "label": ["a", "b", "a", "b"] * 6})
    config = {"task": "classification", "target": "label",
              "modalities": {"notes": {"kind": "text", "column": "note", "encoder": {"name": "embedding_bag", "dim": 8},
                                       "preprocess": {"stopwords": "english_all", "keep_number_punctuation": False,
                                                      "join_apostrophes": False}}},
              "train": {"epochs": 1, "batch_size": 8, "progress": False, "early_stopping": None}}
    run = tmp_path / "run"
    before = MultimodalPredictor.from_config(config).fit(frame.iloc[:16], frame.iloc[16:], out=run).predict_frame(frame)
    saved = (run / CONFIG_FILE).read_text(encoding="utf-8")
    assert "stopwords: english_all" in saved and "keep_number_punctuation: false" in saved
    assert "join_apostrophes: false" in saved
    old = "\n".join(line for line in saved.replace("stopwords: english_all", "stopwords: true").splitlines()
                    if "keep_number_punctuation" not in line and "join_apostrophes" not in line)
    (run / CONFIG_FILE).write_text(old, encoding="utf-8")  # as written before the settings existed
    preprocess = read_config(run).modalities["notes"].preprocess
    assert (preprocess.stopwords, preprocess.keep_number_punctuation, preprocess.join_apostrophes) == (
        "english_all", False, False)
    loaded = MultimodalPredictor.load(run)
    prep = loaded.pipeline.preprocessors["notes"]
    assert prep.tokenize("No fever, 3.5 mg") == ["fever", "3", "5", "mg"]
    assert prep._clean("Can't sleep") == "t sleep"  # 'can t', 'can' a stop word: as its vocabulary learnt it
    assert prep.tokenize("Can't sleep") == ["t", "sleep"]
    assert prep.encoding_config() == {"lowercase": True, "strip_punctuation": True, "stopwords": True,
                                      "tokenizer": "word", "vocab_size": 20_000, "min_freq": 1, "max_tokens": 64}
    assert loaded.model_fingerprint() == saved_fingerprint(run / MODEL_FILE)
    pd.testing.assert_frame_equal(loaded.predict_frame(frame), before)


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


def _finished_run(tmp_path, epochs: int, epochs_run: int, patience: int | None):
    """A run folder as a finished fit leaves it, as far as ``check_out(resume=True)`` reads it."""
    import json

    from polymodal.run_files import LAST_CHECKPOINT, METRICS_FILE

    save_config(_config(epochs, patience), tmp_path / CONFIG_FILE)
    (tmp_path / LAST_CHECKPOINT).parent.mkdir()
    stopped = epochs_run - 1 if patience is not None and epochs_run < epochs else 0  # early stopping's epoch
    torch.save({"epoch": epochs_run - 1, "callbacks": {  # Lightning's bookkeeping, as check_out reads it
        "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}": {"stopped_epoch": stopped, "patience": patience}}},
        tmp_path / LAST_CHECKPOINT)
    (tmp_path / METRICS_FILE).write_text(json.dumps({"valid": {}, "training": {"epochs_run": epochs_run}}))


def _config(epochs: int, patience: int | None):
    from helpers_models import classification_config

    spec = classification_config(epochs=epochs)
    spec["train"]["early_stopping"] = None if patience is None else {"patience": patience}
    return load_config(spec)


@pytest.mark.parametrize(("epochs", "epochs_run", "patience", "given", "refused"), [
    (3, 3, 2, (3, 2), "already finished its 3 epochs"),
    (3, 3, 2, (2, None), "already finished its 3 epochs"),  # fewer epochs: nothing left either
    (3, 3, 2, (5, 2), None),  # more epochs: continues
    (6, 3, 2, (6, 2), "early stopping ended it after 3 epochs"),
    (6, 3, 2, (8, 2), "early stopping ended it after 3 epochs"),  # it would stop again
    (6, 3, 2, (6, 4), None),  # more patience: continues
    (6, 3, 2, (6, None), None),  # no early stopping: the 3 epochs left
    # a run of 1 epoch resumed for 3, interrupted before its first new checkpoint: config.yaml says 3,
    # metrics.json is the 1-epoch run's: the checkpoint says 1 epoch, and no early stop
    (3, 1, None, (3, None), None),
])
def test_resume_refuses_a_run_that_finished_training(tmp_path, epochs, epochs_run, patience, given, refused):
    from polymodal.resume import check_out

    _finished_run(tmp_path, epochs, epochs_run, patience)
    if refused is None:
        check_out(tmp_path, _config(*given), resume=True, verify_checkpoint=False)
        return
    with pytest.raises(RunFolderError, match=refused) as info:
        check_out(tmp_path, _config(*given), resume=True, verify_checkpoint=False)
    assert "nothing to resume" in str(info.value) and "overwrite=True" in str(info.value)


@pytest.mark.parametrize("interrupted", ["no metrics", "earlier metrics"])
def test_resume_continues_an_interrupted_run_whatever_its_epochs(tmp_path, interrupted):
    import json

    from polymodal.resume import check_out
    from polymodal.run_files import METRICS_FILE

    _finished_run(tmp_path, 3, 3, 2)
    if interrupted == "no metrics":  # interrupted after its last checkpoint, before the results
        (tmp_path / METRICS_FILE).unlink()
    else:  # a resume from 2 to 3 epochs interrupted while saving (metrics.json is written last)
        (tmp_path / METRICS_FILE).write_text(json.dumps({"valid": {}, "training": {"epochs_run": 2}}))
    check_out(tmp_path, _config(3, 2), resume=True, verify_checkpoint=False)


@pytest.mark.parametrize("task", ["classification", "anomaly"])
def test_a_saved_run_loads_after_its_pretrained_folder_is_gone(tmp_path, task):
    """Both estimators copy what a pretrained encoder needs into the run (``assets/``)."""
    import shutil

    import numpy as np
    import pandas as pd
    from helpers_models import save_tiny_bert

    from polymodal import MultimodalPredictor

    bert = save_tiny_bert(tmp_path / "bert")
    rng = np.random.default_rng(0)
    words = ["quite dark", "mid image", "very bright"]
    frame = pd.DataFrame({"caption": [words[i % 3] for i in range(48)], "x": rng.normal(size=48),
                          "label": [f"c{i % 3}" if task == "classification" else "normal" for i in range(48)]})
    config = {"task": task, "target": "label",
              "modalities": {"cap": {"kind": "text", "column": "caption", "preprocess": {"max_tokens": 8},
                                     "encoder": {"name": "hf", "path": str(bert)}},
                             "tab": {"kind": "tabular", "columns": ["x"]}},
              "train": {"epochs": 1, "batch_size": 16, "progress": False, "early_stopping": None}}
    if task == "anomaly":
        config["anomaly"] = {"scorer": "mahalanobis"}
    model = MultimodalPredictor.from_config(config).fit(frame.iloc[:32], frame.iloc[32:], out=tmp_path / "run")
    before = model.predict_frame(frame.iloc[32:])
    shutil.rmtree(bert)
    loaded = MultimodalPredictor.load(tmp_path / "run")
    assert (tmp_path / "run" / "assets" / "assets.json").is_file()
    pd.testing.assert_frame_equal(loaded.predict_frame(frame.iloc[32:]), before)
    loaded.save(tmp_path / "run")  # back into its own folder, whose assets/ its config points at
    pd.testing.assert_frame_equal(MultimodalPredictor.load(tmp_path / "run").predict_frame(frame.iloc[32:]), before)
    (tmp_path / "file").write_text("")
    with pytest.raises(OptionError, match=r"the run folder: .*file is a file, not a folder"):
        loaded.save(tmp_path / "file" / "run")


@pytest.mark.parametrize("content", [b"", b"\x05\x00", (40).to_bytes(8, "little") + b'{"__metadata__": {"polymodal.mo',
                                     (7).to_bytes(8, "little") + b"[1,2,3]", (2**62).to_bytes(8, "little")])
def test_an_unreadable_weight_header_gives_no_fingerprint(tmp_path, content):
    """serve then loads the run, whose loader names what is wrong with the file."""
    from polymodal.run_files import saved_fingerprint

    (tmp_path / "model.safetensors").write_bytes(content)
    assert saved_fingerprint(tmp_path / "model.safetensors") is None


class _Opens:
    """Pickles as a call of ``open(path, "w")``: unpickled, it creates ``path`` (the harmless
    stand-in for any code a crafted checkpoint could run)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import builtins

        return builtins.open, (self.path, "w")


def test_resume_refuses_a_checkpoint_that_holds_objects_without_unpickling_them(tmp_path):
    """Lightning resumed from ``last.ckpt`` with torch's default ``weights_only`` (off in torch
    before 2.6, or by ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``), and a checkpoint that did not load as
    tensors and plain values read as "nothing known": a crafted one ran its code."""
    from polymodal.resume import check_out
    from polymodal.run_files import LAST_CHECKPOINT

    _finished_run(tmp_path, 6, 3, None)
    ran = tmp_path / "ran"
    state = torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)
    torch.save({**state, "loops": _Opens(ran)}, tmp_path / LAST_CHECKPOINT)
    with pytest.raises(RunFolderError) as refused:
        check_out(tmp_path, _config(6, None), resume=True)
    said = str(refused.value)
    assert f"the checkpoint {tmp_path / LAST_CHECKPOINT} cannot be loaded safely" in said
    assert "open" in said and "overwrite=True" in said  # what it holds, and what to do
    assert not ran.exists(), "the checkpoint's object was unpickled"
