"""Contract tests run for every registered preprocessor: ``spec`` describes ``featurize``, the
fitted state survives save/load into a fresh instance (JSON + safetensors, no pickle), and
``transform`` gives the batch the data pipeline gives (encode, then a dataset batch)."""

from __future__ import annotations

import json
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal.config.modalities import (
    AudioModality,
    ImageModality,
    SignalModality,
    TabularModality,
    TextModality,
    VideoModality,
)
from polymodal.data.dataset import MultimodalDataset
from polymodal.data.encode import EncodedTable, encode_modality
from polymodal.data.manifest import Manifest
from polymodal.data.modalities import PREPROCESSORS, Preprocessor, build_preprocessor
from polymodal.errors import DecodeError

from ..helpers import as_tensors, assert_nested_equal, encode_values, tone, write_image, write_wav

Case = Callable[[Path], tuple[Any, list[Any], list[Any]]]


def audio_case(tmp: Path, **preprocess: Any) -> tuple[Any, list[Any], list[Any]]:
    cfg = AudioModality(kind="audio", column="wav", preprocess={
        "sample_rate": 8000, "max_seconds": 0.3, "n_mels": 20, "normalize": "global", **preprocess})
    paths = [write_wav(tmp / f"{i}.wav", tone(200 * (i + 1), 0.1 * (i + 1), 8000, seed=i), 8000) for i in range(4)]
    return cfg, paths[:3], paths[3:]


def image_case(tmp: Path) -> tuple[Any, list[Any], list[Any]]:
    cfg = ImageModality(kind="image", column="img", preprocess={"size": 12, "normalize": "standard"})
    rng = np.random.default_rng(0)
    paths = [write_image(tmp / f"{i}.png", rng.integers(0, 256, (10 + i, 14, 3), dtype=np.uint8)) for i in range(4)]
    return cfg, paths[:3], paths[3:]


CORPUS = ["the lazy dog sleeps", "a quick brown fox", "the fox jumps over the dog", "quick quick dog"]


def text_case(tmp: Path, tokenizer: str) -> tuple[Any, list[Any], list[Any]]:
    cfg = TextModality(kind="text", column="t", preprocess={"tokenizer": tokenizer, "vocab_size": 60, "max_tokens": 8})
    return cfg, CORPUS, ["an unseen sleepy fox", "the dog"]


def signal_case(tmp: Path, **preprocess: Any) -> tuple[Any, list[Any], list[Any]]:
    cfg = SignalModality(kind="signal", column="s", preprocess={"length": 128, "normalize": "global", **preprocess})
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        np.save(tmp / f"{i}.npy", rng.standard_normal((100 + 20 * i, 2)).astype(np.float32))
        paths.append(str(tmp / f"{i}.npy"))
    return cfg, paths[:3], paths[3:]


def tabular_case(tmp: Path) -> tuple[Any, list[Any], list[Any]]:
    cfg = TabularModality(kind="tabular", columns=["a", "b"], categorical=["c"])
    train = [(1.0, 2.0, "x"), (float("nan"), 5.0, "y"), (3.0, float("nan"), "x")]
    return cfg, train, [(7.0, float("nan"), "z"), (2.0, 2.0, "y")]


def video_case(tmp: Path) -> tuple[Any, list[Any], list[Any]]:
    cfg = VideoModality(kind="video", column="v", preprocess={"size": 8, "frames": 3, "normalize": "standard",
                                                               "sampling": "stride", "stride": 2})
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):  # 3..6 frames: the stride leaves 2 or 3, so short clips are padded
        np.save(tmp / f"{i}.npy", rng.integers(0, 256, (3 + i, 10, 12, 3), dtype=np.uint8))
        paths.append(str(tmp / f"{i}.npy"))
    return cfg, paths[:3], paths[3:]


