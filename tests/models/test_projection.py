"""Projection heads into the shared space: a contract test for every registered head, and the
``Projections`` container (normalised embeddings, absent modalities zeroed when stacked)."""

from __future__ import annotations

import pytest
import torch

import polymodal.models.projection  # noqa: F401 - registration
from polymodal.models.projection import LinearProjection, MlpProjection, Projections
from polymodal.models.registry import PROJECTIONS

HEADS = [cfg() for cfg, _ in PROJECTIONS.items()]


@pytest.mark.parametrize("cfg", HEADS, ids=lambda c: c.name)
def test_every_projection_maps_to_the_shared_width_and_trains(cfg) -> None:
    head = PROJECTIONS.build(cfg, in_dim=12, dim=5)
    x = torch.randn(4, 12)
    z = head(x)
    assert z.shape == (4, 5) and torch.isfinite(z).all()
    z.pow(2).sum().backward()
    for name, param in head.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_mlp_projection_is_non_linear_and_linear_is_not() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(3, 6), torch.randn(3, 6)
    linear, mlp = LinearProjection(6, 4), MlpProjection(6, 4, hidden=[8], dropout=0.0)
    bias_l, bias_m = linear(torch.zeros(1, 6)), mlp(torch.zeros(1, 6))
    assert torch.allclose(linear(x + y) - bias_l, (linear(x) - bias_l) + (linear(y) - bias_l), atol=1e-5)
    assert not torch.allclose(mlp(x + y) - bias_m, (mlp(x) - bias_m) + (mlp(y) - bias_m), atol=1e-3)


def test_projections_embed_normalises_and_stack_zeroes_absent_rows() -> None:
    torch.manual_seed(0)
    heads = Projections({"b": LinearProjection(3, 4), "a": LinearProjection(5, 4)}, 4)
    assert heads.names == ["a", "b"]
    pooled = {"a": torch.randn(3, 5), "b": torch.randn(3, 3)}
    embedded = heads.embed(pooled)
    assert torch.allclose(embedded["a"].norm(dim=-1), torch.ones(3))
    present = {"a": torch.tensor([True, False, True]), "b": torch.tensor([True, True, True])}
    stacked = heads.stack(pooled, present)
    assert stacked.shape == (3, 8)
    assert torch.equal(stacked[1, :4], torch.zeros(4))
    assert torch.allclose(stacked[0, :4], embedded["a"][0]) and torch.allclose(stacked[:, 4:], embedded["b"])
