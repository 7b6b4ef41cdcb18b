"""Transfer-learning objectives: domain adaptation, pseudo-labels, prototypes, distillation, multi-task."""

from __future__ import annotations

import math
import typing

import pytest
import torch
from torch.nn import functional as F

from polymodal.config.transfer import AnyTransfer, CdanConfig, CoralConfig, DannConfig, DomainConfig, MmdConfig
from polymodal.data.multitarget import TaskSlot
from polymodal.models.objectives import TaskLoss
from polymodal.models.objectives.distill import DistillLoss, distillation_loss
from polymodal.models.objectives.domain import (
    CdanLoss,
    CoralLoss,
    DannLoss,
    MmdLoss,
    coral_loss,
    dann_schedule,
    entropy_weights,
    gradient_reverse,
    mmd_loss,
    multilinear_map,
)
from polymodal.models.objectives.fewshot import class_prototypes, prototypical_loss, support_query_split
from polymodal.models.objectives.multitask import MultiTaskLoss
from polymodal.models.objectives.semi import pseudo_label_loss
from polymodal.models.registry import DOMAIN_LOSSES


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- domain adaptation -----------------------------------------------------------------------
def test_gradient_reverse_is_identity_forward_and_flips_scaled_gradient():
    x = torch.randn(4, 3, generator=gen(), requires_grad=True)
    y = gradient_reverse(x, 0.3)
    assert torch.equal(y, x)
    (y * torch.arange(3.0)).sum().backward()
    assert torch.allclose(x.grad, -0.3 * torch.arange(3.0).expand(4, 3))


def test_dann_schedule_rises_from_zero_towards_one():
    values = [dann_schedule(p) for p in (0.0, 0.1, 0.3, 1.0)]
    assert values[0] == 0.0
    assert values == sorted(values) and values[-1] == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert dann_schedule(0.5, gamma=1.0) < dann_schedule(0.5, gamma=10.0)


def test_mmd_is_small_for_one_distribution_and_grows_with_the_shift():
    source = torch.randn(200, 8, generator=gen(1))
    same = torch.randn(200, 8, generator=gen(2))
    assert mmd_loss(source, same).item() < 0.02
    shifts = [mmd_loss(source, same + s).item() for s in (0.5, 1.0, 3.0)]
    assert shifts == sorted(shifts) and shifts[0] > 0.05


def test_coral_matches_mean_and_covariance_differences():
    source = torch.randn(300, 4, generator=gen(3))
    target = torch.randn(300, 4, generator=gen(4)) * 2.0 + 1.0
    cov_s, cov_t = torch.cov(source.T), torch.cov(target.T)
    expected = (source.mean(0) - target.mean(0)).pow(2).mean() + (cov_s - cov_t).pow(2).mean()
    assert coral_loss(source, target).item() == pytest.approx(expected.item(), rel=1e-5)
    assert coral_loss(source, source).item() == pytest.approx(0.0, abs=1e-10)
    assert CoralLoss()(source, target).loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_multilinear_map_outer_product_and_random_projection():
    f, g = torch.randn(5, 3, generator=gen()), torch.softmax(torch.randn(5, 4, generator=gen(1)), dim=1)
    outer = multilinear_map(f, g)
    assert outer.shape == (5, 12)
    assert torch.allclose(outer.view(5, 4, 3), g.unsqueeze(2) * f.unsqueeze(1))
    rf, rg = torch.randn(3, 7, generator=gen(2)), torch.randn(4, 7, generator=gen(3))
    assert torch.allclose(multilinear_map(f, g, (rf, rg)), (f @ rf) * (g @ rg) / math.sqrt(7))


def test_entropy_weights_favour_confident_predictions_and_average_one():
    probs = torch.tensor([[0.98, 0.01, 0.01], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.3, 0.1]])
    weights = entropy_weights(probs)
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights[0] > weights[2] > weights[1]


