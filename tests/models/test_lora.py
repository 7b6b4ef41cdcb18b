"""LoRA adapters (peft) on pretrained encoders, and freezing that keeps adapters trainable and
frozen batch-norm layers in eval mode."""

from __future__ import annotations

import pytest
import torch
from helpers_models import save_tiny_bert

import polymodal.models  # noqa: F401 - fills the registries
from polymodal.config.encoders import HfConfig, TimmConfig
from polymodal.config.finetune import LoraConfig
from polymodal.models.registry import ENCODERS

from .helpers import CONTEXTS, assert_all_parameters_get_gradients, random_projection_loss


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert"))


def _text_inputs() -> dict[str, torch.Tensor]:
    return {"x": torch.tensor([[2, 5, 7, 3], [2, 9, 3, 0]]), "mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]).bool()}


def test_hf_lora_adapts_query_and_value_and_starts_as_the_base_model(tiny_bert):
    base = ENCODERS.build(HfConfig(path=tiny_bert), kind="text", **CONTEXTS["text"]).eval()
    adapted = ENCODERS.build(HfConfig(path=tiny_bert, lora=LoraConfig(r=4)), kind="text", **CONTEXTS["text"]).eval()
    names = {n.rsplit(".lora_", 1)[0].rsplit(".", 1)[-1] for n, _ in adapted.named_parameters() if ".lora_" in n}
    assert names == {"query", "value"}
    with torch.no_grad():  # B starts at zero: the adapted model computes what the base model does
        torch.testing.assert_close(adapted(**_text_inputs()).pooled, base(**_text_inputs()).pooled)


def test_freeze_all_with_lora_trains_only_the_adapters(tiny_bert):
    encoder = ENCODERS.build(HfConfig(path=tiny_bert, lora=LoraConfig(r=2)), kind="text", **CONTEXTS["text"]).train()
    encoder.freeze("all")
    trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert {id(p) for p in encoder.adapter_parameters()} == {id(p) for p in encoder.parameters() if p.requires_grad}
    with torch.no_grad():  # move B off zero so that gradients reach A too
        for p in encoder.adapter_parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = encoder(**_text_inputs())
    random_projection_loss(out.pooled, out.tokens).backward()
    assert_all_parameters_get_gradients(encoder)


def test_timm_lora_targets_linear_and_pointwise_convolutions():
    encoder = ENCODERS.build(TimmConfig(arch="efficientnet_lite0", lora=LoraConfig(r=2)), kind="image", in_channels=3)
    from peft.tuners.lora import LoraLayer

    adapted = [m.base_layer for m in encoder.modules() if isinstance(m, LoraLayer)]
    convs = [m for m in adapted if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.kernel_size == (1, 1) and m.groups == 1 for m in convs)
    plain = ENCODERS.build(TimmConfig(arch="efficientnet_lite0"), kind="image", in_channels=3)
    pointwise = [m for m in plain.backbone.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)
                 and m.groups == 1]
    assert len(convs) == len(pointwise) == 32  # every pointwise conv (16 blocks: expand + project), no other


def test_lora_with_unknown_targets_is_a_value_error(tiny_bert):
    with pytest.raises(ValueError, match="no_such_layer"):
        ENCODERS.build(HfConfig(path=tiny_bert, lora=LoraConfig(targets=["no_such_layer"])), kind="text",
                       **CONTEXTS["text"])


def test_frozen_batch_norm_keeps_its_statistics_in_training_mode():
    encoder = ENCODERS.build(TimmConfig(arch="efficientnet_lite0"), kind="image", in_channels=3)
    encoder.freeze(1)  # only the head block trains
    encoder.train()
    stem_bn, head_bn = encoder.backbone.bn1, encoder.backbone.bn2
    assert not stem_bn.training and head_bn.training
    before = stem_bn.running_mean.clone()
    encoder(x=torch.rand(4, 3, 32, 32) * 5)
    assert torch.equal(stem_bn.running_mean, before)
    assert not torch.equal(head_bn.running_mean, torch.zeros_like(head_bn.running_mean))
    encoder.freeze(len(encoder.blocks()))  # nothing frozen any more: every batch norm trains again
    encoder.train()
    assert all(m.training for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
