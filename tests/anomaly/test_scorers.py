"""Anomaly scorers' losses, on stub networks (no data, no training)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from polymodal.anomaly import scorers
from polymodal.models.objectives.align import info_nce


class TwoModalityNet:
    """What ``ConsistencyScorer.loss`` reads of an AnomalyNet: the inputs are the pooled features."""

    names = ["a", "b"]

    def encode(self, inputs, present):
        return inputs

    def shared_embeddings(self, features):
        return {n: F.normalize(features[n], dim=-1) for n in self.names}

    def similarity_scale(self):
        return torch.tensor(10.0)


def other_rank(tensor: torch.Tensor) -> torch.Tensor:
    """A second rank's rows: the features rotated (floats); the same masks (bool)."""
    return tensor.roll(1, dims=-1) if tensor.is_floating_point() else tensor


def test_consistency_loss_contrasts_the_rows_of_every_rank(monkeypatch):
    """Under DDP the InfoNCE negatives are the global batch, as in ContrastiveObjective."""
    torch.manual_seed(0)
    za, zb = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4)
    batch = {"inputs": {"a": za, "b": zb}, "present": {"a": torch.ones(6, dtype=torch.bool),
                                                       "b": torch.ones(6, dtype=torch.bool)}}
    scorer = scorers.ConsistencyScorer(2, 4)
    local = scorer.loss(TwoModalityNet(), batch, "train").loss
    gathered = []

    def gather(tensor):
        gathered.append(tensor.shape)
        return torch.cat([tensor, other_rank(tensor)])

    monkeypatch.setattr(scorers, "gather_across_ranks", gather)
    result = scorer.loss(TwoModalityNet(), batch, "train")
    ga, gb = (F.normalize(torch.cat([z, other_rank(z)]), dim=-1) for z in (za, zb))
    expected = info_nce(ga, gb, 10.0).loss
    assert len(gathered) == 5  # the embeddings and presence of both modalities, and the normal-row mask
    assert result.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert result.loss.item() != pytest.approx(local.item(), rel=1e-3)
    result.loss.backward()
    assert za.grad is not None and za.grad.abs().sum() > 0  # the gather stays differentiable


def test_a_scorer_name_that_is_not_a_choice_of_anomaly_scorer_does_not_register():
    with pytest.raises(ValueError, match="not a choice of anomaly.scorer"):
        scorers.register_scorer("isolation_forest")(type("IsolationScorer", (scorers.AnomalyScorer,), {}))
    assert "isolation_forest" not in scorers.SCORERS