def test_dann_discriminator_learns_to_tell_domains_while_features_get_reversed_gradients():
    torch.manual_seed(0)
    loss = DannLoss(4, hidden=(16,))
    opt = torch.optim.Adam(loss.parameters(), lr=0.05)
    source, target = torch.randn(64, 4) + 2.0, torch.randn(64, 4) - 2.0
    for _ in range(30):
        opt.zero_grad()
        out = loss(source, target, progress=1.0)
        out.loss.backward()
        opt.step()
    assert out.logs["accuracy"].item() > 0.95
    # the encoder side receives the reversed gradient: stepping along it raises the domain loss
    feats = source.clone().requires_grad_(True)
    value = loss(feats, target, progress=1.0).loss
    value.backward()
    loss.eval()
    before = F.binary_cross_entropy_with_logits(loss.discriminator(feats.detach()), torch.ones(64))
    after = F.binary_cross_entropy_with_logits(loss.discriminator(feats.detach() - 0.5 * feats.grad), torch.ones(64))
    assert after > before
    assert loss(source, target, progress=0.0).logs["coeff"].item() == 0.0


def test_cdan_needs_predictions_and_switches_to_random_map_when_wide():
    small = CdanLoss(4, 3, hidden=(8,))
    assert not small.randomized and small.discriminator.net[0].in_features == 12
    wide = CdanLoss(100, 50, hidden=(8,), random_dim=32, max_outer=4096)
    assert wide.randomized and wide.discriminator.net[0].in_features == 32
    source, target = torch.randn(6, 4, generator=gen()), torch.randn(6, 4, generator=gen(1))
    with pytest.raises(ValueError, match="class predictions"):
        small(source, target)
    logits = torch.randn(6, 3, generator=gen(2), requires_grad=True)
    out = small(source, target, source_logits=logits, target_logits=logits.detach(), progress=0.5)
    out.loss.backward()
    assert logits.grad is None or torch.count_nonzero(logits.grad) == 0  # predictions are only conditioning


def test_mmd_module_returns_the_function_value():
    a, b = torch.randn(20, 3, generator=gen()), torch.randn(20, 3, generator=gen(1)) + 1
    assert MmdLoss((0.5, 1.0))(a, b).loss.item() == pytest.approx(mmd_loss(a, b, (0.5, 1.0)).item())


def test_every_domain_method_in_the_schema_has_a_registered_loss():
    in_schema = {c for c in typing.get_args(typing.get_args(AnyTransfer)[0]) if issubclass(c, DomainConfig)}
    assert in_schema == {cfg_cls for cfg_cls, _ in DOMAIN_LOSSES.items()}


@pytest.mark.parametrize(("cfg", "loss_cls"), [(DannConfig(), DannLoss), (CdanConfig(), CdanLoss),
                                               (MmdConfig(), MmdLoss), (CoralConfig(), CoralLoss)])
def test_each_domain_config_builds_its_own_loss_though_cdan_extends_dann(cfg, loss_cls):
    assert type(DOMAIN_LOSSES.build(cfg, in_dim=4, n_classes=3, seed=0)) is loss_cls


# -- semi-supervised -------------------------------------------------------------------------
def test_pseudo_label_loss_counts_only_confident_rows_and_ignores_teacher_gradient():
    teacher = torch.tensor([[5.0, 0.0], [0.1, 0.0], [0.0, 6.0]], requires_grad=True)
    student = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    out = pseudo_label_loss(student, teacher, threshold=0.9)
    expected = (F.cross_entropy(student[:1], torch.tensor([0])) + F.cross_entropy(student[2:], torch.tensor([1]))) / 3
    assert out.loss.item() == pytest.approx(expected.item())
    assert out.logs["mask"].item() == pytest.approx(2 / 3)
    out.loss.backward()
    assert teacher.grad is None and student.grad[1].abs().sum() == 0
    assert pseudo_label_loss(student, teacher, threshold=0.999999).loss.item() == 0.0


# -- few-shot --------------------------------------------------------------------------------
def test_prototypes_are_class_means_and_support_is_first_shots_of_each_class():
    emb = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]])
    classes, protos = class_prototypes(emb, torch.tensor([3, 3, 1, 1]))
    assert classes.tolist() == [1, 3]
    assert torch.allclose(protos, torch.tensor([[0.0, 5.0], [1.0, 0.0]]))
    assert support_query_split(torch.tensor([0, 1, 0, 1, 0, 1]), 2).tolist() == [True, True, True, True, False, False]


