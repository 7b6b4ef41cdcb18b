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
