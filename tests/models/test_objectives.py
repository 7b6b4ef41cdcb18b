"""Task losses (``polymodal.models.objectives.task``) against hand-written formulas."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from polymodal.models.objectives import LossOutput, TaskLoss, task_loss


@pytest.fixture
def logits() -> torch.Tensor:
    return torch.randn(6, 4, generator=torch.Generator().manual_seed(0))


TARGET = torch.tensor([0, 3, 1, 1, 2, 3])
WEIGHTS = torch.tensor([0.5, 2.0, 1.0, 3.0])


def manual_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None,
                         smoothing: float) -> torch.Tensor:
    """Weighted, label-smoothed cross-entropy as torch defines it: per sample
    ``(1 - e) * w_y * nll_y + e / K * sum_k w_k * nll_k``, averaged with weights ``w_y``."""
    k = logits.shape[1]
    w = torch.ones(k) if weights is None else weights
    nll = -torch.log_softmax(logits, dim=1)  # (B, K)
    per_sample = (1 - smoothing) * w[target] * nll[torch.arange(len(target)), target]
    per_sample = per_sample + smoothing / k * (nll * w).sum(dim=1)
    return per_sample.sum() / w[target].sum()


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_classification_cross_entropy(logits, weighted, smoothing):
    weights = WEIGHTS if weighted else None
    result = task_loss(logits, TARGET, "classification", class_weights=weights, label_smoothing=smoothing)
    assert isinstance(result, LossOutput) and result.loss.dim() == 0
    expected = manual_cross_entropy(logits, TARGET, weights, smoothing)
    torch.testing.assert_close(result.loss, expected)
    torch.testing.assert_close(result.loss, F.cross_entropy(logits, TARGET, weight=weights, label_smoothing=smoothing))


def test_classification_weights_and_smoothing_change_the_loss(logits):
    plain = task_loss(logits, TARGET, "classification").loss
    assert not torch.isclose(task_loss(logits, TARGET, "classification", class_weights=WEIGHTS).loss, plain)
    assert not torch.isclose(task_loss(logits, TARGET, "classification", label_smoothing=0.2).loss, plain)


def test_classification_logs_accuracy(logits):
    result = task_loss(logits, TARGET, "classification")
    expected = (logits.argmax(dim=1) == TARGET).float().mean()
    torch.testing.assert_close(result.logs["accuracy"], expected)
    perfect = F.one_hot(TARGET, 4).float() * 10
    assert task_loss(perfect, TARGET, "classification").logs["accuracy"].item() == 1.0


def test_multilabel_binary_cross_entropy(logits):
    target = (torch.arange(24).reshape(6, 4) % 3 == 0).long()
    result = task_loss(logits, target, "multilabel")
    p = torch.sigmoid(logits)
    expected = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    torch.testing.assert_close(result.loss, expected)


def test_multilabel_label_smoothing_trains_towards_softened_labels():
    """e = 0.2: a 1 is trained towards 0.9, a 0 towards 0.1; by hand for one row of two labels."""
    logits = torch.tensor([[0.0, 2.0]])
    target = torch.tensor([[1, 0]])
    p = torch.sigmoid(torch.tensor(2.0))
    expected = (-torch.log(torch.tensor(0.5)) + -(0.1 * torch.log(p) + 0.9 * torch.log(1 - p))) / 2
    result = task_loss(logits, target, "multilabel", label_smoothing=0.2)
    torch.testing.assert_close(result.loss, expected)
    assert not torch.isclose(result.loss, task_loss(logits, target, "multilabel").loss)
    # the loss is lowest where the probabilities are the softened labels, not 1 and 0
    best = torch.logit(torch.tensor([[0.9, 0.1]]))
    for other in ([[3.0, -3.0]], [[1.0, -1.0]]):
        assert task_loss(best, target, "multilabel", label_smoothing=0.2).loss < \
            task_loss(torch.tensor(other), target, "multilabel", label_smoothing=0.2).loss


def test_multilabel_class_weights_weigh_each_labels_positives(logits):
    target = (torch.arange(24).reshape(6, 4) % 3 == 0).long()
    pos_weight = torch.tensor([2.0, 0.5, 1.0, 4.0])
    p = torch.sigmoid(logits)
    expected = -(pos_weight * target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    torch.testing.assert_close(task_loss(logits, target, "multilabel", class_weights=pos_weight).loss, expected)
    module = TaskLoss("multilabel", pos_weight, label_smoothing=0.1)
    soft = target * 0.9 + 0.05
    expected = -(pos_weight * soft * torch.log(p) + (1 - soft) * torch.log(1 - p)).mean()
    torch.testing.assert_close(module(logits, target).loss, expected)


def test_regression_mse(logits):
    target = torch.linspace(-1, 1, 24).reshape(6, 4)
    result = task_loss(logits, target, "regression", regression="mse")
    torch.testing.assert_close(result.loss, ((logits - target) ** 2).mean())


@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
def test_regression_huber(logits, delta):
    target = torch.linspace(-2, 2, 24).reshape(6, 4)
    err = (logits - target).abs()
    expected = torch.where(err < delta, 0.5 * err ** 2, delta * (err - 0.5 * delta)).mean()
    result = task_loss(logits, target, "regression", regression="huber", huber_delta=delta)
    torch.testing.assert_close(result.loss, expected)


def test_regression_accepts_double_targets(logits):
    target = torch.zeros(6, 4, dtype=torch.float64)
    result = task_loss(logits, target, "regression")
    assert result.loss.dtype == logits.dtype
    torch.testing.assert_close(result.loss, (logits ** 2).mean())


def test_task_loss_module_matches_the_function_and_moves_its_weights(logits):
    module = TaskLoss("classification", WEIGHTS.clone(), label_smoothing=0.1)
    torch.testing.assert_close(module(logits, TARGET).loss,
                               task_loss(logits, TARGET, "classification", class_weights=WEIGHTS, label_smoothing=0.1).loss)
    assert "class_weights" in dict(module.named_buffers())
    assert "class_weights" not in module.state_dict(), "class weights are recomputed from the data, not saved"
    module = module.to(torch.float64)
    assert module.class_weights.dtype == torch.float64


def test_task_loss_module_regression_options(logits):
    target = torch.linspace(-2, 2, 24).reshape(6, 4)
    module = TaskLoss("regression", regression="huber", huber_delta=0.5)
    torch.testing.assert_close(module(logits, target).loss, F.huber_loss(logits, target, delta=0.5))