def test_prototypical_loss_is_low_for_separated_classes_and_high_for_swapped_queries():
    labels = torch.tensor([0, 0, 1, 1, 0, 1])  # shots=2: rows 0-3 support, 4-5 queries
    good = torch.tensor([[0.0, 0], [0.2, 0], [5.0, 5], [5.2, 5], [0.1, 0], [5.1, 5]])
    bad = good.clone()
    bad[4], bad[5] = good[5], good[4]
    low, high = prototypical_loss(good, labels, 2), prototypical_loss(bad, labels, 2)
    assert low.logs["accuracy"].item() == 1.0 and high.logs["accuracy"].item() == 0.0
    assert low.loss.item() < 0.01 < high.loss.item()


# -- distillation ----------------------------------------------------------------------------
def test_distillation_is_zero_when_student_matches_teacher_and_scales_with_temperature_squared():
    t = torch.randn(8, 5, generator=gen())
    assert distillation_loss(t, t, 3.0).item() == pytest.approx(0.0, abs=1e-6)
    s = torch.randn(8, 5, generator=gen(1))
    p_t = F.softmax(t / 2, dim=1)
    kl = (p_t * (F.log_softmax(t / 2, dim=1) - F.log_softmax(s / 2, dim=1))).sum(1).mean()
    assert distillation_loss(s, t, 2.0).item() == pytest.approx(4 * kl.item(), rel=1e-5)


def test_distill_loss_projects_student_features_and_weighs_the_feature_term():
    loss = DistillLoss(3, 5, temperature=1.0, feature_weight=2.0)
    logits = torch.randn(4, 2, generator=gen())
    s_feat, t_feat = torch.randn(4, 3, generator=gen(1)), torch.randn(4, 5, generator=gen(2))
    out = loss(logits, logits, s_feat, t_feat)
    assert out.loss.item() == pytest.approx(2.0 * F.mse_loss(loss.project(s_feat), t_feat).item(), rel=1e-5)
    assert DistillLoss(3, 5, feature_weight=0.0).project is None


# -- multi-task ------------------------------------------------------------------------------
SLOTS = [TaskSlot("main", "classification", (0, 3), (0, 1)), TaskSlot("size", "regression", (3, 5), (1, 3))]


def test_multitask_loss_slices_each_task_and_weighs_it():
    outputs = torch.randn(6, 5, generator=gen())
    target = torch.cat([torch.tensor([[0.0], [1], [2], [0], [1], [2]]), torch.randn(6, 2, generator=gen(1))], dim=1)
    losses = {"main": TaskLoss("classification"), "size": TaskLoss("regression")}
    out = MultiTaskLoss(SLOTS, losses, {"main": 1.0, "size": 0.25})(outputs, target)
    ce = F.cross_entropy(outputs[:, :3], target[:, 0].long())
    mse = F.mse_loss(outputs[:, 3:], target[:, 1:])
    assert out.loss.item() == pytest.approx((ce + 0.25 * mse).item(), rel=1e-5)
    assert out.logs["size/loss"].item() == pytest.approx(mse.item(), rel=1e-5)
    assert "accuracy" in out.logs  # the main task's logs keep their names


def test_uncertainty_weighting_learns_log_variances():
    outputs = torch.randn(6, 5, generator=gen())
    target = torch.cat([torch.zeros(6, 1), torch.randn(6, 2, generator=gen(1)) * 10], dim=1)
    loss = MultiTaskLoss(SLOTS, {"main": TaskLoss("classification"), "size": TaskLoss("regression")},
                         {"main": 1.0, "size": 1.0}, learned=True)
    with torch.no_grad():
        loss.log_vars.copy_(torch.tensor([0.0, 1.0]))
    out = loss(outputs, target)
    ce = F.cross_entropy(outputs[:, :3], torch.zeros(6, dtype=torch.long))
    mse = F.mse_loss(outputs[:, 3:], target[:, 1:])
    assert out.loss.item() == pytest.approx((ce + math.exp(-1.0) * mse + 1.0).item(), rel=1e-5)
    out.loss.backward()
    assert loss.log_vars.grad[1].item() < 0  # a large regression loss pushes its variance up


