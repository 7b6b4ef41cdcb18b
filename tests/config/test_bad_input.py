"""Bad input a config review found accepted or crashing: a file that is not UTF-8, a YAML key given
twice, mel filters that cannot fit the FFT bins, booleans for numbers, and values so large they
can only be typos. Each is a ConfigError naming the key path, what is allowed and what was given."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
import pytest
import yaml
from helpers_cli import assert_user_error, invoke

from polymodal.config import load_config
from polymodal.config.mel import empty_mel_filters, frame_samples, most_mel_filters
from polymodal.config.parsing import DuplicateKeyError, load_json, load_yaml
from polymodal.errors import ConfigError

from .helpers import BASE as CONFIG_BASE
from .helpers import with_changes

BASE = with_changes(CONFIG_BASE, {"modalities.caption": {"kind": "text", "column": "caption"}})
AUDIO = "modalities.spoken.preprocess"


def config_with(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path overrides, e.g. ``config_with(**{"train.lr": 0})``."""
    return with_changes(BASE, changes)


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(data)
    return info.value.problems


# -- a file that is not UTF-8 ------------------------------------------------------------------------
LATIN1 = "target: label\nmodalities:\n  caption: {kind: text, column: légende}\n".encode("latin-1")


def test_a_config_file_that_is_not_utf8_names_the_file_and_the_byte(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(LATIN1)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    offset = LATIN1.index(b"\xe9")
    assert info.value.problems == [f"binary.yaml is not UTF-8 text: byte {offset} (line 3) is b'\\xe9' "
                                   "(invalid continuation byte); save the file as UTF-8"]


@pytest.mark.parametrize("command", [["config", "check"], ["train"]])
def test_the_cli_reports_a_non_utf8_config_without_a_traceback(tmp_path, command):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")  # an image saved under a config's name
    extra = ["--train", tmp_path / "train.csv", "--out", tmp_path / "run"] if command == ["train"] else []
    assert_user_error(invoke(*command, path, *extra), "binary.yaml is not UTF-8 text: byte 0 (line 1)")


def test_a_utf8_config_with_non_ascii_text_still_loads(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(LATIN1.decode("latin-1"), encoding="utf-8")
    assert load_config(path).modalities["caption"].column == "légende"


# -- a YAML key given twice --------------------------------------------------------------------------
TWO_IMAGES = """\
target: label
modalities:
  image: {kind: image, column: photo}
  audio: {kind: audio, column: clip}
  image:
    kind: image
    column: scan
train: {epochs: 3, lr: 0.01, epochs: 4}
"""


def test_a_duplicate_yaml_key_is_refused_with_its_path_and_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(TWO_IMAGES, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    assert info.value.problems == [  # every repeated key at once
        "modalities.image: duplicate key (first on line 3, again on line 5); a key may appear only once per mapping",
        "train.epochs: duplicate key (first on line 8, again on line 8); a key may appear only once per mapping",
    ]


def test_duplicate_keys_are_listed_with_the_configs_other_problems(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(TWO_IMAGES.replace("epochs: 4", "epochs: true") + "task: classification\ntask: regression\n"
                    "zzz: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    keys = [p.split(":")[0] for p in info.value.problems]
    assert keys[:3] == ["modalities.image", "train.epochs", "task"]  # the repeated keys first, then the rest
    assert any(p.startswith("train.epochs:") and "integer" in p for p in info.value.problems[3:])
    assert any(p.startswith("zzz") for p in info.value.problems[3:])

def test_duplicate_keys_inside_lists_and_at_the_root():
    with pytest.raises(DuplicateKeyError) as info:
        load_yaml("transfer:\n  - {method: dann}\n  - method: coral\n    method: mmd\ntask: a\ntask: b\n")
    assert [p.split(":")[0] for p in info.value.problems] == ["transfer.1.method", "task"]
    assert "first on line 3, again on line 4" in info.value.problems[0]


def test_keys_that_only_look_alike_anchors_and_merges_are_not_duplicates():
    text = "base: &b {dim: 8, layers: 1}\nhead: {<<: *b, dim: 16}\nother: *b\n1: int key\n'1': str key\n"
    assert load_yaml(text) == {"base": {"dim": 8, "layers": 1}, "head": {"dim": 16, "layers": 1},
                               "other": {"dim": 8, "layers": 1}, 1: "int key", "1": "str key"}
    assert load_yaml("a: {x: 1}\nb: {x: 1}\n") == {"a": {"x": 1}, "b": {"x": 1}}  # the same key in two mappings
    assert load_yaml("") is None


def test_a_duplicate_json_key_is_refused_with_its_path(tmp_path):
    path = tmp_path / "twice.json"
    path.write_text('{"task": "classification", "target": "label", "modalities": {"image": {"kind": "image", '
                    '"column": "a"}, "image": {"kind": "image", "column": "b"}},'
                    ' "transfer": [{"method": "dann", "method": "mmd", "method": "coral"}]}', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        "modalities.image: duplicate key (given 2 times); a key may appear only once per object",
        "transfer.0.method: duplicate key (given 3 times); a key may appear only once per object",
    ]
    assert load_json('{"a": {"x": 1}, "b": {"x": 1}}') == {"a": {"x": 1}, "b": {"x": 1}}  # one key per object


def test_the_cli_lists_duplicate_keys(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(TWO_IMAGES, encoding="utf-8")
    assert_user_error(invoke("config", "check", path), "modalities.image: duplicate key (first on line 3, again on line 5)")


# -- mel filters that do not fit the FFT bins --------------------------------------------------------
def test_n_mels_above_the_fft_bins_is_refused():
    problems = problems_of(config_with(**{f"{AUDIO}.n_mels": 4000}))  # 25 ms at 8 kHz: n_fft 200, 101 bins
    assert problems == [f"{AUDIO}.n_mels: must be at most 101, the FFT bins of a 200-sample frame (frame_ms 25 at "
                        "sample_rate 8000: n_fft // 2 + 1); got 4000 (lower n_mels, or raise frame_ms)"]


def test_n_mels_that_leaves_mel_filters_empty_is_refused():
    data = config_with(**{f"{AUDIO}.sample_rate": 16000, f"{AUDIO}.frame_ms": 10, f"{AUDIO}.n_mels": 80})
    (problem,) = problems_of(data)  # 81 bins, 100 Hz apart: the lowest filters fall between two bins
    assert problem.startswith(f"{AUDIO}.n_mels: 80 mel filters between 0 and 8000 Hz are too narrow for FFT bins "
                              "100 Hz apart (frame_ms 10 at sample_rate 16000): filter(s) ")
    suggested = int(problem.split("; n_mels ")[1].split()[0])
    assert 0 < suggested < 80 and not empty_mel_filters(16000, 160, suggested, 0.0, None)
    assert problem.endswith("fits (or raise frame_ms); got 80")
    config = load_config(config_with(**{f"{AUDIO}.sample_rate": 16000, f"{AUDIO}.frame_ms": 10,
                                        f"{AUDIO}.n_mels": suggested}))
    assert config.modalities["spoken"].preprocess.n_mels == suggested


def test_a_band_too_narrow_for_even_one_filter_is_refused():
    data = config_with(**{f"{AUDIO}.fmin": 100.0, f"{AUDIO}.fmax": 110.0, f"{AUDIO}.n_mels": 1,
                          f"{AUDIO}.features": "log_mel"})
    (problem,) = problems_of(data)
    assert problem.startswith(f"{AUDIO}.n_mels: 1 mel filters between 100 and 110 Hz")
    assert "widen fmin..fmax (100..110 Hz)" in problem


@pytest.mark.parametrize(("changes", "key", "fragment"), [
    ({"fmin": 4000.0}, "fmin", "must be below fmax (4000 Hz = sample_rate / 2); got 4000"),
    ({"fmin": 3000.0, "fmax": 2000.0}, "fmin", "must be below fmax (2000 Hz); got 3000"),
    ({"sample_rate": 1000, "frame_ms": 1, "hop_ms": 1}, "frame_ms",
     "a frame must hold at least 2 samples for features 'log_mel'; frame_ms 1 at sample_rate 1000 gives 1"),
    ({"sample_rate": 400, "frame_ms": 10, "hop_ms": 1}, "hop_ms",
     "the hop must be at least 1 sample; hop_ms 1 at sample_rate 400 gives 0"),
])
def test_frames_and_bands_the_features_cannot_use(changes, key, fragment):
    data = config_with(**{f"{AUDIO}.{k}": v for k, v in changes.items()})
    assert problems_of(data) == [f"{AUDIO}.{key}: {fragment}"]


def test_mel_settings_are_not_checked_where_no_mel_filters_are_made():
    for features in ("waveform", "spectrogram"):
        config = load_config(config_with(**{f"{AUDIO}.n_mels": 4000, f"{AUDIO}.features": features,
                                            "modalities.spoken.encoder": {"name": "rnn"}}))
        assert config.modalities["spoken"].preprocess.n_mels == 4000


def test_n_mfcc_above_n_mels_is_still_refused():
    problems = problems_of(config_with(**{f"{AUDIO}.features": "mfcc", f"{AUDIO}.n_mfcc": 41}))
    assert problems == [f"{AUDIO}: n_mfcc (41) must not exceed n_mels (40)"]


def test_empty_mel_filters_are_the_all_zero_rows_of_librosas_filterbank():
    """Those librosa warns of, and a first filter from 0 Hz with no bin above 0 under it, which
    librosa's warning leaves out (44.1 kHz, 10 ms frames, 80 mels: a band of -100 dB always)."""
    librosa = pytest.importorskip("librosa")
    empties, first = 0, 0
    grid = itertools.product([8000, 16000, 22050, 44100], [5, 10, 25, 32], [16, 40, 64, 80, 128], [0.0, 300.0, 1500.0],
                             [None, 3999.5])
    for rate, frame_ms, n_mels, fmin, fmax in grid:
        n_fft = frame_samples(frame_ms, rate)
        if n_mels > n_fft // 2 + 1:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bank = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        zero = [int(i) for i in np.flatnonzero(bank.max(axis=1) == 0)]
        assert empty_mel_filters(rate, n_fft, n_mels, fmin, fmax) == zero, (rate, frame_ms, n_mels, fmin, fmax)
        empties += bool(zero)
        first += 0 in zero
    assert empties >= 5 and first >= 1  # the grid holds both kinds, and empty first filters
    assert empty_mel_filters(44100, 441, 80, 0.0, None) == [0]


def test_most_mel_filters_fits_and_is_none_when_nothing_fits():
    best = most_mel_filters(16000, 160, 0.0, None, below=81)
    assert best is not None and not empty_mel_filters(16000, 160, best, 0.0, None)
    assert empty_mel_filters(16000, 160, best + 10, 0.0, None)
    assert most_mel_filters(8000, 200, 100.0, 110.0, below=5) is None


# -- booleans are not numbers ------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "value", "expected"), [
    ("train.epochs", True, "must be an integer, not a boolean (got True)"),
    ("train.lr", False, "must be a number, not a boolean (got False)"),
    ("loss.class_weights", [1.0, True], "item 1 must be a number, not a boolean (got [1.0, True])"),
    ("modalities.digit_image.preprocess.size", [True, 28], "item 0 must be an integer, not a boolean (got [True, 28])"),
    ("modalities.digit_image.encoder", {"name": "cnn", "freeze": True}, None),
    ("train.modality_dropout", {"spoken": True}, "value of 'spoken' must be a number, not a boolean"),
])
def test_a_boolean_for_a_number_is_refused(key, value, expected):
    problems = problems_of(config_with(**{key: value}))
    if expected is None:  # a union of words and an integer lists the words
        assert problems == [f"{key}.freeze: must be 'none', 'all' or an integer, not a boolean (got True)"]
    else:
        assert problems == [f"{key}: {expected}"]


def test_a_boolean_for_a_number_is_listed_beside_the_sections_other_problems():
    problems = problems_of(config_with(**{"train": {"epochs": True, "lr": -1, "epoch": 3,
                                                    "early_stopping": {"patience": False}}}))
    assert sorted(problems) == sorted([
        "train.epochs: must be an integer, not a boolean (got True)",
        "train.lr: Input should be greater than 0 (got -1)",
        "train.early_stopping.patience: must be an integer, not a boolean (got False)",
        problems[[p.split(":")[0] for p in problems].index("train.epoch")],
    ])
    assert any(p.startswith("train.epoch: unknown key 'epoch' (did you mean 'epochs'?)") for p in problems)


@pytest.mark.parametrize(("given", "absent"), [("mean", "std"), ("std", "mean")])
def test_an_image_mean_without_its_std_is_refused(given, absent):
    problems = problems_of(config_with(**{f"modalities.digit_image.preprocess.{given}": [0.5]}))
    assert any(f"{given} is given without {absent}" in p for p in problems), problems


def test_a_boolean_assigned_to_a_number_is_refused_too():
    config = load_config(config_with())
    with pytest.raises(ConfigError, match="epochs: must be an integer, not a boolean"):
        config.train.epochs = True
    with pytest.raises(ConfigError, match=r"item 1 must be a number, not a boolean"):
        config.loss.class_weights = [1.0, True]
    config.train.epochs, config.train.deterministic = 7, False  # numbers and booleans where they belong
    assert (config.train.epochs, config.train.deterministic) == (7, False)


def test_numbers_and_booleans_from_yaml_still_validate(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("target: label\nmodalities:\n  caption: {kind: text, column: caption}\n"
                    "train: {epochs: 3, lr: 1, batch_size: 8, deterministic: yes, progress: false}\n", encoding="utf-8")
    train = load_config(path).train
    assert (train.epochs, train.batch_size) == (3, 8)
    assert isinstance(train.lr, float) and train.lr == 1.0  # an integer is a fine float
    assert train.deterministic is True and train.progress is False


# -- values too large to be meant --------------------------------------------------------------------
@pytest.mark.parametrize(("key", "value", "limit"), [
    (f"{AUDIO}.max_seconds", 1e9, "3600"),
    (f"{AUDIO}.sample_rate", 10_000_000, "384000"),
    ("modalities.digit_image.preprocess.size", 5000, "4096"),
    ("modalities.caption.preprocess.max_tokens", 10**9, "131072"),
    ("modalities.caption.preprocess.vocab_size", 10**9, "10000000"),
])
def test_a_value_above_its_limit_is_refused_with_the_limit(key, value, limit):
    assert problems_of(config_with(**{key: value})) == [
        f"{key}: Input should be less than or equal to {limit} (got {value!r})"]


def test_a_side_above_the_limit_in_a_size_pair_is_refused():
    key = "modalities.digit_image.preprocess.size"
    assert problems_of(config_with(**{key: [28, 5000]})) == [
        f"{key}.1: Input should be less than or equal to 4096 (got 5000)"]


def test_values_at_the_limits_are_accepted():
    config = load_config(config_with(**{f"{AUDIO}.max_seconds": 3600, "modalities.digit_image.preprocess.size": 4096,
                                        "modalities.caption.preprocess.max_tokens": 131_072}))
    assert config.modalities["spoken"].preprocess.max_seconds == 3600.0
    assert config.modalities["digit_image"].preprocess.size == 4096
    assert config.modalities["caption"].preprocess.max_tokens == 131_072


def test_a_saved_run_trained_before_the_mel_check_still_loads(tmp_path):
    """librosa only warned about empty mel filters, so runs with such settings exist: their
    config.yaml loads (with a warning) while a new config with the same settings is refused."""
    from polymodal.runfolder import read_config

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_with(**{f"{AUDIO}.n_mels": 128})), encoding="utf-8")
    with pytest.raises(ConfigError, match="n_mels"):
        load_config(path)
    with pytest.warns(UserWarning, match="would be refused for a new run"):
        config = read_config(tmp_path)
    assert config.modalities["spoken"].preprocess.n_mels == 128


def test_a_manifest_given_as_the_config_says_the_arguments_are_swapped(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("image,label\na.png,1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"train.csv is a manifest \(.csv\), not a config \(YAML or JSON\); the "
                                          "config comes first: polymodal train CONFIG --train MANIFEST"):
        load_config(path)


def test_a_clip_shorter_than_one_frame_is_refused():
    """0.001 s at 8 kHz is 8 samples: one padded 25 ms frame, a clip the model cannot learn from."""
    assert problems_of(config_with(**{f"{AUDIO}.max_seconds": 0.001})) == [
        f"{AUDIO}.max_seconds: a clip of 0.001 s is shorter than one frame (frame_ms 25); at least 0.025"]
    assert load_config(config_with(**{f"{AUDIO}.max_seconds": 0.025})).modalities["spoken"].preprocess.max_seconds == 0.025


def test_a_seed_numpy_cannot_take_is_refused():
    (problem,) = problems_of(config_with(**{"train.seed": 10**20}))
    assert problem.startswith("train.seed:") and "4294967295" in problem


def test_a_number_out_of_range_for_a_number_or_word_field_is_one_problem():
    assert problems_of(config_with(**{"train.devices": 0})) == ["train.devices: Input should be greater than 0, or 'auto' (got 0)"]
    words = problems_of(config_with(**{"train.devices": "x"}))  # neither member: one line saying what both take
    assert words == ["train.devices: Input should be 'auto', or an integer (got 'x')"]


def test_a_bad_assignment_is_a_config_error_naming_the_key():
    config = load_config(config_with())
    with pytest.raises(ConfigError) as info:
        config.data.on_error = "bogus"
    assert info.value.source == "an assignment to config.data.on_error"
    assert info.value.problems == ["data.on_error: Input should be 'raise', 'skip' or 'missing' (got 'bogus')"]
    assert config.data.on_error == "raise"  # unchanged
    with pytest.raises(ConfigError, match=r"fusion.name: a section's name cannot change in place \('attention' to "
                                          r"'late'\); assign a new section"):
        config.fusion.name = "late"
    config.fusion = {"name": "late"}  # a new section: validated as one
    assert config.fusion.name == "late" and config.fusion.produces_outputs
    with pytest.raises(ConfigError, match=r"fusion.dropout: Input should be less than 1"):  # the new one's key
        config.fusion.dropout = 1.5
    config.modalities["spoken"].preprocess = {}  # a section below a dict of sections: its key within the config
    with pytest.raises(ConfigError) as info:
        config.modalities["spoken"].preprocess.sample_rate = -1
    assert info.value.source == "an assignment to config.modalities.spoken.preprocess.sample_rate"
    assert info.value.problems[0].startswith("modalities.spoken.preprocess.sample_rate: Input should be greater than 0")
    from polymodal.config.train import TrainConfig

    alone = TrainConfig()  # a section built on its own: named by its class
    with pytest.raises(ConfigError) as info:
        alone.epochs = 0
    assert info.value.source == "an assignment to TrainConfig.epochs" and info.value.problems[0].startswith("epochs:")


def test_an_assignment_a_config_wide_rule_refuses_is_reported_once_not_wrapped(tmp_path):
    config = load_config({"target": "y", "modalities": {"a": {"kind": "audio", "column": "f", "encoder": {
        "name": "speech_embedding", "path": str(tmp_path)}}}})
    with pytest.raises(ConfigError) as info:  # the speech model's window is longer than the clips would be
        config.modalities["a"].preprocess = {"max_seconds": 0.1}
    assert len(info.value.problems) == 1 and "Invalid config" not in info.value.problems[0]
    assert "needs clips of at least 0.79 s" in info.value.problems[0]
