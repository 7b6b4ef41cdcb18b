"""Pretrained timm encoders through ``MultimodalPredictor``: the frozen-feature cache trains the
same model as running the frozen encoder, and LoRA runs save and load exactly.

The "pretrained" weights are a random timm ``mobilenetv3_small_050`` saved to a temp folder.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_models import classification_config, make_dataset, write_splits

from polymodal import MultimodalPredictor
from polymodal.data.embeddings import SUBFOLDER


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    import timm

    root = tmp_path_factory.mktemp("pretrained-data")
    paths = write_splits(root, make_dataset(root, n=45))
    torch.manual_seed(0)
    weights = root / "lite0.pth"
    torch.save(timm.create_model("mobilenetv3_small_050", pretrained=False).state_dict(), weights)
    return {"weights": weights, **paths}


def config(data: dict, tmp_path, **encoder) -> dict:
    cfg = classification_config(epochs=2)
    cfg["modalities"]["img"]["preprocess"] = {"size": 16, "color": "gray"}
    cfg["modalities"]["img"]["encoder"] = {"name": "timm", "arch": "mobilenetv3_small_050", "weights": str(data["weights"]),
                                           "freeze": "all", **encoder}
    cfg["data"] = {"cache_dir": str(tmp_path / "cache")}
    return cfg


def test_cached_features_train_the_same_model_as_the_frozen_encoder(data, tmp_path):
    live = MultimodalPredictor.from_config(config(data, tmp_path)).fit(data["train"], data["valid"])
    cached = MultimodalPredictor.from_config(config(data, tmp_path, cache=True)).fit(data["train"], data["valid"])
    stored = list((tmp_path / "cache" / SUBFOLDER).iterdir())
    assert len(stored) == 1  # one fingerprint: this encoder + preprocessing
    expected = live.predict_proba(data["test"]).to_numpy()
    np.testing.assert_allclose(cached.predict_proba(data["test"]).to_numpy(), expected, atol=1e-4)
    frozen = [p for p in cached.net.encoders["img"].backbone.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)


def test_lora_trains_only_adapters_and_the_run_loads_exactly(data, tmp_path):
    cfg = config(data, tmp_path, lora={"r": 2, "alpha": 4})
    pred = MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], out=tmp_path / "run")
    backbone = pred.net.encoders["img"].backbone
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    original = torch.load(data["weights"], weights_only=True)
    state = backbone.state_dict()
    conv_pw = "blocks.1.0.conv_pw"  # an adapted 1x1 convolution keeps its pretrained weight untouched
    assert torch.equal(state[f"{conv_pw}.base_layer.weight"], original[f"{conv_pw}.weight"])
    loaded = MultimodalPredictor.load(tmp_path / "run")
    np.testing.assert_array_equal(loaded.predict_proba(data["test"]).to_numpy(),
                                  pred.predict_proba(data["test"]).to_numpy())
    lora_b = [v for k, v in loaded.net.encoders["img"].backbone.state_dict().items() if "lora_B" in k]
    assert lora_b and any(float(v.abs().sum()) > 0 for v in lora_b)  # adapters trained (B starts at 0)
