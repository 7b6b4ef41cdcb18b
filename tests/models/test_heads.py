"""Head contract tests, driven by the HEADS registry (STYLE rule 16).

Every registered head config is built with its defaults and with each other choice of its bool /
Literal fields and applied to a fused output with tokens and a validity mask (invalid positions in
the middle and at the end). Contract: ``forward(fused) -> (B, n_outputs)``, finite, every trainable
parameter trained, configs that refuse unknown keys and out-of-range numbers.
"""

from __future__ import annotations

import typing

import pytest
import torch

import polymodal.models  # noqa: F401 - fills the registries
from polymodal.config import load_config
from polymodal.config.model import AnyHead
from polymodal.errors import ConfigError
from polymodal.models.fusion.base import FusedOutput
from polymodal.models.heads import build_head
from polymodal.models.registry import HEADS

from .helpers import (
    FUSION_BATCH,
    assert_all_parameters_get_gradients,
    component_name,
    fused_tokens,
    max_change,
    param,
    perturb_parameters,
    random_projection_loss,
    variants,
)

IN_DIM, N_OUTPUTS = 16, 3
def _cases() -> list:
    return [param(cfg_cls, overrides, id=f"{impl.__name__}-{variant_id}")
            for cfg_cls, impl in HEADS.items() for variant_id, overrides in variants(cfg_cls)]


def build(cfg_cls: type, overrides: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_head(cfg_cls(**overrides), IN_DIM, N_OUTPUTS)


@pytest.mark.parametrize(("cfg_cls", "overrides"), _cases())
def test_forward_contract(cfg_cls, overrides):
    head = build(cfg_cls, overrides).eval()
    with torch.no_grad():
        out = head(fused_tokens(IN_DIM))
    assert out.shape == (FUSION_BATCH, N_OUTPUTS)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("cfg_cls", "overrides"), _cases())
def test_backward_reaches_every_parameter(cfg_cls, overrides):
    head = build(cfg_cls, overrides).train()
    perturb_parameters(head)
    random_projection_loss(head(fused_tokens(IN_DIM))).backward()
    assert_all_parameters_get_gradients(head)


@pytest.mark.parametrize(("cfg_cls", "overrides"), _cases())
def test_output_of_a_sample_does_not_depend_on_the_rest_of_the_batch(cfg_cls, overrides):
    head = build(cfg_cls, overrides).eval()
    fused = fused_tokens(IN_DIM)
    with torch.no_grad():
        full = head(fused)
        for i in range(FUSION_BATCH):
            alone = head(FusedOutput(fused.pooled[i:i + 1], fused.tokens[i:i + 1], fused.mask[i:i + 1]))
            torch.testing.assert_close(alone[0], full[i], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("cfg_cls", "overrides"), _cases())
def test_masked_tokens_do_not_change_the_output(cfg_cls, overrides):
    head = build(cfg_cls, overrides).eval()
    fused = fused_tokens(IN_DIM)
    noisy = fused.tokens.clone()
    noisy[~fused.mask] = 50.0
    with torch.no_grad():
        clean = head(fused)
        garbage = head(FusedOutput(fused.pooled, noisy, fused.mask))
    torch.testing.assert_close(garbage, clean, rtol=0.0, atol=1e-5)


@pytest.mark.parametrize(("cfg_cls", "overrides"), _cases())
def test_valid_tokens_or_pooled_vector_drive_the_output(cfg_cls, overrides):
    head = build(cfg_cls, overrides).eval()
    fused = fused_tokens(IN_DIM)
    g = torch.Generator().manual_seed(3)
    other = FusedOutput(fused.pooled + torch.randn(fused.pooled.shape, generator=g),
                        fused.tokens + torch.randn(fused.tokens.shape, generator=g), fused.mask)
    with torch.no_grad():
        before, after = head(fused), head(other)
    for row in range(FUSION_BATCH):
        assert max_change(before[row], after[row]) > 1e-4


@pytest.mark.parametrize(("cfg_cls", "overrides"), _cases())
def test_without_tokens_a_head_works_or_says_it_needs_them(cfg_cls, overrides):
    head = build(cfg_cls, overrides).eval()
    fused = fused_tokens(IN_DIM)
    try:
        out = head(FusedOutput(fused.pooled))
    except ValueError as err:
        assert "token sequence" in str(err) and component_name(cfg_cls) in str(err)
        return
    assert out.shape == (FUSION_BATCH, N_OUTPUTS)


# -- configs ---------------------------------------------------------------------------------
def _config_classes() -> list:
    return [pytest.param(cfg_cls, id=cfg_cls.__name__) for cfg_cls, _ in HEADS.items()]


@pytest.mark.parametrize("cfg_cls", _config_classes())
def test_load_config_names_the_head_key_path(cfg_cls):
    base = {"target": "y", "modalities": {"m": {"kind": "tabular", "columns": ["x"]}}, "fusion": {"name": "stack"}}
    assert type(load_config({**base, "head": {"name": component_name(cfg_cls)}}).head) is cfg_cls
    with pytest.raises(ConfigError) as info:
        load_config({**base, "head": {"name": component_name(cfg_cls), "bogus": 1}})
    assert any(p.startswith("head") and "bogus" in p for p in info.value.problems), info.value.problems


def test_every_head_in_the_schema_is_registered():
    in_schema = set(typing.get_args(typing.get_args(AnyHead)[0]))
    assert in_schema == {cfg_cls for cfg_cls, _ in HEADS.items()}