CASES: dict[str, Case] = {
    "audio-log_mel": audio_case,
    "audio-mfcc": lambda tmp: audio_case(tmp, features="mfcc", n_mfcc=10),
    "image-standard": image_case,
    "text-word": lambda tmp: text_case(tmp, "word"),
    "text-wordpiece": lambda tmp: text_case(tmp, "wordpiece"),
    "text-bpe": lambda tmp: text_case(tmp, "bpe"),
    "signal-global": signal_case,
    "signal-spectrogram": lambda tmp: signal_case(tmp, spectrogram={"n_fft": 16, "hop": 8}),
    "tabular": tabular_case,
    "video-standard": video_case,
}


def fitted(case: Case, tmp_path: Path) -> tuple[Any, Preprocessor, list[Any]]:
    cfg, train, new = case(tmp_path)
    prep = build_preprocessor(cfg, "m")
    prep.fit(train)
    prep.fit_features(encode_values(prep, train))
    return cfg, prep, new


def test_every_registered_preprocessor_has_a_contract_case(tmp_path):
    covered = set()
    for name, case in CASES.items():
        folder = tmp_path / name
        folder.mkdir()
        covered.add(type(case(folder)[0]))
    assert {config_cls for config_cls, _ in PREPROCESSORS.items()} <= covered


@pytest.mark.parametrize("name", CASES)
def test_spec_describes_featurize(tmp_path, name):
    _, prep, new = fitted(CASES[name], tmp_path)
    arrays = encode_values(prep, new)
    spec = prep.spec()
    assert set(arrays) == set(spec)
    for key, array in arrays.items():
        assert array.shape == (len(new), *spec[key].shape), key
        assert array.dtype == np.dtype(spec[key].dtype), key


@pytest.mark.parametrize("name", CASES)
def test_state_round_trip_gives_identical_batches(tmp_path, name):
    cfg, prep, new = fitted(CASES[name], tmp_path)
    folder = tmp_path / "state"
    prep.save(folder)
    saved = sorted(p.name for p in folder.iterdir())
    assert all(p.endswith((".json", ".safetensors")) for p in saved), saved  # no pickle
    json.loads((folder / "m.json").read_text())

    fresh = build_preprocessor(cfg, "m")
    fresh.load(folder)
    before, after = encode_values(prep, new), encode_values(fresh, new)
    assert set(before) == set(after)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    assert_nested_equal(fresh.to_batch(as_tensors(after), train=False), prep.to_batch(as_tensors(before), train=False))
    assert fresh.encoder_context() == prep.encoder_context()
    assert fresh.fingerprint() == prep.fingerprint()


def test_fingerprint_follows_the_encoding_state_not_the_batch_statistics(tmp_path):
    cfg, train, _ = text_case(tmp_path, "word")
    first, second = build_preprocessor(cfg, "m"), build_preprocessor(cfg, "m")
    first.fit(train)
    second.fit(train[:1])
    assert first.fingerprint() != second.fingerprint()  # another vocabulary gives other ids

    cfg, train, _ = audio_case(tmp_path)
    prep = build_preprocessor(cfg, "m")
    before = prep.fingerprint()
    prep.fit_features(encode_values(prep, train))  # normalisation statistics do not change cached features
    assert prep.mean is not None and prep.fingerprint() == before


