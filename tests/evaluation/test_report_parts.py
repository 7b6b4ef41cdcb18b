"""Building blocks of ``report.html``: the model summary and the anomaly score histogram."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from polymodal.evaluation.plots import score_histogram
from polymodal.evaluation.report import parameter_rows


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoders = nn.ModuleDict({"a": nn.Linear(3, 4), "b": nn.Linear(5, 4)})
        self.fusion = nn.Linear(8, 2)
        self.dropout = nn.Dropout(0.1)  # no parameters: no row


class Outer(nn.Module):  # an anomaly model: the encoders two levels down, a parameter of its own
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.decoders = nn.ModuleDict({"a": nn.Linear(2, 3)})
        self.logit_scale = nn.Parameter(torch.zeros(()))


def test_the_model_summary_opens_the_network_holding_the_encoders_and_adds_up():
    net = Outer()
    net.backbone.encoders["b"].requires_grad_(False)
    rows = {r["part"]: r for r in parameter_rows(net)}
    assert list(rows) == ["encoder: a", "encoder: b", "fusion", "decoders", "other", "total"]
    assert rows["encoder: a"]["parameters"] == 16 and rows["encoder: b"]["trainable"] == 0
    assert rows["other"]["parameters"] == 1  # logit_scale
    for key in ("parameters", "trainable"):
        assert sum(r[key] for part, r in rows.items() if part != "total") == rows["total"][key]


@pytest.mark.parametrize("scores", [
    np.array([1.0, 2.0, np.nan, 3.0, np.inf]),  # non-finite rows left out
    np.full(5, 0.7),  # constant
    np.array([-3.0, -2.0, -1.0, -0.5, -0.1]),  # all negative
    np.array([0.5, 2.0, 8.0, 5e3, 1e4]),  # spans decades: log scale
])
def test_the_score_histogram_draws_any_finite_scores(scores):
    png = score_histogram(scores, np.array([False, False, False, True, True]), 1.0, "validation")
    assert png is not None and png.startswith(b"\x89PNG")


def test_the_score_histogram_of_no_finite_score_is_none():
    assert score_histogram(np.array([np.nan, np.inf]), np.array([False, True]), 1.0, "validation") is None