# a further task's rows without its label: NaN targets, masked out of its loss
MIXED = [TaskSlot("main", "classification", (0, 3), (0, 1)), TaskSlot("kind", "classification", (3, 5), (1, 2)),
         TaskSlot("tags", "multilabel", (5, 7), (2, 4)), TaskSlot("size", "regression", (7, 8), (4, 5))]
MIXED_LOSSES = {"main": TaskLoss("classification"), "kind": TaskLoss("classification"),
                "tags": TaskLoss("multilabel"), "size": TaskLoss("regression")}


def test_a_further_tasks_loss_is_the_mean_over_the_rows_holding_its_label():
    nan = float("nan")
    outputs = torch.randn(4, 8, generator=gen(), requires_grad=True)
    target = torch.tensor([[0.0, 1, 1, 0, 2.0], [1, nan, 0, nan, nan], [2, 0, nan, nan, -1.0], [0, nan, 1, 1, nan]])
    out = MultiTaskLoss(MIXED, MIXED_LOSSES, dict.fromkeys(MIXED_LOSSES, 1.0))(outputs, target)
    kind = F.cross_entropy(outputs[[0, 2], 3:5], torch.tensor([1, 0]))  # rows 0 and 2 have a kind
    held = ~torch.isnan(target[:, 2:4])  # tags: 4 cells of 8 (row 1 has one of the two, row 2 none)
    tags = F.binary_cross_entropy_with_logits(outputs[:, 5:7][held], target[:, 2:4][held])
    size = F.mse_loss(outputs[[0, 2], 7], target[[0, 2], 4])
    main = F.cross_entropy(outputs[:, :3], target[:, 0].long())
    assert out.logs["kind/loss"].item() == pytest.approx(kind.item(), rel=1e-5)
    assert out.logs["tags/loss"].item() == pytest.approx(tags.item(), rel=1e-5)
    assert out.logs["size/loss"].item() == pytest.approx(size.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx((main + kind + tags + size).item(), rel=1e-5)
    assert out.logs["kind/accuracy"].item() in (0.0, 0.5, 1.0)  # of its 2 labelled rows
    out.loss.backward()
    assert torch.isfinite(outputs.grad).all()
    assert (outputs.grad[[1, 3], 3:5] == 0).all() and (outputs.grad[2, 5:7] == 0).all()  # unlabelled: no gradient
    assert (outputs.grad[1, 6] == 0).all() and (outputs.grad[1, 5] != 0).all()  # tags: per label


@pytest.mark.parametrize("learned", [False, True])
def test_a_batch_without_any_label_of_a_further_task_adds_nothing_for_it(learned):
    outputs = torch.randn(3, 5, generator=gen(), requires_grad=True)
    target = torch.tensor([[0.0, float("nan"), float("nan")], [1, float("nan"), float("nan")], [2] + [float("nan")] * 2])
    loss = MultiTaskLoss(SLOTS, {"main": TaskLoss("classification"), "size": TaskLoss("regression")},
                         {"main": 1.0, "size": 0.5}, learned=learned)
    if learned:
        with torch.no_grad():
            loss.log_vars.copy_(torch.tensor([0.0, 2.0]))
    out = loss(outputs, target)
    assert out.loss.item() == pytest.approx(F.cross_entropy(outputs[:, :3], target[:, 0].long()).item(), rel=1e-5)
    assert "size/loss" not in out.logs and "size/weight" not in out.logs  # nothing to average into its epoch figure
    out.loss.backward()
    assert torch.isfinite(outputs.grad).all() and (outputs.grad[:, 3:] == 0).all()
    if learned:
        assert loss.log_vars.grad[1].item() == 0  # its s_t is not pushed down by a batch it could not learn from