def _literal_choices(annotation: Any) -> list[Any]:
    """The choices of a ``Literal`` annotation, also inside ``X | None``."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [c for arg in typing.get_args(annotation) for c in _literal_choices(arg)]


def _preprocess_variants(cfg: Any) -> list[tuple[str, Any]]:
    """The modality config with one bool or Literal preprocessing field changed, for every other
    valid choice of every such field."""
    preprocess = cfg.preprocess.model_dump()
    out = []
    for name, field in type(cfg.preprocess).model_fields.items():
        choices = [not field.default] if field.annotation is bool else _literal_choices(field.annotation)
        for choice in choices:
            if choice == preprocess[name]:
                continue
            try:
                variant = type(cfg).model_validate({**cfg.model_dump(), "preprocess": {**preprocess, name: choice}})
            except ValueError:  # a combination the schema refuses
                continue
            out.append((f"{name}={choice}", variant))
    return out


@pytest.mark.parametrize("name", CASES)
def test_equal_fingerprints_mean_equal_features(tmp_path, name):
    """The fingerprint keys the tensor cache, so a setting that changes what ``featurize`` gives
    must change it; settings applied at batch time (``batch_time_fields``) must not change the
    features, or a warm cache would serve stale ones."""
    cfg, train, new = CASES[name](tmp_path)
    variants = _preprocess_variants(cfg)
    if not variants:
        pytest.skip(f"{type(cfg.preprocess).__name__} has no bool or Literal settings")

    def featurised(config: Any) -> tuple[str, dict[str, np.ndarray] | None]:
        """The fingerprint and the features, or None where the setting cannot read the case's inputs
        (``layout: channels_first`` on (samples, channels) arrays of several lengths)."""
        prep = build_preprocessor(config, "m")
        prep.fit(train)
        try:
            return prep.fingerprint(), encode_values(prep, train + new)
        except DecodeError:
            return prep.fingerprint(), None

    fingerprint, arrays = featurised(cfg)
    assert arrays is not None
    for variant_id, variant in variants:
        other_fingerprint, other = featurised(variant)
        same = other is not None and set(arrays) == set(other) and all(
            arrays[k].shape == other[k].shape and np.array_equal(arrays[k], other[k], equal_nan=True) for k in arrays)
        if other_fingerprint == fingerprint:
            assert same, f"{variant_id} changes the features but not the fingerprint"


def pipeline_dataset(prep: Preprocessor, values: list[Any], train: bool = False) -> MultimodalDataset:
    """The data pipeline's dataset over ``values``: encoded (decoded and featurised chunk by chunk,
    as for a manifest) into a table, batched by the torch dataset."""
    manifest = Manifest(pd.DataFrame(index=range(len(values))), Path.cwd(), "values")  # names rows in errors and notes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # notes of the cells (an audio clip cut to max_seconds): not what is tested
        encoded, skipped = encode_modality(prep, values, manifest)
    assert not skipped and encoded.present.all()
    return MultimodalDataset(EncodedTable({prep.name: encoded}, np.arange(len(values))), {prep.name: prep}, train=train)


def pipeline_batch(dataset: MultimodalDataset) -> dict[str, Any]:
    """The encoder inputs of a batch of every row of ``dataset``, in order."""
    (name,) = dataset.preprocessors
    return dataset.__getitems__(list(range(len(dataset))))["inputs"][name]


@pytest.mark.parametrize("name", CASES)
def test_transform_gives_the_pipelines_batch(tmp_path, name):
    cfg, train, new = CASES[name](tmp_path)
    prep = build_preprocessor(cfg, "m")
    prep.fit(train)
    prep.fit_features(encode_values(prep, train))
    values = new + train[::-1]  # unseen cells first, then training ones out of order
    got = prep.transform(values)
    assert all(v.shape[0] == len(values) for v in got.values())
    assert_nested_equal(got, pipeline_batch(pipeline_dataset(prep, values)))
    empty = prep.transform([])
    assert set(empty) == set(got) and all(v.shape[0] == 0 for v in empty.values())
    assert_nested_equal(empty, pipeline_batch(pipeline_dataset(prep, [])))


def test_transform_applies_training_augmentation_only_when_asked(tmp_path):
    cfg, train, _ = audio_case(tmp_path, augment={"time_masks": 2, "time_width": 8, "freq_masks": 2, "freq_width": 4})
    prep = build_preprocessor(cfg, "m")
    prep.fit(train)
    prep.fit_features(encode_values(prep, train))
    dataset = pipeline_dataset(prep, train, train=True)  # encoding draws random seeds too: before seeding
    torch.manual_seed(0)
    augmented = prep.transform(train, train=True)
    torch.manual_seed(0)
    assert_nested_equal(augmented, pipeline_batch(dataset))
    plain = prep.transform(train)
    assert_nested_equal(plain, pipeline_batch(pipeline_dataset(prep, train)))
    assert not torch.equal(augmented["x"], plain["x"]), "train=True must mask some bands"
