"""The ``frame_cnn`` video encoder beyond the registry contract: padded frames never leak into the
output, the frame encoder's own ``freeze`` applies, and any image encoder can run per frame."""

from __future__ import annotations

import torch

import polymodal.models  # noqa: F401 - fills the registries
from polymodal.config.video import FrameCnnConfig
from polymodal.models.registry import ENCODERS

CONTEXT = {"in_channels": 1, "size": (16, 16), "frames": 4}


def build(**cfg: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return ENCODERS.build(FrameCnnConfig(frame={"name": "cnn", "channels": [4], "dim": 8}, dim=8, **cfg),
                          kind="video", **CONTEXT).eval()


def test_padded_frames_do_not_change_the_output():
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    x = torch.rand(2, 4, 1, 16, 16)
    noisy = x.clone()
    noisy[0, 2:] = torch.rand(2, 1, 16, 16) * 100  # garbage where the clip has no frames
    for temporal in ("mean", "gru", "transformer"):
        encoder = build(temporal=temporal, heads=2)
        a, b = encoder(x, mask), encoder(noisy, mask)
        torch.testing.assert_close(a.pooled, b.pooled)  # the GRU packs its sequences, the others mask
        assert a.tokens.shape == (2, 4, encoder.output_dim)
        assert not a.tokens[0, 2:].any() and a.token_mask.tolist() == mask.tolist()


def test_temporal_models_see_frame_order():
    x = torch.rand(1, 4, 1, 16, 16)
    reversed_clip = x.flip(1)
    mean, gru = build(temporal="mean"), build(temporal="gru")
    torch.testing.assert_close(mean(x).pooled, mean(reversed_clip).pooled)  # order-free by design
    assert not torch.allclose(gru(x).pooled, gru(reversed_clip).pooled)


def test_frame_encoder_freeze_applies_and_any_image_encoder_works():
    frozen = ENCODERS.build(FrameCnnConfig(frame={"name": "cnn", "channels": [4], "dim": 8, "freeze": "all"}, dim=8),
                            kind="video", **CONTEXT)
    assert not any(p.requires_grad for p in frozen.frame.parameters())
    assert all(p.requires_grad for p in frozen.temporal.parameters())
    resnet = ENCODERS.build(FrameCnnConfig(frame={"name": "resnet", "dim": 8}, temporal="mean", dim=None),
                            kind="video", **CONTEXT)
    out = resnet(torch.rand(2, 4, 1, 16, 16))
    assert out.pooled.shape == (2, 8) and resnet.output_dim == 8


def video_config(encoder: dict, **preprocess: object) -> object:
    """A config with one video modality; a preprocess field given as None is left unset."""
    from polymodal.config import load_config

    preprocess = {k: v for k, v in {"size": 16, "color": "gray", **preprocess}.items() if v is not None}
    return load_config({"task": "classification", "target": "y", "modalities": {"v": {
        "kind": "video", "column": "v", "preprocess": preprocess, "encoder": encoder}}})


def test_an_image_encoder_on_a_video_is_frame_cnn_with_temporal_mean():
    from polymodal.config import config_to_dict

    for frame in ({"name": "cnn", "channels": [4], "dim": 8}, {"name": "resnet", "dim": 8}):
        config = video_config(frame)
        cfg = config.modalities["v"].encoder
        assert isinstance(cfg, FrameCnnConfig) and cfg.temporal == "mean" and cfg.dim is None
        stored = config_to_dict(config)["modalities"]["v"]["encoder"]
        assert stored["name"] == "frame_cnn" and stored["frame"]["name"] == frame["name"]
        assert stored["frame"]["dim"] == 8
        torch.manual_seed(0)
        encoder = ENCODERS.build(cfg, kind="video", **CONTEXT).eval()
        mask = torch.tensor([[True, True, True, False]])
        out = encoder(torch.rand(1, 4, 1, 16, 16), mask)
        assert out.pooled.shape == (1, 8) and encoder.output_dim == 8 and torch.isfinite(out.pooled).all()
        per_frame = encoder.frame_vectors(torch.rand(3, 1, 16, 16))
        assert per_frame.shape == (3, 8)  # the image encoder's own width: no projection


def test_a_video_encoder_name_that_is_no_image_encoder_is_refused():
    import pytest

    from polymodal.errors import ConfigError

    with pytest.raises(ConfigError, match=r"modalities\.v\.encoder: encoder 'rnn' is neither.*'frame_cnn'.*cnn, "
                                          r"resnet, timm.*got name: 'rnn'"):
        video_config({"name": "rnn"})
    with pytest.raises(ConfigError, match=r"modalities\.v\.encoder: dpeth: unknown key 'dpeth'.*allowed keys: .*depth"):
        video_config({"name": "resnet", "dpeth": 18})


def test_a_pretrained_frame_encoder_loads_local_weights_and_brings_its_preprocessing(tmp_path):
    import timm

    torch.manual_seed(3)
    state = timm.create_model("test_resnet", pretrained=False).state_dict()
    torch.save(state, tmp_path / "tiny.pth")
    config = video_config({"name": "timm", "arch": "test_resnet", "weights": str(tmp_path / "tiny.pth")},
                          color="rgb", size=None)
    prep = config.modalities["v"].preprocess
    assert prep.size == 160 and prep.mean == [0.5, 0.5, 0.5]  # timm's data config of test_resnet
    encoder = ENCODERS.build(config.modalities["v"].encoder, kind="video", in_channels=3, size=(32, 32), frames=2)
    assert encoder.pretrained
    assert torch.equal(encoder.frame.backbone.conv1[0].weight, state["conv1.0.weight"])
    assert encoder(torch.rand(1, 2, 3, 32, 32)).pooled.shape == (1, encoder.output_dim)
